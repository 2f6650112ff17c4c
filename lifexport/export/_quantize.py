"""int8 QDQ quantization of an exported inference graph: Linear/Conv weights only.

What changes, and what does not:

- Weights of ``MatMul``/``Gemm``/``Conv`` become int8 (symmetric, one scale per output
  channel) behind a ``DequantizeLinear``; biases int32. In the main graph, onnxruntime's
  ``quantize_static`` (QDQ format, calibrated on the feeds given) does this and also quantizes
  the layer's *input* (uint8; exact for 0/1 spikes, whose range is [0, 1]), so onnxruntime's
  CPU provider runs the product in integer arithmetic. The layer's output, the current into
  the neurons, is not quantized (``OpTypesToExcludeOutputQuantization``).
- Inside ``Scan`` bodies (the time loop of a stack of cells, recurrent layers)
  ``quantize_static`` changes nothing: its QDQ quantizer does not enter subgraphs (its
  ``EnableSubgraph`` serves the QOperator format only) and its calibrator cannot observe a
  tensor inside a loop. There each weight the body reads from the main graph is quantized the
  same way (onnxruntime's ``quantize_data``, per channel) and dequantized once in the main
  graph before the loop; the products inside the loop stay float.
- Spikes (``Greater`` -> ``Cast``) and neuron state (``v``, ``i``, ``rho``) are untouched:
  exactly 0/1, float32. Only standard-domain ops are added.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from lifexport.export._files import save_model
from lifexport.graph import QUANTIZE_KEY, QUANTIZED_OPS

__all__ = ["quantize_int8", "QUANTIZED_OPS"]


def _load(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        return model
    if isinstance(source, (str, os.PathLike)):
        return onnx.load(os.fspath(source))
    raise TypeError(
        f"model must be an onnx.ModelProto or the path of an .onnx file, got "
        f"{type(source).__name__}"
    )


def _graph_inputs(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Graph inputs (not initializers) and their dims, ``None`` where dynamic."""
    inits = {t.name for t in model.graph.initializer}
    dims = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape]
    return dims


