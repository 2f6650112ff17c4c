"""Walking an ONNX model: every node, including those of subgraphs (``Scan`` bodies)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph`` and, depth first, of the subgraphs in its attributes."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from iter_nodes(attr.g)
            for sub in attr.graphs:
                yield from iter_nodes(sub)


def op_types(model: onnx.ModelProto) -> set[tuple[str, str]]:
    """The ``(domain, op_type)`` of every node of the main graph and its subgraphs.

    The standard domain is ``""`` (``"ai.onnx"`` is reported as ``""`` too). Nodes inside
    the bodies of ``model.functions`` are not included.
    """
    return {("" if n.domain == "ai.onnx" else n.domain, n.op_type) for n in iter_nodes(model.graph)}


def strip_node_metadata(model: onnx.ModelProto) -> onnx.ModelProto:
    """Clear, in place, the ``metadata_props`` of every node of ``model``'s graphs.

    The exporter records there each node's Python stack trace and FX node, which hold local
    file paths and trace counters: without them the same program gives the same bytes.
    Model-level ``metadata_props`` stay.
    """
    for node in iter_nodes(model.graph):
        del node.metadata_props[:]
    return model
