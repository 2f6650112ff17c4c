#!/usr/bin/env node
/*
 * The digits network's step graph in onnxruntime-node: no Python, just the file and its contract.
 *
 *   npm ci
 *   node index.js digits_step.onnx images.f32 --shape 32,100,64
 *   node index.js digits_step.onnx images.f32      # shape from images.json: {"shape": [T, B, 64]}
 *
 * images.f32 holds rate-coded input spikes (T, B, 64) as raw little-endian float32. The loop
 * over time is here: each step feeds `x` and every `state.<k>.<field>` input, and the step's
 * `next_state.<k>.<field>` outputs become the next step's state. The state at rest comes from
 * the file's `lifexport.initial_state` metadata (zeros, with a warning, where a file lacks it).
 * The readout is each class's maximum of `y` over time; the prediction is its argmax.
 *
 * Prints one JSON document on stdout:
 *   {"predictions": [B ints], "readout": [[10 floats] x B], "steps": T, "batch": B,
 *    "initial_state": "metadata" | "zeros"}
 * Exit codes: 0 ok, 2 usage error (one line `digits-node: error: ...` on stderr).
 */
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const ort = require('onnxruntime-node');

const X = 'x';
const Y = 'y';
const STATE_PREFIX = 'state.';
const NEXT_STATE_PREFIX = 'next_state.';
const INITIAL_STATE_KEY = 'lifexport.initial_state';

class UsageError extends Error {}

// --- ONNX metadata_props, read from the protobuf wire format ------------------------------------
// onnxruntime-node exposes the input and output names and shapes, not the model's metadata, so
// the two fields needed are read here: ModelProto.metadata_props (field 14), each a
// StringStringEntryProto {key = 1, value = 2}. Every other field is skipped by its wire type.

function readVarint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (let shift = 0; shift < 70; shift += 7) {
    if (pos >= buf.length) throw new UsageError('not an ONNX file: truncated varint');
    const byte = buf[pos++];
    value += (byte & 0x7f) * scale; // exact up to 2^53: enough for lengths and field numbers
    if (byte < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new UsageError('not an ONNX file: varint longer than 10 bytes');
}

/** Calls visit(field, wireType, start, end) for each field of the message in buf[start:end). */
function forEachField(buf, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let tag;
    [tag, pos] = readVarint(buf, pos);
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    let next;
    if (wireType === 0) {
      [, next] = readVarint(buf, pos);
    } else if (wireType === 1) {
      next = pos + 8;
    } else if (wireType === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      next = pos + length;
    } else if (wireType === 5) {
      next = pos + 4;
    } else {
      throw new UsageError(`not an ONNX file: unsupported protobuf wire type ${wireType}`);
    }
    if (next > end) throw new UsageError('not an ONNX file: a field runs past the end');
    visit(field, wireType, pos, next);
    pos = next;
  }
}

/** The model's metadata_props as a Map of key to value. */
function readMetadata(file) {
  const buf = fs.readFileSync(file);
  const metadata = new Map();
  forEachField(buf, 0, buf.length, (field, wireType, start, end) => {
    if (field !== 14 || wireType !== 2) return;
    let key = '';
    let value = '';
    forEachField(buf, start, end, (f, w, s, e) => {
      if (w !== 2) return;
      if (f === 1) key = buf.toString('utf8', s, e);
      if (f === 2) value = buf.toString('utf8', s, e);
    });
    metadata.set(key, value);
  });
  return metadata;
}

// --- the contract ------------------------------------------------------------------------------

