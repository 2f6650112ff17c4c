"""Tampering with exported files, as someone else could: edited metadata, edited graphs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import onnx


def edited(
    source: str | Path,
    target: str | Path,
    metadata: Mapping[str, str] | None = None,
    edit: Callable[[onnx.ModelProto], None] | None = None,
) -> Path:
    """A copy of ``source`` at ``target`` with the ``metadata`` entries set (others kept) and
    the model changed in place by ``edit``."""
    model = onnx.load(source)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata or {})
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    if edit is not None:
        edit(model)
    onnx.save(model, target)
    return Path(target)


def swap_inputs(a: str, b: str) -> Callable[[onnx.ModelProto], None]:
    """An edit after which every node (in ``Scan`` bodies too) that read ``a`` reads ``b`` and
    the other way round: the graph's interface stays, its wiring does not."""

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            for k, name in enumerate(node.input):
                node.input[k] = {a: b, b: a}.get(name, name)
            for attr in node.attribute:
                for body in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                    walk(body)

    return lambda model: walk(model.graph)


def shift_initializer(name: str, delta: float) -> Callable[[onnx.ModelProto], None]:
    """An edit that adds ``delta`` to the first element of initializer ``name``."""

    def edit(model: onnx.ModelProto) -> None:
        tensor = next(t for t in model.graph.initializer if t.name == name)
        values = onnx.numpy_helper.to_array(tensor).copy()
        values.flat[0] += delta
        tensor.CopyFrom(onnx.numpy_helper.from_array(values, name))

    return edit
