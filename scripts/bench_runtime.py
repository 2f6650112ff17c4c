"""Cost of one ``lifexport.runtime.Session.step`` against a hand-written onnxruntime loop on the
same step graph (LIF-refrac, CPU execution provider): the median time of a step, each.

    .venv/bin/python scripts/bench_runtime.py                   # B=1, N=512, 20 x 500 steps
    .venv/bin/python scripts/bench_runtime.py --n 4096 --b 32   # bigger shapes
    .venv/bin/python scripts/bench_runtime.py --masks select    # the Where form of the masks

The hand loop is what a deployer writes without the runtime: ``session.run`` with the state
fed as a dict and the next state taken from the outputs. Both run the same file, interleaved
in rounds so that drifts of the machine hit both alike; the ratio is Session / hand loop. The
floor is onnxruntime's own cost of a step: a graph with the same inputs and outputs whose
nodes only copy (``Identity``), run through an IO binding over preallocated buffers.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import lifexport
from lifexport.runtime import Session


@dataclass
class Config:
    b: int = 1  # batch rows
    n: int = 512  # neurons
    steps: int = 500  # steps per round and way
    rounds: int = 20  # rounds, alternating the two ways
    threads: int = 1  # onnxruntime intra-op threads of both sessions
    masks: str = "arithmetic"  # to_onnx's masks: "arithmetic" or "select"


def hand_loop(path: Path, xs: np.ndarray, threads: int) -> tuple[list[float], np.ndarray]:
    """The loop a deployer writes by hand; the state at rest from the file's metadata."""
    options = _options(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    contract = lifexport.read_graph(path).contract
    state = {
        name: np.broadcast_to(
            np.float32(value.values).reshape(value.shape), (xs.shape[1], *xs.shape[2:])
        ).copy()
        for name, value in contract.initial_state.items()
    }
    names = contract.state_names
    times, ys = [], []
    for x in xs:
        start = time.perf_counter()
        y, *next_state = session.run(None, {"x": x, **state})
        state = dict(zip(names, next_state))
        times.append(time.perf_counter() - start)
        ys.append(y)
    return times, np.stack(ys)


def floor_loop(path: Path, xs: np.ndarray, threads: int) -> list[float]:
    """onnxruntime's cost of a step: each output of the step graph an ``Identity`` of an input
    of its shape, bound once to preallocated buffers."""
    import onnx
    from onnx import helper

    graph = onnx.load(path).graph
    inputs, outputs = list(graph.input), list(graph.output)
    nodes = [helper.make_node("Identity", [i.name], [o.name]) for i, o in zip(inputs, outputs)]
    copy = helper.make_model(
        helper.make_graph(nodes, "floor", inputs[: len(outputs)], outputs),
        opset_imports=[helper.make_opsetid("", 21)],
    )
    session = ort.InferenceSession(
        copy.SerializeToString(), _options(threads), ["CPUExecutionProvider"]
    )
    binding = session.io_binding()
    feeds = [np.zeros(xs.shape[1:], np.float32) for _ in outputs]
    results = [np.empty(xs.shape[1:], np.float32) for _ in outputs]
    for i, buffer in zip(inputs, feeds):
        binding.bind_cpu_input(i.name, buffer)
    for o, buffer in zip(outputs, results):
        binding.bind_output(o.name, "cpu", 0, np.float32, list(buffer.shape), buffer.ctypes.data)
    times = []
    for x in xs:
        start = time.perf_counter()
        feeds[0][...] = x
        session.run_with_iobinding(binding)
        times.append(time.perf_counter() - start)
    return times


def runtime_loop(session: Session, xs: np.ndarray) -> tuple[list[float], np.ndarray]:
    times, ys = [], []
    for x in xs:
        start = time.perf_counter()
        y = session.step(x)
        times.append(time.perf_counter() - start)
        ys.append(y)
    return times, np.stack(ys)


def main(config: Config) -> None:
    torch.manual_seed(0)
    model = lifexport.LIFRefrac()
    folder = Path(tempfile.mkdtemp())
    x = torch.rand(config.b, config.n)
    path = lifexport.to_onnx(model, x, folder / "s.onnx", graph="step", masks=config.masks).path
    rng = np.random.default_rng(0)
    xs = (rng.random((config.steps, config.b, config.n)) * 3).astype(np.float32)
    hand, ours, floor = [], [], []
    for _ in range(config.rounds):
        floor += floor_loop(path, xs, config.threads)
        times, expected = hand_loop(path, xs, config.threads)
        hand += times
        session = Session(path, session_options=_options(config.threads))
        times, ys = runtime_loop(session, xs)
        ours += times
        np.testing.assert_array_equal(ys, expected)  # the same spikes, bit for bit
    hand_us, ours_us = statistics.median(hand) * 1e6, statistics.median(ours) * 1e6
    print(
        f"LIF-refrac step graph (masks={config.masks!r}), B={config.b}, N={config.n}, CPU EP, "
        f"{config.threads} thread(s), median of {len(hand)} steps each:"
    )
    print(f"  floor: onnxruntime copy graph  {statistics.median(floor) * 1e6:8.2f} us/step")
    print(f"  hand-written onnxruntime loop  {hand_us:8.2f} us/step")
    print(f"  lifexport.runtime.Session.step {ours_us:8.2f} us/step")
    print(f"  ratio Session / hand loop      {ours_us / hand_us:8.2f}")


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return options


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Config()).items():
        if name != "masks":
            parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--masks", choices=("arithmetic", "select"), default="arithmetic")
    main(Config(**vars(parser.parse_args())))