def _complete_feeds(
    model: onnx.ModelProto, calibration: Iterable[Mapping[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Each feed as float32 arrays; graph inputs a feed lacks (states) become zeros with the
    batch size of the feed's ``x`` (axis 1 of a sequence, axis 0 of a step)."""
    inputs = _graph_inputs(model)
    meta = {p.key: p.value for p in model.metadata_props}
    batch_axis = 0 if meta.get("lifexport.graph") == "step" else 1
    feeds = []
    for index, feed in enumerate(calibration):
        if not isinstance(feed, Mapping):
            raise TypeError(
                f"calibration[{index}] must be a dict of input name -> array, got "
                f"{type(feed).__name__}"
            )
        unknown = sorted(set(feed) - set(inputs))
        if unknown:
            raise ValueError(
                f"calibration[{index}] names inputs {unknown} the graph lacks; its inputs are "
                f"{list(inputs)}"
            )
        done = {k: np.asarray(v, dtype=np.float32) for k, v in feed.items()}
        for name, dims in inputs.items():
            if name in done:
                continue
            if "x" not in done or done["x"].ndim <= batch_axis:
                raise ValueError(
                    f"calibration[{index}] lacks input {name!r}, and without an 'x' of known "
                    "batch size it cannot be filled with zeros; give it"
                )
            batch = done["x"].shape[batch_axis]
            shape = [batch if d is None else d for d in dims]
            done[name] = np.zeros(shape, dtype=np.float32)
        feeds.append(done)
    if not feeds:
        raise ValueError("calibration must hold at least one feed (a dict with 'x')")
    return feeds


def _weight_axis(node: onnx.NodeProto, rank: int) -> int | None:
    """The output-channel axis of a node's weight (its input 1), or ``None``."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "MatMul":
        return rank - 1
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    return 0 if trans_b else 1


def _loop_weights(graph: onnx.GraphProto, outer: dict[str, onnx.TensorProto]) -> dict[str, int]:
    """Weights that nodes inside subgraphs (``Scan`` bodies, ...) read from the main graph's
    initializers ``outer``: name -> output-channel axis."""
    found: dict[str, int] = {}
    for node in graph.node:
        for attr in node.attribute:
            bodies = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for body in bodies:
                local = {t.name for t in body.initializer} | {v.name for v in body.input}
                for inner in body.node:
                    if inner.op_type not in QUANTIZED_OPS or len(inner.input) < 2:
                        continue
                    name = inner.input[1]
                    if name in outer and name not in local and len(outer[name].dims) >= 2:
                        found[name] = _weight_axis(inner, len(outer[name].dims))
                found.update(_loop_weights(body, outer))
    return found


def _quantize_loop_weights(model: onnx.ModelProto) -> list[str]:
    """Int8 per-channel weights, dequantized in the main graph, for the weights that loop
    bodies read (see the module docstring). Returns their names."""
    from onnxruntime.quantization.quant_utils import quantize_data

    graph = model.graph
    outer = {t.name: t for t in graph.initializer}
    weights = _loop_weights(graph, outer)
    nodes = []
    for name, axis in sorted(weights.items()):
        w = numpy_helper.to_array(outer[name]).astype(np.float32)
        channels = np.moveaxis(w, axis, 0)  # (C, ...)
        q = np.empty(channels.shape, dtype=np.int8)
        scales = np.empty(channels.shape[0], dtype=np.float32)
        for c, row in enumerate(channels):
            _, scale, q_row = quantize_data(row.reshape(-1), onnx.TensorProto.INT8, symmetric=True)
            q[c] = np.asarray(q_row).reshape(row.shape)
            scales[c] = np.asarray(scale).item()
        graph.initializer.remove(outer[name])
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.moveaxis(q, 0, axis), f"{name}_quantized"),
                numpy_helper.from_array(scales, f"{name}_scale"),
                numpy_helper.from_array(np.zeros_like(scales, dtype=np.int8), f"{name}_zero_point"),
            ]
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                [name],
                name=f"{name}_DequantizeLinear",
                axis=axis,
            )
        )
    for node in reversed(nodes):  # before every node, the loops included
        graph.node.insert(0, node)
    return sorted(weights)


class _Feeds:
    """onnxruntime's ``CalibrationDataReader`` over a list of feeds (built lazily, as the
    base class lives in the optional onnxruntime)."""

    def __new__(cls, feeds: list[dict[str, np.ndarray]]):
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._iter = iter(feeds)

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._iter, None)

        return Reader()


def _check_inference(model: onnx.ModelProto) -> None:
    domains = {n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")}
    if domains or any(f.domain not in ("", "ai.onnx") for f in model.functions):
        raise ValueError(
            "model must be an inference graph (standard ONNX ops only), got one with ops of "
            f"domains {sorted(domains) or [f.domain for f in model.functions]}; export it with "
            "mode='inference'"
        )


def quantize_int8(
    model: str | os.PathLike | onnx.ModelProto,
    calibration: Iterable[Mapping[str, np.ndarray]],
    path: str | os.PathLike | None = None,
) -> onnx.ModelProto:
    """int8 QDQ version of an exported inference graph: Linear/Conv weights in int8.

    Weights of ``MatMul``/``Gemm``/``Conv`` are int8 with one symmetric scale per output
    channel, calibrated layer inputs uint8 (exact for spikes); spikes stay exactly 0/1 and
    neuron state float32; only standard ONNX ops (``QuantizeLinear``/``DequantizeLinear``)
    are added, so every runtime and execution provider runs the file. Step and sequence
    graphs both work (see the module docstring for weights read inside ``Scan`` bodies).

    Args:
        model: the float graph, as written by :func:`lifexport.to_onnx` (``mode="inference"``):
            an ``onnx.ModelProto`` or the path of its file.
        calibration: feeds representative of real input, each a dict of input name -> array
            (``{"x": xs}``; state inputs left out are filled with zeros, the rest state). The
            ranges of the layer inputs are taken from them.
        path: where to write the int8 file (atomically: a temporary file renamed over it);
            may be the float file's own path. ``None`` writes nothing.

    Returns:
        The quantized model (also written to ``path`` when given).

    Raises:
        ValueError: a training graph, empty calibration, feeds naming unknown inputs.
        TypeError: a ``model`` or feed of another type.
        ImportError: onnxruntime is not installed.

    Examples:
        >>> import lifexport, torch
        >>> net = lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIFRefrac())
        >>> out = lifexport.to_onnx(net, torch.rand(10, 2, 4), "/tmp/net.onnx")
        >>> q = quantize_int8(out.path, [{"x": (torch.rand(10, 2, 4) < 0.3).numpy()}])
        >>> sorted({n.op_type for n in q.graph.node} & {"QuantizeLinear", "DequantizeLinear"})
        ['DequantizeLinear', 'QuantizeLinear']
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    source = _load(model)
    _check_inference(source)
    feeds = _complete_feeds(source, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            source,
            out,
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "WeightSymmetric": True,
                "QuantizeBias": False,  # float32 bias: a third of int32 bias + scale + zero point
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
            },
        )
        quantized = onnx.load(out)
    in_loops = _quantize_loop_weights(quantized)
    props = {p.key: p.value for p in source.metadata_props}
    props[QUANTIZE_KEY] = "int8 QDQ: per-channel weights" + (
        f"; dequantized before the loop: {', '.join(in_loops)}" if in_loops else ""
    )
    onnx.helper.set_model_props(quantized, props)
    onnx.checker.check_model(quantized)
    if path is not None:
        save_model(quantized, path)
    return quantized
