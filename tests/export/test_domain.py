"""The ``lifexport`` ONNX domain: one row per surrogate family, what a training export holds,
and functions that compute what the torch ops compute, edge values included."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import lifexport.functional as lx
from lifexport.export import (
    DOMAIN_OPS,
    LIFEXPORT,
    OP_TYPES,
    OPSET,
    attach_functions,
    export_program,
    function_proto,
    op_types,
    trace_training_step,
)
from lifexport.functional.threshold import SURROGATES

EDGES = [0.0, -0.0, 1e-7, -1e-7, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 1e30, math.inf, -math.inf]
DTYPES = {torch.float32: TensorProto.FLOAT, torch.float64: TensorProto.DOUBLE}


def op_model(op_type: str, inputs: list[str], alpha: float, dtype: int) -> onnx.ModelProto:
    """A graph of one ``lifexport`` node, with its function attached."""
    node = helper.make_node(op_type, inputs, ["y"], domain=LIFEXPORT.domain, alpha=alpha)
    graph = helper.make_graph(
        [node],
        op_type,
        [helper.make_tensor_value_info(n, dtype, ["n"]) for n in inputs],
        [helper.make_tensor_value_info("y", dtype, ["n"])],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(LIFEXPORT.domain, 1)]
    return attach_functions(helper.make_model(graph, opset_imports=opsets))


def values(dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.cat([torch.tensor(EDGES + [math.nan]), 4 * torch.randn(200, generator=gen)]).to(
        dtype
    )


def test_every_surrogate_has_a_row_and_a_function_per_op():
    assert list(DOMAIN_OPS) == list(SURROGATES)
    assert all(row.method == m and row.surrogate is SURROGATES[m] for m, row in DOMAIN_OPS.items())
    names = {row.spike for row in DOMAIN_OPS.values()}
    assert {row.grad for row in DOMAIN_OPS.values()} == {f"{n}Grad" for n in names}
    assert OP_TYPES == names | {f"{n}Grad" for n in names}
    for op_type in OP_TYPES:
        proto = function_proto(op_type)
        assert (proto.domain, proto.name) == (LIFEXPORT.domain, op_type)
        assert list(proto.attribute) == ["alpha"]
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", OPSET)]
        assert proto.doc_string.startswith(f"{op_type}(")


class Layer(torch.nn.Module):
    def __init__(self, method: str) -> None:
        super().__init__()
        self.linear, self.method = torch.nn.Linear(2, 3), method

    def forward(self, x):
        return lx.threshold(self.linear(x), self.method, 2.0)


@pytest.mark.parametrize("method", SURROGATES)
def test_row_is_what_a_training_export_holds(method):
    row = DOMAIN_OPS[method]
    step = trace_training_step(Layer(method), (torch.rand(4, 2),))
    model = export_program(step.module, step.args, mode="training")
    assert {t for d, t in op_types(model) if d == LIFEXPORT.domain} == {row.spike, row.grad}
    functions = {f.name: f.SerializeToString() for f in model.functions}
    assert functions == {t: function_proto(t).SerializeToString() for t in (row.spike, row.grad)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", SURROGATES)
def test_spike_function_is_the_heaviside_step(ort_session, method, dtype):
    surrogate, x = SURROGATES[method], values(dtype)
    model = op_model(DOMAIN_OPS[method].spike, ["x"], 2.0, DTYPES[dtype])
    onnx.checker.check_model(model, full_check=True)
    out = ort_session(model)({"x": x.numpy()})["y"]
    np.testing.assert_array_equal(out, surrogate.spike_attr(x, 2.0).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [0.5, 3.0])
@pytest.mark.parametrize("method", SURROGATES)
def test_gradient_function_matches_the_torch_op(ort_session, method, alpha, dtype):
    surrogate, x = SURROGATES[method], values(dtype)
    grad = torch.linspace(-2.0, 2.0, x.numel(), dtype=dtype)
    model = op_model(DOMAIN_OPS[method].grad, ["grad", "x"], alpha, DTYPES[dtype])
    onnx.checker.check_model(model, full_check=True)
    out = ort_session(model)({"grad": grad.numpy(), "x": x.numpy()})["y"]
    expected = surrogate.spike_attr_grad(grad, x, alpha).numpy()
    # super and triangle agree to the bit; elsewhere onnxruntime's tanh, exp and pow are not
    # torch's, and 1 - tanh^2 (tanh) and the difference of two terms (circ) cancel: a few
    # ulps of the O(1) terms (8 seen) remain.
    atol = 0.0 if method in ("super", "triangle") else 16 * torch.finfo(dtype).eps
    np.testing.assert_allclose(out, expected, rtol=0, atol=atol, equal_nan=True)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 3.0])
def test_tanh_gradient_function_is_within_a_rounding_of_torch(ort_session, alpha):
    """1 - tanh^2 cancels where |tanh| is near 1, so each ulp of tanh shows in the gradient.
    The function takes tanh in float64 and rounds it to float32, as exact as torch's (which is
    off by 1 ulp at most); onnxruntime's own float Tanh was off by 4 ulps, 8 eps here."""
    surrogate = SURROGATES["tanh"]
    x = torch.linspace(-8.0, 8.0, 100_001)
    grad = torch.linspace(-2.0, 2.0, x.numel())
    model = op_model("TanhSpikeGrad", ["grad", "x"], alpha, TensorProto.FLOAT)
    out = ort_session(model)({"grad": grad.numpy(), "x": x.numpy()})["y"]
    expected = surrogate.spike_attr_grad(grad, x, alpha).numpy()
    eps = torch.finfo(torch.float32).eps
    np.testing.assert_allclose(out, expected, rtol=0, atol=2 * eps)
