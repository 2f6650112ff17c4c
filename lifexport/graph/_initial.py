"""The state at rest that a file records (``lifexport.initial_state``), so that a runtime
starts a stream without the model. No torch here: the runtime reads it with numpy alone."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lifexport.graph._metadata import is_int, short
from lifexport.limits import check_elements

#: The key that records the state at rest of a graph with state inputs.
INITIAL_STATE_KEY = "lifexport.initial_state"


@dataclass(frozen=True)
class InitialValue:
    """One state input at rest, as small as it broadcasts: ``values`` (row-major) reshaped to
    ``shape`` and broadcast to the state input's full shape ``(B, ...)``.

    ``shape`` is ``()`` for a scalar (a LIF's ``v`` at a scalar ``v_leak``, a zero current),
    ``(N,)`` for per-neuron values, or the whole per-sample state shape.

    Raises:
        ValueError: a size that is not a positive int, a count of values other than the
            product of ``shape``, or a value that is not a finite number.
    """

    shape: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not all(is_int(d) and d > 0 for d in self.shape):
            raise ValueError(f"shape must hold positive ints, got {list(self.shape)}")
        if len(self.values) != math.prod(self.shape):
            raise ValueError(
                f"{len(self.values)} values do not fill shape {list(self.shape)} "
                f"({math.prod(self.shape)} values)"
            )
        if not all(_is_number(v) and math.isfinite(v) for v in self.values):
            raise ValueError("values must be finite numbers")

    def fits(self, sample_shape: Sequence[int]) -> bool:
        """Whether ``shape`` broadcasts to a state whose per-sample shape is ``sample_shape``
        (trailing dimensions equal or 1, and no more of them)."""
        if len(self.shape) > len(sample_shape):
            return False
        tail = tuple(sample_shape)[len(sample_shape) - len(self.shape) :]
        return all(d in (1, s) for d, s in zip(self.shape, tail))

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "values": list(self.values)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def initial_state_text(initial: Mapping[str, InitialValue]) -> str:
    """The metadata value: a JSON object, one ``{"shape": [...], "values": [...]}`` per state
    input name, in the graph's order."""
    return json.dumps({name: value.to_json() for name, value in initial.items()})


def parse_initial_state(text: str, state_names: Sequence[str]) -> dict[str, InitialValue]:
    """The recorded state at rest, checked: one entry per state input of ``state_names`` and
    none else, each a valid :class:`InitialValue` within
    :attr:`~lifexport.limits.Limits.max_elements`.

    Raises:
        ValueError: the value is not what ``to_onnx`` writes (the message names the key).
    """
    bad = f"has bad metadata: {INITIAL_STATE_KEY}"
    try:
        data = json.loads(text, parse_constant=_refuse)
    except (json.JSONDecodeError, RecursionError, ValueError):
        raise ValueError(f"{bad} must be a JSON object, got {short(text)}") from None
    if not isinstance(data, dict) or list(data) != list(state_names):
        shown = list(data) if isinstance(data, dict) else short(text)
        raise ValueError(
            f"{bad} must be a JSON object with one entry per state input "
            f"{list(state_names)}, in order, got {shown}"
        )
    initial = {}
    for name, entry in data.items():
        if not (isinstance(entry, dict) and set(entry) == {"shape", "values"}):
            raise ValueError(f'{bad}: {name!r} must be {{"shape": [...], "values": [...]}}')
        shape, values = entry["shape"], entry["values"]
        if not (isinstance(shape, list) and isinstance(values, list)):
            raise ValueError(f"{bad}: {name!r} must hold a shape and values as JSON lists")
        try:
            check_elements(f"metadata {INITIAL_STATE_KEY} {name!r}", shape)
            initial[name] = InitialValue(tuple(shape), tuple(values))
        except ValueError as error:
            raise ValueError(f"{bad}: {name!r}: {error}") from None
    return initial


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not a finite number")
