"""What a file's graph itself shows, to hold its metadata to: the type and shape of ``x``, its
time loops, and which weights are int8.

A file is data: its metadata is checked against these facts, never trusted instead of them.
onnx is not imported here (its enum values are fixed by the ONNX standard), so that
``lifexport.graph`` imports without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

#: ONNX element types ``x`` may have (``onnx.TensorProto.FLOAT16``, ...), by torch's names.
FLOAT_TYPES = {10: "float16", 16: "bfloat16", 1: "float32", 11: "float64"}
_INT8 = 3  # onnx.TensorProto.INT8
_GRAPH = 5  # onnx.AttributeProto.GRAPH
#: The ops whose weights ``to_onnx(quantize="int8")`` stores as int8.
QUANTIZED_OPS = ("MatMul", "Gemm", "Conv")
#: Ops that hold a time loop (a sequence graph's).
LOOP_OPS = ("Scan", "Loop")


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.type == _GRAPH:
            yield attr.g
        yield from attr.graphs


def element_type(value: onnx.ValueInfoProto) -> str | None:
    """The torch name of a graph input's float element type, ``None`` for any other type."""
    if not value.type.HasField("tensor_type"):
        return None
    return FLOAT_TYPES.get(value.type.tensor_type.elem_type)


def type_name(value: onnx.ValueInfoProto) -> str:
    """A graph input's type as ONNX names it (``INT64``, ``sequence``...), for messages."""
    import onnx

    if not value.type.HasField("tensor_type"):
        return value.type.WhichOneof("value") or "no type"
    return onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)


def dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...] | None:
    """A graph input's dimensions: ints where static, the parameter name (or ``"?"``) where
    dynamic; ``None`` when it records no shape."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
    )


def loop_ops(graph: onnx.GraphProto) -> tuple[str, ...]:
    """The time-loop ops (``Scan``, ``Loop``) of the main graph, in node order."""
    standard = ("", "ai.onnx")
    return tuple(n.op_type for n in graph.node if n.op_type in LOOP_OPS and n.domain in standard)


@dataclass(frozen=True)
class WeightTypes:
    """The weights of a model's ``MatMul``/``Gemm``/``Conv`` nodes, its ``Scan`` bodies'
    included, by how the file stores them.

    A weight is a node's first or second input read from the main graph's initializers: either
    directly (``float``), or as the output of a ``DequantizeLinear`` of an int8 initializer
    (``int8``, the QDQ form ``to_onnx(quantize="int8")`` writes, in the main graph also for the
    weights that loop bodies read). Inputs computed by other nodes are neither.

    Attributes:
        int8: the weights dequantized from int8 initializers, by the name the nodes read.
        float: the weights read straight from float initializers.
    """

    int8: tuple[str, ...]
    float: tuple[str, ...]


def weight_types(model: onnx.ModelProto) -> WeightTypes:
    """How the weights of ``model``'s ``MatMul``/``Gemm``/``Conv`` nodes are stored (see
    :class:`WeightTypes`).

    Examples:
        >>> from onnx import TensorProto, helper, numpy_helper
        >>> import numpy as np
        >>> w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
        >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3])
        >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 2])
        >>> node = helper.make_node("MatMul", ["x", "w"], ["y"])
        >>> weight_types(helper.make_model(helper.make_graph([node], "g", [x], [y], [w])))
        WeightTypes(int8=(), float=('w',))
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    dequantized = {
        n.output[0]
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.input
        and n.input[0] in initializers
        and initializers[n.input[0]].data_type == _INT8
    }
    floats = {name for name, t in initializers.items() if t.data_type in FLOAT_TYPES}
    int8: dict[str, None] = {}
    float_: dict[str, None] = {}

    def walk(g: onnx.GraphProto, local: frozenset[str]) -> None:
        for node in g.node:
            if node.op_type in QUANTIZED_OPS and node.domain in ("", "ai.onnx"):
                for name in node.input[:2]:
                    if name in local:
                        continue
                    if name in dequantized:
                        int8[name] = None
                    elif name in floats:
                        float_[name] = None
            for body in _subgraphs(node):
                inner = {t.name for t in body.initializer} | {v.name for v in body.input}
                inner |= {o for n in body.node for o in n.output}
                walk(body, local | inner)

    walk(graph, frozenset())
    return WeightTypes(tuple(int8), tuple(float_))