/** State input names and their outputs, checked against the file's contract. */
function contractOf(session, metadata) {
  const graph = metadata.get('lifexport.graph');
  if (graph !== undefined && graph !== 'step') {
    throw new UsageError(`expected a step graph (lifexport.graph "step"), got "${graph}"; ` +
      'export it with to_onnx(..., graph="step")');
  }
  for (const [key, names] of [['lifexport.inputs', session.inputNames],
    ['lifexport.outputs', session.outputNames]]) {
    const recorded = metadata.has(key) ? parseJson(metadata.get(key), key) : names;
    if (JSON.stringify(recorded) !== JSON.stringify(names)) {
      throw new UsageError(`${key} ${metadata.get(key)} does not match the graph's ${names}`);
    }
  }
  if (!session.inputNames.includes(X) || !session.outputNames.includes(Y)) {
    throw new UsageError(`expected input "${X}" and output "${Y}", got inputs ` +
      `${session.inputNames} and outputs ${session.outputNames}`);
  }
  const states = session.inputNames.filter((name) => name.startsWith(STATE_PREFIX));
  for (const name of states) {
    const next = NEXT_STATE_PREFIX + name.slice(STATE_PREFIX.length);
    if (!session.outputNames.includes(next)) {
      throw new UsageError(`state input "${name}" has no output "${next}"; ` +
        'export the step graph with its state (with_state=True)');
    }
  }
  if (states.length === 0) {
    throw new UsageError('the graph has no state.* inputs: export it with graph="step"');
  }
  return states;
}

