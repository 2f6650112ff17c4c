"""The metadata that records an exported graph's contract: every key, and checked reading of
its values (a file is data: each value is held to what ``to_onnx`` writes there)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lifexport.limits import check_elements

GRAPHS = ("step", "sequence")
MODES = ("inference", "training")


@dataclass(frozen=True)
class MetadataKey:
    """One ``metadata_props`` entry of an exported file.

    Attributes:
        key: the entry's key.
        field: the :class:`GraphContract` field it stores (JSON unless a plain string).
        writer: what writes it.
        reader: what reads it back.
        required: whether a lifexport file must have it.
    """

    key: str
    field: str
    writer: str
    reader: str
    required: bool = True


#: The key ``lifexport export`` stores the model's ``MODULE:FUNCTION`` under.
SOURCE_KEY = "lifexport.source"
#: The key that records how an int8 file's weights were quantized.
QUANTIZE_KEY = "lifexport.quantize"
_TO_ONNX, _READ = "lifexport.to_onnx", "lifexport.graph.read_graph (validation, cli)"
#: Every metadata key lifexport writes, with its writer and reader.
METADATA = (
    MetadataKey("lifexport.version", "version", _TO_ONNX, "reports; not checked"),
    MetadataKey("lifexport.graph", "kind", _TO_ONNX, _READ),
    MetadataKey("lifexport.mode", "mode", _TO_ONNX, _READ),
    MetadataKey("lifexport.state_names", "states", _TO_ONNX, _READ),
    MetadataKey("lifexport.parameters", "parameters", _TO_ONNX, _READ),
    MetadataKey("lifexport.target_rank", "target_rank", _TO_ONNX, _READ),
    MetadataKey("lifexport.example_shape", "example_shape", _TO_ONNX, _READ),
    MetadataKey("lifexport.dtype", "dtype", _TO_ONNX, _READ),
    MetadataKey("lifexport.layers", "layers", _TO_ONNX, "tools; neuron parameters for humans"),
    MetadataKey("lifexport.inputs", "input_names", _TO_ONNX, _READ + ", checked against the file"),
    MetadataKey("lifexport.outputs", "output_names", _TO_ONNX, _READ + ", checked likewise"),
    MetadataKey(
        QUANTIZE_KEY,
        "quantize",
        "lifexport.to_onnx(quantize='int8')",
        _READ + ", held to the graph's int8 weights; validate judges such files on a flip budget",
        required=False,
    ),
    MetadataKey(
        "lifexport.initial_state",
        "initial_state",
        _TO_ONNX + " (graphs with state inputs)",
        _READ + "; lifexport.runtime.Session starts and resets the state from it",
        required=False,
    ),
    MetadataKey(
        SOURCE_KEY,
        "source",
        "lifexport export (the CLI's MODULE:FUNCTION)",
        "lifexport validate's hint",
        required=False,
    ),
)
KEYS = {m.field: m.key for m in METADATA}

#: The element types a graph's ``x`` may have, as torch names them.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


_UNREADABLE = object()


def short(text: object, limit: int = 80) -> str:
    """``repr(text)``, cut to ``limit`` characters: a file's values can be of any length."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 5] + " ...'"


def choice(text: str, field: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ValueError(
            f"has bad metadata: {KEYS[field]} must be one of {allowed}, got {short(text)}"
        )
    return text


def json_value(text: str, field: str, check: Callable[[Any], bool], expected: str) -> Any:
    """The JSON value of a metadata entry, or a ``ValueError`` naming its key."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = _UNREADABLE
    if value is _UNREADABLE or not check(value):
        raise ValueError(f"has bad metadata: {KEYS[field]} must be {expected}, got {short(text)}")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def is_names(value: Any) -> bool:
    return is_strings(value) and len(set(value)) == len(value)


def is_rank(value: Any) -> bool:
    return value is None or (is_int(value) and value >= 0)


def is_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def parse_example_shape(text: str, kind: str) -> tuple[int, ...]:
    """The example shape: positive ints, ``(B, ...)`` for a step graph, ``(T, B, ...)`` for a
    sequence graph, within :attr:`~lifexport.limits.Limits.max_elements`."""
    rank, axes = (1, "(B, ...)") if kind == "step" else (2, "(T, B, ...)")
    shape = json_value(
        text,
        "example_shape",
        lambda v: isinstance(v, list) and len(v) >= rank and all(is_int(d) and d > 0 for d in v),
        f"a JSON list of at least {rank} positive ints ({axes} for a {kind} graph)",
    )
    try:
        check_elements(f"metadata {KEYS['example_shape']}", shape)
    except ValueError as error:
        raise ValueError(f"has bad metadata: {error}") from None
    return tuple(shape)
