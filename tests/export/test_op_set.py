"""Which ops a graph of each mode may hold, subgraphs included."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from lifexport.errors import ExportError
from lifexport.export import LIFEXPORT, OPSET, attach_functions, check_op_set, op_types


def model_with(*nodes, in_if: bool = False):
    """A model of ``nodes`` over input ``x``; with ``in_if``, inside both branches of an If."""
    vi = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])]
    out = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [3])]
    graph_nodes = list(nodes)
    if in_if:
        branch = helper.make_graph(nodes, "branch", [], out)
        cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
        vi.append(cond)
        out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])]
        graph_nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)]
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(LIFEXPORT.domain, 1)]
    return helper.make_model(helper.make_graph(graph_nodes, "g", vi, out), opset_imports=opsets)


def spike(op_type="SuperSpike", domain=LIFEXPORT.domain):
    return helper.make_node(op_type, ["x"], ["z"], domain=domain, alpha=1.0)


def test_op_types_walk_subgraphs():
    model = model_with(helper.make_node("Relu", ["x"], ["r"]), spike(), in_if=True)
    assert op_types(model) == {("", "If"), ("", "Relu"), (LIFEXPORT.domain, "SuperSpike")}


@pytest.mark.parametrize("in_if", [False, True])
def test_inference_allows_standard_ops_only(in_if):
    check_op_set(model_with(helper.make_node("Relu", ["x"], ["r"]), in_if=in_if), "inference")
    with pytest.raises(ExportError, match="only standard ONNX ops; found lifexport.SuperSpike"):
        check_op_set(attach_functions(model_with(spike(), in_if=in_if)), "inference")


@pytest.mark.parametrize("in_if", [False, True])
def test_training_allows_lifexport_ops_with_their_functions(in_if):
    model = model_with(spike(), in_if=in_if)
    with pytest.raises(ExportError, match="SuperSpike have no function.*attach_functions"):
        check_op_set(model, "training")
    check_op_set(attach_functions(model), "training")
    assert [f.name for f in model.functions] == ["SuperSpike"]
    attach_functions(model)  # idempotent
    assert len(model.functions) == 1


@pytest.mark.parametrize(
    "node, found",
    [
        (spike("FooSpike"), "lifexport.FooSpike"),
        (spike(domain="com.microsoft"), "com.microsoft.SuperSpike"),
    ],
)
def test_training_refuses_other_custom_ops(node, found):
    with pytest.raises(ExportError, match=f"and the lifexport ops .*; found {found}"):
        check_op_set(model_with(node), "training")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of 'inference', 'training'; got 'eval'"):
        check_op_set(model_with(spike()), "eval")