/** The shape (B, ...) of an input: its dims from the session, with B for the first. */
function inputShape(session, name, batch) {
  const meta = session.inputMetadata.find((m) => m.name === name);
  const dims = meta.shape.slice(1);
  if (!dims.every((d) => typeof d === 'number')) {
    throw new UsageError(`input "${name}" has symbolic dims ${JSON.stringify(meta.shape)} ` +
      'beyond the batch: only the first dim may be dynamic');
  }
  return [batch, ...dims];
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${what} is not JSON: ${error.message}`);
  }
}

const size = (shape) => shape.reduce((a, b) => a * b, 1);

/** `values` reshaped to `from` and broadcast (numpy rules) to `to`, as float32. */
function broadcast(values, from, to, name) {
  if (values.length !== size(from)) {
    throw new UsageError(`${INITIAL_STATE_KEY}: "${name}" has ${values.length} values for ` +
      `shape ${JSON.stringify(from)}`);
  }
  const offset = to.length - from.length;
  if (offset < 0 || from.some((d, k) => d !== 1 && d !== to[k + offset])) {
    throw new UsageError(`${INITIAL_STATE_KEY}: "${name}" of shape ${JSON.stringify(from)} ` +
      `does not broadcast to the state's shape ${JSON.stringify(to)}`);
  }
  const out = new Float32Array(size(to));
  const index = new Array(to.length).fill(0);
  for (let flat = 0; flat < out.length; flat++) {
    let source = 0;
    for (let k = 0; k < from.length; k++) {
      source = source * from[k] + (from[k] === 1 ? 0 : index[k + offset]);
    }
    out[flat] = values[source];
    for (let k = to.length - 1; k >= 0; k--) { // the next index, last dim fastest
      if (++index[k] < to[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

/** The state at rest for `batch` rows, by state input name; and where it came from. */
function restState(session, metadata, states, batch) {
  const shapes = Object.fromEntries(states.map((n) => [n, inputShape(session, n, batch)]));
  if (!metadata.has(INITIAL_STATE_KEY)) {
    process.stderr.write(`digits-node: warning: the file has no ${INITIAL_STATE_KEY} metadata; ` +
      'starting from zeros\n');
    const zeros = (n) => new ort.Tensor('float32', new Float32Array(size(shapes[n])), shapes[n]);
    return [Object.fromEntries(states.map((n) => [n, zeros(n)])), 'zeros'];
  }
  const rest = parseJson(metadata.get(INITIAL_STATE_KEY), INITIAL_STATE_KEY);
  const state = {};
  for (const name of states) {
    const entry = rest[name];
    if (!entry || !Array.isArray(entry.shape) || !Array.isArray(entry.values)) {
      throw new UsageError(`${INITIAL_STATE_KEY} has no {"shape", "values"} entry for "${name}"`);
    }
    const data = broadcast(entry.values, entry.shape, shapes[name], name);
    state[name] = new ort.Tensor('float32', data, shapes[name]);
  }
  return [state, 'metadata'];
}

// --- input -------------------------------------------------------------------------------------

function parseArgs(argv) {
  const positional = [];
  let shape = null;
  for (let k = 0; k < argv.length; k++) {
    if (argv[k] === '--shape') shape = argv[++k];
    else if (argv[k].startsWith('--shape=')) shape = argv[k].slice('--shape='.length);
    else positional.push(argv[k]);
  }
  if (positional.length !== 2) {
    throw new UsageError('usage: node index.js MODEL.onnx INPUT.f32 [--shape T,B,F] ' +
      '(without --shape, INPUT.json holds {"shape": [T, B, F]})');
  }
  const [model, input] = positional;
  if (shape === null) {
    const sidecar = path.join(path.dirname(input), `${path.parse(input).name}.json`);
    if (!fs.existsSync(sidecar)) {
      throw new UsageError(`no --shape and no sidecar ${sidecar}; give --shape T,B,F`);
    }
    shape = parseJson(fs.readFileSync(sidecar, 'utf8'), sidecar).shape;
  } else {
    shape = shape.split(',').map(Number);
  }
  const positive = (d) => Number.isInteger(d) && d > 0;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every(positive)) {
    throw new UsageError(`expected a shape of 3 positive ints T,B,F, got ${JSON.stringify(shape)}`);
  }
  return { model, input, shape };
}

function readInput(file, shape) {
  const bytes = fs.readFileSync(file);
  if (bytes.length !== 4 * size(shape)) {
    throw new UsageError(`${file} has ${bytes.length} bytes; shape ${shape.join(',')} of float32 ` +
      `needs ${4 * size(shape)}`);
  }
  const data = new Float32Array(size(shape));
  for (let k = 0; k < data.length; k++) data[k] = bytes.readFloatLE(4 * k);
  return data;
}

// --- the time loop -----------------------------------------------------------------------------

async function main(argv) {
  const { model, input, shape } = parseArgs(argv);
  const [steps, batch, features] = shape;
  const xs = readInput(input, shape); // (T, B, F)
  const session = await ort.InferenceSession.create(model).catch((error) => {
    throw new UsageError(`cannot load ${model} in onnxruntime: ${error.message}`);
  });
  const metadata = readMetadata(model);
  const states = contractOf(session, metadata);
  const xShape = inputShape(session, X, batch);
  if (xShape.length !== 2 || xShape[1] !== features) {
    throw new UsageError(`the graph's x is ${JSON.stringify(xShape)} per step, the input ` +
      `has ${features} features per row`);
  }
  let [state, origin] = restState(session, metadata, states, batch);
  let best = null; // (B, C): each class's maximum of y over time
  for (let t = 0; t < steps; t++) {
    const x = xs.subarray(t * batch * features, (t + 1) * batch * features);
    const feeds = { [X]: new ort.Tensor('float32', x, [batch, features]), ...state };
    const out = await session.run(feeds);
    const y = out[Y].data; // (B, C)
    best = best === null ? Float32Array.from(y) : best.map((m, k) => Math.max(m, y[k]));
    state = Object.fromEntries(
      states.map((n) => [n, out[NEXT_STATE_PREFIX + n.slice(STATE_PREFIX.length)]]));
  }
  const classes = best.length / batch;
  const readout = [];
  const predictions = [];
  for (let b = 0; b < batch; b++) {
    const row = Array.from(best.subarray(b * classes, (b + 1) * classes));
    readout.push(row);
    predictions.push(row.indexOf(Math.max(...row))); // the first maximum, as torch's argmax
  }
  await session.release();
  const result = { predictions, readout, steps, batch, initial_state: origin };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main(process.argv.slice(2)).catch((error) => {
  const usage = error instanceof UsageError;
  process.stderr.write(`digits-node: error: ${usage ? error.message : error.stack}\n`);
  process.exitCode = usage ? 2 : 1;
});
