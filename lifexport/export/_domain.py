"""The ``lifexport`` ONNX domain in one place: its ops, their bodies, their translations, checks.

Each surrogate family of :data:`lifexport.functional.threshold.SURROGATES` is one row of
:data:`DOMAIN_OPS`: its spike op type (``SuperSpike``), the function body of its gradient
(``SuperSpikeGrad``) and the torch ops that become them. Everything else derives from the rows
when it is used: :func:`domain_op_types`, the schemas, the ``FunctionProto`` of each op, the
exporter's translation table per mode and the check of which ops a graph of each mode may hold.
A surrogate registered with :func:`lifexport.functional.register_surrogate` joins with one
row, :meth:`DomainOp.register`; without one it exports in inference mode only.

Two modes:

- ``inference``: each spike op (``lifexport::<method>_spike`` and ``..._spike_attr``) becomes
  ``Cast(Greater(x, 0))``, standard ops any runtime runs; a spike ignores ``alpha``.
  Surrogate gradients have no inference translation.
- ``training``: each ``lifexport::<method>_spike_attr`` becomes a bare node
  ``lifexport.<Name>`` (``SuperSpike``) and each ``..._spike_attr_grad`` a bare
  ``lifexport.<Name>Grad``, both with the float attribute ``alpha``; :func:`attach_functions`
  then adds their bodies. (A translation that calls the onnxscript function itself would lose
  the named node: the exporter inlines local functions, seen on torch 2.13.) The ops that take
  ``alpha`` as a tensor have no constant to record and raise :class:`ExportError`.

The model carries one ``FunctionProto`` per op type it uses, so onnxruntime runs it without a
custom kernel. Bodies reference ``alpha`` as an attribute, so one function serves every
``alpha``; each formula is the torch formula of :mod:`lifexport.functional.threshold`, op for
op. Inputs are float32 or float64; ``alpha`` and the constants are float32, as ONNX float
attributes are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar, Union

import numpy as np
import onnx
from onnx.defs import OpSchema
from onnxscript import DOUBLE, FLOAT, script
from onnxscript import opset18 as op
from onnxscript.values import OnnxFunction, Op, Opset

from lifexport.errors import ExportError
from lifexport.export import _quirks
from lifexport.export._graph import op_types
from lifexport.functional.threshold import METHODS, SURROGATES, Surrogate

__all__ = [
    "DOMAIN_OPS",
    "LIFEXPORT",
    "MODES",
    "OPSET",
    "OP_TYPES",
    "DomainOp",
    "Mode",
    "attach_functions",
    "check_mode",
    "domain_op_types",
    "check_op_set",
    "function_proto",
    "op_schema",
    "translation_table",
]

OPSET: int = op.version
"""The standard opset of every exported model and of every function body (they must agree)."""

LIFEXPORT = Opset("lifexport", 1)
"""The custom domain of the spike ops."""

Mode = Literal["inference", "training"]
MODES: tuple[Mode, ...] = ("inference", "training")


def check_mode(mode: object) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")


# -- function bodies ---------------------------------------------------------------------------

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


# -- one row per surrogate family --------------------------------------------------------------


@dataclass(frozen=True)
class DomainOp:
    """One surrogate family in the ``lifexport`` domain: its two op types and their torch ops.

    A registered surrogate's row is added with :meth:`register`. Its ``grad_body`` is an
    onnxscript function of the domain, named ``<spike>Grad``, ``(grad: T, x: T, alpha:
    float) -> T`` for ``T`` float or double, computing the surrogate's ``grad_formula`` op
    for op (the spike's body is the shared Heaviside step)::

        @onnxscript.script(LIFEXPORT)
        def FastSigmoidSpikeGrad(grad: T, x: T, alpha: float) -> T:
            ...

        DomainOp("fast_sigmoid", "FastSigmoidSpike", FastSigmoidSpikeGrad).register()

    Attributes:
        method: the ``method`` that selects the family, a key of ``SURROGATES`` (``"super"``).
        spike: the op type of its spike (``"SuperSpike"``), whose body is the Heaviside step
            :func:`Spike` that every spike shares.
        grad_body: the function of its surrogate gradient, named as its op type
            (``SuperSpikeGrad``, the spike's op type with ``Grad``).
    """

    method: str
    spike: str
    grad_body: OnnxFunction

    @property
    def grad(self) -> str:
        """The op type of the surrogate gradient (``"SuperSpikeGrad"``)."""
        return self.grad_body.name

    @property
    def surrogate(self) -> Surrogate:
        """The torch ops this row translates."""
        return SURROGATES[self.method]

    def register(self) -> DomainOp:
        """Add this row to :data:`DOMAIN_OPS`, so training exports translate its surrogate.

        Returns:
            The row, for chaining.

        Raises:
            ValueError: the surrogate is not registered (register it first with
                :func:`lifexport.functional.register_surrogate`), already has a row, or an op
                type is taken or misnamed.
            TypeError: ``grad_body`` is not an onnxscript function of
                ``(grad, x, alpha: float)``.
        """
        if self.method not in SURROGATES:
            raise ValueError(
                f"method {self.method!r} is not a registered surrogate; register it first with "
                "lifexport.functional.register_surrogate"
            )
        if self.method in DOMAIN_OPS:
            raise ValueError(f"method {self.method!r} has a row already: {DOMAIN_OPS[self.method]}")
        if not isinstance(self.grad_body, OnnxFunction):
            raise TypeError(
                f"grad_body must be an onnxscript function (@onnxscript.script(LIFEXPORT)), got "
                f"{type(self.grad_body).__name__}"
            )
        signature = self.grad_body.op_signature
        inputs = [p.name for p in signature.inputs]
        attributes = [a.name for a in signature.attributes]
        if len(inputs) != 2 or attributes != ["alpha"]:
            raise TypeError(
                f"grad_body must take (grad, x, alpha: float), got inputs {inputs} and "
                f"attributes {attributes}"
            )
        if not (self.spike.isidentifier() and self.spike[:1].isupper()):
            raise ValueError(f"spike must be a CamelCase op type, got {self.spike!r}")
        if self.grad != f"{self.spike}Grad":
            raise ValueError(
                f"grad_body must be named {self.spike}Grad (the spike's op type with Grad), got "
                f"{self.grad}"
            )
        taken = sorted({self.spike, self.grad} & domain_op_types())
        if taken:
            raise ValueError(f"op types {taken} are taken in the lifexport domain")
        DOMAIN_OPS[self.method] = self
        return self

    def unregister(self) -> None:
        """Remove this row, added by :meth:`register`, from :data:`DOMAIN_OPS`.

        Raises:
            ValueError: the row is built in, or not registered.
        """
        if self.method in METHODS:
            raise ValueError(f"the row of built-in method {self.method!r} cannot be removed")
        if DOMAIN_OPS.get(self.method) is not self:
            raise ValueError(f"this row of method {self.method!r} is not registered")
        del DOMAIN_OPS[self.method]

    def translations(self, mode: Mode) -> dict[Callable, Callable]:
        """This family's entries of the exporter's translation table for ``mode``.

        ``spike_attr``/``spike_attr_grad`` (alpha a float, what an export records) become the
        named nodes in training mode; an inference spike ignores alpha, so both spike ops
        translate to the Heaviside step.
        """
        s = self.surrogate
        if mode == "inference":
            return {s.spike: _heaviside, s.spike_attr: _heaviside}
        return {
            s.spike_attr: _spike_node(self.spike),
            s.spike_attr_grad: _grad_node(self.grad),
            s.spike: _needs_constant_alpha,
            s.spike_grad: _needs_constant_alpha,
        }


DOMAIN_OPS: dict[str, DomainOp] = {
    row.method: row
    for row in (
        DomainOp("super", "SuperSpike", SuperSpikeGrad),
        DomainOp("triangle", "TriangleSpike", TriangleSpikeGrad),
        DomainOp("tanh", "TanhSpike", TanhSpikeGrad),
        DomainOp("circ", "CircSpike", CircSpikeGrad),
        DomainOp("heavi_erfc", "HeaviErfcSpike", HeaviErfcSpikeGrad),
    )
}
"""The ``lifexport`` ops of each surrogate family, by ``method``: the built-in rows and those
added with :meth:`DomainOp.register`. Read it, do not write it: registration checks rows."""


def _bodies() -> dict[str, OnnxFunction]:
    """Op type -> body, for every row; every spike shares the Heaviside body, under its own
    name."""
    return {
        **{row.spike: Spike for row in DOMAIN_OPS.values()},
        **{row.grad: row.grad_body for row in DOMAIN_OPS.values()},
    }


def domain_op_types() -> frozenset[str]:
    """Every op type of the ``lifexport`` domain now, registered rows included."""
    return frozenset(_bodies())


OP_TYPES: frozenset[str] = domain_op_types()
"""The op types of the built-in rows (:func:`domain_op_types` adds the registered ones)."""


# -- schemas and functions ---------------------------------------------------------------------


def function_proto(op_type: str) -> onnx.FunctionProto:
    """The ``FunctionProto`` of the ``lifexport`` op ``op_type`` (``"SuperSpike"``)."""
    body = _bodies()[op_type]
    proto = body.to_function_proto()
    proto.name = op_type
    proto.doc_string = proto.doc_string.replace(body.name, op_type, 1)
    return proto


def op_schema(op_type: str) -> OpSchema:
    """The schema of the ``lifexport`` op ``op_type``, from its function's signature.

    The exporter needs a schema to emit a node of an op it does not know; it is not
    registered with ``onnx.defs``, since the model-local function defines the op.
    """
    signature = _bodies()[op_type].op_signature
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
    for op_type in sorted((used & domain_op_types()) - present):
        model.functions.append(function_proto(op_type))
    return model


# -- translations ------------------------------------------------------------------------------


def _heaviside(x, alpha: float):
    return op.CastLike(op.Greater(x, op.CastLike(0.0, x)), x)


def _spike_node(op_type: str) -> Callable:
    node = Op(LIFEXPORT, op_type, op_schema(op_type))

    def translate(x, alpha: float):
        return node(x, alpha=alpha)

    return translate


def _grad_node(op_type: str) -> Callable:
    node = Op(LIFEXPORT, op_type, op_schema(op_type))

    def translate(grad, x, alpha: float):
        return node(grad, x, alpha=alpha)

    return translate


def _needs_constant_alpha(*args, **kwargs):
    raise ExportError(
        "a training graph needs each surrogate's alpha as a constant, but a spike op took it "
        "as a tensor; export lifexport modules through lifexport.to_onnx (which records each "
        "layer's alpha as the node's attribute)"
    )


def _needs_a_row(method: str) -> Callable:
    def translate(*args, **kwargs):
        raise ExportError(
            f"a training graph needs the ONNX ops of surrogate {method!r}, which has no row in "
            "the lifexport domain; add one: lifexport.export.DomainOp(method, spike op type, "
            "gradient function).register() (see docs/extending.md)"
        )

    return translate


def translation_table(mode: Mode) -> dict[Callable, Callable]:
    """The ``custom_translation_table`` of ``torch.onnx.export`` for ``mode``: every row's
    :meth:`DomainOp.translations`, and the exporter's missing translations. A registered
    surrogate without a row exports in inference mode (a spike ignores alpha); in training
    mode its ops raise :class:`ExportError` saying what to add."""
    check_mode(mode)
    table = {}
    for method, surrogate in SURROGATES.items():
        row = DOMAIN_OPS.get(method)
        if row is not None:
            table.update(row.translations(mode))
        elif mode == "inference":
            table.update({surrogate.spike: _heaviside, surrogate.spike_attr: _heaviside})
        else:
            table.update(dict.fromkeys(_ops_of(surrogate), _needs_a_row(method)))
    return {**_quirks.TRANSLATIONS, **table}


def _ops_of(surrogate: Surrogate) -> tuple[Callable, ...]:
    return (surrogate.spike, surrogate.spike_grad, surrogate.spike_attr, surrogate.spike_attr_grad)


# -- what a graph may hold ---------------------------------------------------------------------


def check_op_set(model: onnx.ModelProto, mode: Mode) -> None:
    """Check the ops of ``model``'s graph and subgraphs against ``mode``.

    ``inference`` allows standard ONNX ops only. ``training`` allows, besides, the
    ``lifexport`` ops, each with its function in ``model.functions``.

    Raises:
        ExportError: an op outside the allowed set, or a ``lifexport`` op without function.
        ValueError: an unknown ``mode``.
    """
    check_mode(mode)
    used = op_types(model)
    known = domain_op_types()
    domains = {"", LIFEXPORT.domain} if mode == "training" else {""}
    custom = {t for d, t in used if d == LIFEXPORT.domain and d in domains}
    bad = [f"{d}.{t}" for d, t in used if d not in domains]
    bad += [f"{LIFEXPORT.domain}.{t}" for t in custom - known]
    if bad:
        allowed = "standard ONNX ops" + (
            f" and the lifexport ops {', '.join(sorted(known))}" if mode == "training" else ""
        )
        raise ExportError(f"a {mode} graph may hold only {allowed}; found {', '.join(sorted(bad))}")
    missing = sorted(custom - {f.name for f in model.functions if f.domain == LIFEXPORT.domain})
    if missing:
        raise ExportError(
            f"lifexport ops {', '.join(missing)} have no function in model.functions; "
            "call attach_functions(model)"
        )
