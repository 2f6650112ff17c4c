"""quantize_int8: QDQ int8 weights on exported inference graphs, run on onnxruntime's CPU
provider and held to eager torch (spike flip rates measured, not bit equality)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

import lifexport
from lifexport.export._quantize import quantize_int8
from lifexport.functional import LIFParameters, LIFRefracParameters
from lifexport.graph import QUANTIZE_KEY
from tests.nets import seeded_linear

T, B, F, H, O = 60, 16, 32, 64, 10
P = LIFRefracParameters(LIFParameters(v_th=0.5), rho_reset=2.0)


def linear(n_in, n_out, seed):
    return seeded_linear(n_in, n_out, seed, (-0.1, 0.3))


def spikes(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.3).float()


def all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from all_nodes(body)


def int8_weights(model) -> set[str]:
    """Outputs of DequantizeLinear nodes that read an int8 initializer (the weights)."""
    inits = {t.name: t for t in model.graph.initializer}
    return {
        n.output[0]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and inits.get(n.input[0]) is not None
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    }


def flip_rate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a != b))


@pytest.mark.parametrize("graph", ["sequence", "step"])
def test_int8_graph_on_cpu(graph, tmp_path, ort_session):
    """Linear -> LIF-refrac -> Linear -> LI, and its first half (the hidden spikes)."""
    full = lifexport.SequentialState(
        linear(F, H, 0), lifexport.LIFRefrac(P), linear(H, O, 1), lifexport.LI()
    )
    if graph == "step":
        full = lifexport.SequentialState(
            full[0], lifexport.LIFRefracCell(P), full[2], lifexport.LICell()
        )
    hidden = lifexport.SequentialState(*list(full)[:2])
    calibration = [{"x": spikes((T, B, F), seed).numpy()} for seed in (1, 2)]
    if graph == "step":
        calibration = [{"x": c["x"][t]} for c in calibration for t in range(0, T, 6)]
    xs = spikes((T, B, F), 3)
    for name, net in (("full", full), ("hidden", hidden)):
        example = xs if graph == "sequence" else xs[0]
        out = lifexport.to_onnx(net, example, tmp_path / f"{name}.onnx", graph=graph)
        model = quantize_int8(out.path, calibration, tmp_path / f"{name}.int8.onnx")
        assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # written atomically
        assert {n.domain for n in all_nodes(model.graph)} <= {"", "ai.onnx"}
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        weights = {n.input[1] for n in model.graph.node if n.op_type == "Gemm"}
        assert weights and weights <= int8_weights(model)
        size = os.path.getsize(tmp_path / f"{name}.int8.onnx")
        assert size < os.path.getsize(out.path)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["lifexport.graph"] == graph and meta[QUANTIZE_KEY].startswith("int8 QDQ")

        run = ort_session(tmp_path / f"{name}.int8.onnx")
        with torch.no_grad():
            if graph == "sequence":
                expected, state = net(xs)
                got = run({"x": xs.numpy(), **zeros_state(out, net, xs[0])})
                ys = got["y"]
            else:
                expected, _ = lifexport.TimeLoop(net)(xs)
                ys = step_through(run, out, net, xs)
        for key, value in (got if graph == "sequence" else {}).items():
            assert value.dtype == np.float32, key
        if name == "hidden":
            assert set(np.unique(ys)) <= {0.0, 1.0}
            rate = flip_rate(ys, expected.numpy())
            assert 0.1 < expected.mean() < 0.5
            assert rate < 0.02, f"hidden spike flip rate {rate:.4f}"  # measured: under 1%
        else:
            scale = float(expected.abs().max())
            assert np.max(np.abs(ys - expected.numpy())) < 0.05 * scale


def zeros_state(out, net, x_step):
    """The graph's state inputs at rest, from the model's own initial state."""
    from lifexport.modules import flatten_state

    states, _ = flatten_state(net.initial_state(x_step))
    return {n: s.numpy() for n, s in zip(out.state_names, states)}


def step_through(run, out, net, xs):
    state = zeros_state(out, net, xs[0])
    ys = []
    for x in xs:
        got = run({"x": x.numpy(), **state})
        ys.append(got["y"])
        state = {n: got[f"next_{n}"] for n in out.state_names}
    return np.stack(ys)


@pytest.mark.parametrize("case", ["cells", "recurrent"])
def test_weights_read_inside_scan_are_dequantized_before_it(case, tmp_path, ort_session):
    """onnxruntime's QDQ quantizer leaves Scan bodies alone; their weights become int8 in the
    main graph, dequantized once before the loop."""
    if case == "cells":
        net = lifexport.SequentialState(linear(F, H, 0), lifexport.LIFRefracCell(P))
    else:
        net = lifexport.SequentialState(lifexport.LIFRefracRecurrent(F, H, P))
    xs = spikes((T, B, F), 3)
    out = lifexport.to_onnx(net, xs, tmp_path / "f.onnx", with_state=False)
    model = quantize_int8(out.path, [{"x": spikes((T, B, F), 1).numpy()}])
    in_loop = {
        n.input[1]
        for scan in model.graph.node
        if scan.op_type == "Scan"
        for n in all_nodes(scan.attribute[0].g)
        if n.op_type in ("Gemm", "MatMul")
    }
    assert in_loop and in_loop <= int8_weights(model)
    ys = ort_session(model)({"x": xs.numpy()})["y"]
    with torch.no_grad():
        expected = (net if net.is_sequence else lifexport.TimeLoop(net))(xs)[0].numpy()
    assert set(np.unique(ys)) <= {0.0, 1.0}
    if case == "cells":  # recurrent networks amplify each flip through the recurrence
        assert flip_rate(ys, expected) < 0.02


def custom_op_model():
    node = helper.make_node("SuperSpike", ["x"], ["y"], domain="lifexport")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18),
                                                   helper.make_opsetid("lifexport", 1)])


def small_model():
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["B", 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["B", 2])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_bad_inputs():
    with pytest.raises(ValueError, match="model must be an inference graph"):
        quantize_int8(custom_op_model(), [{"x": np.zeros(2, np.float32)}])
    with pytest.raises(TypeError, match="model must be an onnx.ModelProto or the path"):
        quantize_int8(b"bytes", [])
    with pytest.raises(ValueError, match="calibration must hold at least one feed"):
        quantize_int8(small_model(), [])
    with pytest.raises(ValueError, match=r"calibration\[0\] names inputs \['z'\]"):
        quantize_int8(small_model(), [{"z": np.zeros((1, 3), np.float32)}])
    with pytest.raises(TypeError, match=r"calibration\[0\] must be a dict"):
        quantize_int8(small_model(), [np.zeros((1, 3), np.float32)])
