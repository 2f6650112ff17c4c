"""The ONNX functions of the ``lifexport`` domain: a standard-op body for every custom op.

A training-mode graph holds each spike as a bare node ``lifexport.<Name>`` (``SuperSpike``)
and each surrogate gradient as ``lifexport.<Name>Grad``, with the surrogate width as the float
attribute ``alpha``. The model carries one ``FunctionProto`` per op type it uses, with the body
below, so onnxruntime runs it without a custom kernel. Bodies reference ``alpha`` as an
attribute, so one function serves every ``alpha``; each formula is the torch formula of
:mod:`lifexport.functional.threshold`, op for op. Inputs are float32 or float64; ``alpha`` and
the constants are float32, as ONNX float attributes are.
"""

from __future__ import annotations

import math
from typing import TypeVar, Union

import numpy as np
import onnx
from onnx.defs import OpSchema
from onnxscript import DOUBLE, FLOAT, script
from onnxscript import opset18 as op
from onnxscript.values import Opset

from lifexport.export._graph import op_types
from lifexport.functional.threshold import SURROGATES

__all__ = ["LIFEXPORT", "OPSET", "OP_TYPES", "attach_functions", "function_proto", "op_schema"]

OPSET: int = op.version
"""The standard opset of every exported model and of every function body (they must agree)."""

LIFEXPORT = Opset("lifexport", 1)
"""The custom domain of the spike ops."""

_SQRT_PI = np.array(math.sqrt(math.pi))  # float64, so float64 graphs get every bit
T = TypeVar("T", bound=Union[FLOAT, DOUBLE])  # noqa: UP007 (onnxscript reads typing.Union)
_T_TYPES = ["tensor(float)", "tensor(double)"]  # T's


@script(LIFEXPORT)
def Spike(x: T, alpha: float) -> T:
    """Spike(x: T, alpha: float) -> T"""
    return op.CastLike(op.Greater(x, op.CastLike(0.0, x)), x)


@script(LIFEXPORT)
def SuperSpikeGrad(grad: T, x: T, alpha: float) -> T:
    """SuperSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    one = op.CastLike(1.0, x)
    two = op.CastLike(2.0, x)
    return op.Div(grad, op.Pow(op.Add(op.Mul(a, op.Abs(x)), one), two))


@script(LIFEXPORT)
def TriangleSpikeGrad(grad: T, x: T, alpha: float) -> T:
    """TriangleSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    one = op.CastLike(1.0, x)
    return op.Mul(op.Mul(grad, a), op.Relu(op.Sub(one, op.Abs(x))))


@script(LIFEXPORT)
def TanhSpikeGrad(grad: T, x: T, alpha: float) -> T:
    """TanhSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    one = op.CastLike(1.0, x)
    two = op.CastLike(2.0, x)
    # tanh in float64, rounded to T: as exact as torch's. onnxruntime's float Tanh (MLAS) is
    # off by up to 4 ulp, which 1 - tanh^2 turns into relative errors of 1e-2 where |tanh| is
    # near 1, and 1e-3 in a weight gradient (onnxruntime 1.32, CPU provider).
    tanh = op.CastLike(op.Tanh(op.Cast(op.Mul(x, a), to=onnx.TensorProto.DOUBLE)), x)
    return op.Mul(grad, op.Sub(one, op.Pow(tanh, two)))


@script(LIFEXPORT)
def CircSpikeGrad(grad: T, x: T, alpha: float) -> T:
    """CircSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    one = op.CastLike(1.0, x)
    two = op.CastLike(2.0, x)
    zero = op.CastLike(0.0, x)
    x2 = op.Pow(x, two)
    r2 = op.Add(op.Mul(a, a), x2)
    outer = op.Neg(op.Div(x2, op.Mul(two, op.Pow(r2, op.CastLike(1.5, x)))))
    inner = op.Div(one, op.Mul(two, op.Sqrt(r2)))
    dz = op.Mul(op.Mul(op.Add(outer, inner), two), a)
    dz = op.Where(op.IsInf(r2), zero, dz)  # inf / inf where r2 overflows
    return op.Mul(grad, op.Where(op.Less(dz, zero), zero, dz))  # clamp_min(0), NaN kept


@script(LIFEXPORT)
def HeaviErfcSpikeGrad(grad: T, x: T, alpha: float) -> T:
    """HeaviErfcSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    two = op.CastLike(2.0, x)
    sqrt_pi = op.CastLike(_SQRT_PI, x)
    gauss = op.Exp(op.Neg(op.Pow(op.Mul(a, x), two)))
    return op.Mul(op.Div(op.Mul(two, gauss), sqrt_pi), grad)


_GRADS = {
    f.name: f
    for f in (SuperSpikeGrad, TriangleSpikeGrad, TanhSpikeGrad, CircSpikeGrad, HeaviErfcSpikeGrad)
}
# op type -> body; every spike shares the Heaviside body, under its own name.
_BODIES = {
    **{s.onnx_name: Spike for s in SURROGATES.values()},
    **{f"{s.onnx_name}Grad": _GRADS[f"{s.onnx_name}Grad"] for s in SURROGATES.values()},
}
OP_TYPES: frozenset[str] = frozenset(_BODIES)
"""Every op type of the ``lifexport`` domain."""


def function_proto(op_type: str) -> onnx.FunctionProto:
    """The ``FunctionProto`` of the ``lifexport`` op ``op_type`` (``"SuperSpike"``)."""
    proto = _BODIES[op_type].to_function_proto()
    proto.name = op_type
    proto.doc_string = proto.doc_string.replace(_BODIES[op_type].name, op_type, 1)
    return proto


def op_schema(op_type: str) -> OpSchema:
    """The schema of the ``lifexport`` op ``op_type``, from its function's signature.

    The exporter needs a schema to emit a node of an op it does not know; it is not
    registered with ``onnx.defs``, since the model-local function defines the op.
    """
    signature = _BODIES[op_type].op_signature
    return OpSchema(
        op_type,
        LIFEXPORT.domain,
        LIFEXPORT.version,
        inputs=[OpSchema.FormalParameter(p.name, "T") for p in signature.inputs],
        outputs=[OpSchema.FormalParameter("y", "T")],
        type_constraints=[("T", _T_TYPES, "a floating-point tensor")],
        attributes=[
            OpSchema.Attribute(a.name, OpSchema.AttrType.FLOAT, "surrogate width")
            for a in signature.attributes
        ],
    )


def attach_functions(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add to ``model`` (in place) the function of each ``lifexport`` op it uses and lacks.

    Unknown ``lifexport`` op types are left for :func:`check_op_set` to report.

    Returns:
        ``model``, for chaining.
    """
    present = {f.name for f in model.functions if f.domain == LIFEXPORT.domain}
    used = {t for d, t in op_types(model) if d == LIFEXPORT.domain}
    for op_type in sorted((used & OP_TYPES) - present):
        model.functions.append(function_proto(op_type))
    return model
