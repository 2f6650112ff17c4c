"""Leaner inference graphs: spikes and the masks built from them, rewritten by exact identities.

onnxruntime runs a ``Scan`` body node by node, so every node of a neuron step costs its
dispatch once per time step. First, a node that repeats another (same op, inputs and
attributes) goes (onnx-ir's common-subexpression pass, on each subgraph too); then pattern
rules (``onnxscript.rewriter``), applied to the main graph and, depth first, to every subgraph,
until none matches:

- :class:`SpikeComparison` (always): ``Greater(a - b, 0)`` is ``Greater(a, b)`` for floats
  (with subnormals, ``a - b`` rounds to 0 only where ``a == b`` and keeps the sign of the exact
  difference elsewhere; NaN and infinities compare false alike). One node less per spike:
  with the merged repeat, a LIF-refrac step goes from 28 nodes to 26, a LIF step from 14 to 13.

With ``select=True``, the masks too: the functional steps blend with 0/1 masks in arithmetic
form (``(1 - z) * a + z * b``, ``(1 - r) * z``), which their gradients need; an inference graph
can select instead:

- :class:`MaskedSpike`: ``(1 - Cast(c)) * Cast(d)`` of booleans ``c``, ``d`` is
  ``Cast(And(Not(c), d))``: both are ``+0`` or ``1``.
- :class:`MaskBlend`: ``(1 - Cast(c)) * a + Cast(c) * b`` is ``Where(c, b, a)``.

That takes a LIF-refrac step from 28 nodes to 18 and a LIF step from 14 to 10, but
onnxruntime's CPU provider (1.32) runs a float ``Where`` about ten times as long as an ``Add``
or a ``Mul`` of the same shape, so there the selecting graph is the slower one (a LIF-refrac
sequence at (T, B, N) = (100, 32, 512) takes about 2.2x as long: ``scripts/bench_lean_graphs.py``);
:func:`export_program` applies the comparison rule only.

A selecting graph gives the same bits as the arithmetic for finite values, but for the sign of
a zero (``-0.0`` selected where the arithmetic adds ``+0.0`` to it); where the arithmetic turns
an infinite operand it does not select into NaN (``0 * inf``), ``Where`` keeps the selected
value. Nothing is reassociated or fused: every float operation left is the exporter's own, on
the same operands. Unmatched nodes stay as they are, nodes left without use are removed, and
every value name stays unique in the model.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

__all__ = [
    "MASKS",
    "MaskBlend",
    "MaskedSpike",
    "SpikeComparison",
    "check_masks",
    "lean_graph",
    "rules",
]

FLOATS = frozenset(
    {ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16}
)
"""Element types for which ``a - b > 0`` and ``a > b`` agree."""

MAX_ROUNDS = 8
"""Rule-set passes at most; each pass rewrites every match it sees, so two suffice today."""


def _standard(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.domain in ("", "ai.onnx") and node.op_type == op_type


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """The array of ``value`` if it is a constant (an initializer that no input overrides,
    or a ``Constant`` node's tensor), else ``None``."""
    if value is None or value.is_graph_input():
        return None
    tensor = value.const_value
    node = value.producer()
    if tensor is None and _standard(node, "Constant"):
        attr = node.attributes.get("value")
        tensor = attr.value if attr is not None else None
    return None if tensor is None else tensor.numpy()


def _is_scalar(value: ir.Value | None, number: float) -> bool:
    """``value`` is a rank-0 constant equal to ``number`` (so it broadcasts to nothing new)."""
    array = _constant(value)
    return array is not None and array.ndim == 0 and array.item() == number


def _bool_cast(value: ir.Value | None) -> tuple[ir.Value, int] | None:
    """``(c, to)`` if ``value`` is ``Cast(c, to=to)`` of a boolean ``c`` (a 0/1 mask)."""
    node = value.producer() if value is not None else None
    if not _standard(node, "Cast") or node.inputs[0] is None:
        return None
    if node.inputs[0].dtype != ir.DataType.BOOL:
        return None
    return node.inputs[0], node.attributes["to"].as_int()


def _complement(value: ir.Value | None) -> tuple[ir.Value, int] | None:
    """``(c, to)`` if ``value`` is ``1 - Cast(c, to=to)`` of a boolean ``c``."""
    node = value.producer() if value is not None else None
    if not _standard(node, "Sub") or not _is_scalar(node.inputs[0], 1.0):
        return None
    return _bool_cast(node.inputs[1])


class SpikeComparison(RewriteRuleClassBase):
    """``Greater(Sub(a, b), 0)`` -> ``Greater(a, b)``, for float ``a`` and ``b``."""

    def pattern(self, op, a, b, zero):
        return op.Greater(op.Sub(a, b), zero)

    def check(self, context, a, b, zero, **_) -> MatchResult:
        result = MatchResult()
        if a.dtype not in FLOATS or b.dtype not in FLOATS:
            return result.fail("operands not known to be floats")
        if not _is_scalar(zero, 0.0):
            return result.fail("not compared with a scalar constant 0")
        return result

    def rewrite(self, op, a, b, zero, **_):
        return op.Greater(a, b)


class MaskedSpike(RewriteRuleClassBase):
    """``Mul(1 - Cast(c), Cast(d))`` -> ``Cast(And(Not(c), d))``, for booleans ``c``, ``d``."""

    def pattern(self, op, keep, spike):
        return op.Mul(keep, spike)

    def check(self, context, keep, spike, **_) -> MatchResult:
        result = MatchResult()
        mask, spike_bool = _complement(keep), _bool_cast(spike)
        if mask is None or spike_bool is None:
            return result.fail("not a complemented mask times a boolean cast")
        if mask[1] != spike_bool[1]:
            return result.fail("the two casts differ in type")
        return result

    def rewrite(self, op, keep, spike, **_):
        mask, _ = _complement(keep)
        spike_bool, to = _bool_cast(spike)
        # not Where(c, false, d): onnxruntime's CPU provider has no boolean Where
        kept = op.And(op.Not(mask), spike_bool)
        kept.dtype = ir.DataType.BOOL  # so that a blend by the result matches too
        return op.Cast(kept, to=to)


class MaskBlend(RewriteRuleClassBase):
    """``Add(Mul(1 - Cast(c), a), Mul(Cast(c), b))`` -> ``Where(c, b, a)``, ``c`` boolean."""

    def pattern(self, op, keep, a, mask, b):
        return op.Add(op.Mul(keep, a), op.Mul(mask, b))

    def check(self, context, keep, a, mask, b, **_) -> MatchResult:
        result = MatchResult()
        selector, complement = _bool_cast(mask), _complement(keep)
        if selector is None or complement is None or selector != complement:
            return result.fail("not a blend by one boolean mask and its complement")
        return result

    def rewrite(self, op, keep, a, mask, b, **_):
        selector, _ = _bool_cast(mask)
        return op.Where(selector, b, a)


def rules(select: bool = False) -> RewriteRuleSet:
    """The rule set (with the commuted forms of ``Add`` and ``Mul``): the spike comparison,
    and with ``select`` the mask rules too."""
    chosen = [SpikeComparison.rule()]
    if select:
        chosen += [MaskedSpike.rule(), MaskBlend.rule()]
    return RewriteRuleSet(chosen, commute=True)


def lean_graph(model: onnx.ModelProto, *, select: bool = False) -> onnx.ModelProto:
    """``model`` with its spikes (and with ``select`` its masks) rewritten; a new model.

    For inference graphs only: a training graph's gradients are built on the arithmetic
    form. Nodes the rules add carry the rule's name in their ``metadata_props``.

    Args:
        model: an inference model.
        select: also rewrite masks as selections (fewer nodes; on onnxruntime's CPU provider
            slower, see the module docstring).

    Examples:
        >>> from onnx import TensorProto, helper
        >>> nodes = [helper.make_node("Sub", ["v", "th"], ["d"]),
        ...          helper.make_node("Greater", ["d", "zero"], ["z"])]
        >>> graph = helper.make_graph(
        ...     nodes, "g", [helper.make_tensor_value_info("v", TensorProto.FLOAT, [2])],
        ...     [helper.make_tensor_value_info("z", TensorProto.BOOL, [2])],
        ...     [helper.make_tensor("th", TensorProto.FLOAT, [], [1.0]),
        ...      helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
        >>> [n.op_type for n in lean_graph(helper.make_model(graph)).graph.node]
        ['Greater']
    """
    ir_model = ir.serde.deserialize_model(model)
    for graph in ir_model.graphs():  # the exporter repeats a node now and then
        ir_passes.CommonSubexpressionEliminationPass()(ir.Model(graph, ir_version=model.ir_version))
    rule_set = rules(select)
    for _ in range(MAX_ROUNDS):
        if not rule_set.apply_to_model(ir_model):
            break
    ir_passes.RemoveUnusedNodesPass()(ir_model)
    # a value the rules add may not repeat a name of an enclosing graph
    ir_passes.NameFixPass()(ir_model)
    return ir.serde.serialize_model(ir_model)


MASKS = ("arithmetic", "select")
"""How an inference graph applies its 0/1 masks (see :func:`lifexport.export.to_onnx`)."""


def check_masks(masks: object, mode: str) -> None:
    """``masks`` is one of :data:`MASKS`, and ``"arithmetic"`` for a training graph."""
    if not isinstance(masks, str) or masks not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {masks!r}")
    if masks == "select" and mode == "training":
        raise ValueError(
            "masks='select' is for inference graphs: a training graph's gradients need the "
            "arithmetic form of its masks"
        )
