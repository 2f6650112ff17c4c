"""The contract of an exported graph: its interface, and the metadata that records it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lifexport.graph._initial import InitialValue, initial_state_text, parse_initial_state
from lifexport.graph._metadata import (
    FLOAT_DTYPES,
    GRAPHS,
    KEYS,
    METADATA,
    MODES,
    QUANTIZE_KEY,
    choice,
    is_names,
    is_objects,
    is_rank,
    is_strings,
    json_value,
    parse_example_shape,
    short,
)
from lifexport.graph._slot import NEXT_PREFIX, StateSlot

#: Fixed input and output names.
X, TARGET, Y, LOSS = "x", "target", "y", "loss"
GRAD_PREFIX = "grad."


@dataclass(frozen=True)
class GraphContract:
    """What an exported graph takes and returns, in order, and what it was exported from.

    Inputs: the trainable ``parameters`` (training graphs), ``x``, ``target`` (training
    graphs exported with a loss), then one ``state.<k>.<field>`` per state slot. Outputs:
    ``loss`` (training), ``y``, one ``next_state.<k>.<field>`` per slot, then
    ``grad.<parameter>`` (training). A sequence graph exported without state has no slots.

    Attributes:
        kind: ``"step"`` or ``"sequence"``.
        mode: ``"inference"`` or ``"training"``.
        states: the state slots, in the graph's order.
        parameters: the trainable parameters, by the exported model's ``named_parameters``.
        target_rank: the rank of the ``target`` input, ``None`` without one.
        example_shape: the shape of the example ``x`` it was exported with.
        dtype: the element type of ``x``, as torch names it (``"float32"``).
        layers: per neuron layer: its index, type, dt, method, alpha and parameters.
        version: the lifexport version that exported it.
        source: ``lifexport export``'s ``MODULE:FUNCTION``, else ``None``.
        quantize: how the weights were quantized (``"int8 QDQ: ..."``), ``None`` for float.
        initial_state: the state at rest, one :class:`InitialValue` per state input name in
            order; ``None`` where not recorded (files from before it was, or no state).
    """

    kind: str
    mode: str
    states: tuple[StateSlot, ...]
    example_shape: tuple[int, ...]
    dtype: str
    parameters: tuple[str, ...] = ()
    target_rank: int | None = None
    layers: tuple[dict[str, Any], ...] = ()
    version: str = ""
    source: str | None = None
    quantize: str | None = None
    initial_state: Mapping[str, InitialValue] | None = None

    def __post_init__(self) -> None:
        if self.kind not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {self.kind!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "inference" and (self.parameters or self.target_rank is not None):
            raise ValueError("an inference graph takes no parameters and no target")
        if self.initial_state is not None and tuple(self.initial_state) != self.state_names:
            raise ValueError(
                f"initial_state must have one entry per state input {list(self.state_names)}, "
                f"got {list(self.initial_state)}"
            )

    @property
    def training(self) -> bool:
        return self.mode == "training"

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(slot.name for slot in self.states)

    @property
    def next_names(self) -> tuple[str, ...]:
        return tuple(slot.next_name for slot in self.states)

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return tuple(GRAD_PREFIX + p for p in self.parameters)

    @property
    def input_names(self) -> tuple[str, ...]:
        target = (TARGET,) if self.target_rank is not None else ()
        return (*self.parameters, X, *target, *self.state_names)

    @property
    def output_names(self) -> tuple[str, ...]:
        loss = (LOSS,) if self.training else ()
        return (*loss, Y, *self.next_names, *self.gradient_names)

    @property
    def spike_states(self) -> tuple[str, ...]:
        """The state outputs that hold spikes, by :attr:`StateSlot.is_spike`'s naming
        convention (a field named ``z``)."""
        return tuple(slot.next_name for slot in self.states if slot.is_spike)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The dimensions of ``x`` after time and batch."""
        return self.example_shape[1 if self.kind == "step" else 2 :]

    @property
    def batch(self) -> int:
        """B of the example input."""
        return self.example_shape[0 if self.kind == "step" else 1]

    def output_kind(self, name: str) -> str:
        """``"y"``, ``"state"``, ``"gradient"`` or ``"loss"``: what an output holds."""
        if name in (Y, LOSS):
            return name
        if name.startswith(NEXT_PREFIX):
            return "state"
        if name.startswith(GRAD_PREFIX):
            return "gradient"
        raise ValueError(f"{name!r} is not an output of this graph: {self.output_names}")

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` that record the contract (see :data:`METADATA`)."""
        values = {
            "version": self.version,
            "kind": self.kind,
            "mode": self.mode,
            "states": json.dumps(self.state_names),
            "parameters": json.dumps(self.parameters),
            "target_rank": json.dumps(self.target_rank),
            "example_shape": json.dumps(self.example_shape),
            "dtype": self.dtype,
            "layers": json.dumps(self.layers),
            "input_names": json.dumps(self.input_names),
            "output_names": json.dumps(self.output_names),
        }
        for name in ("source", "quantize"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if self.initial_state is not None:
            values["initial_state"] = initial_state_text(self.initial_state)
        return {KEYS[f]: value for f, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> GraphContract:
        """The contract a file's ``metadata_props`` record, every value checked for what
        ``to_onnx`` writes there (a file is data: its values are never trusted).

        Raises:
            ValueError: a required key is missing, or a value is not what ``to_onnx`` writes
                (the message names the key); an ``example_shape`` over
                :attr:`lifexport.limits.Limits.max_elements`.
        """
        missing = [m.key for m in METADATA if m.required and m.key not in metadata]
        if missing:
            raise ValueError(f"has no lifexport metadata (missing {', '.join(missing)})")
        value = {m.field: metadata.get(m.key) for m in METADATA}
        kind = choice(value["kind"], "kind", GRAPHS)
        mode = choice(value["mode"], "mode", MODES)
        names = json_value(
            value["states"], "states", is_names, "a JSON list of distinct state names"
        )
        try:
            states = tuple(StateSlot.parse(n) for n in names)
        except ValueError as error:
            raise ValueError(f"has bad metadata: {KEYS['states']}: {error}") from None
        parameters = json_value(
            value["parameters"], "parameters", is_names, "a JSON list of distinct names"
        )
        target_rank = json_value(
            value["target_rank"], "target_rank", is_rank, "null or a non-negative int"
        )
        if mode == "inference" and (parameters or target_rank is not None):
            raise ValueError(
                f"has bad metadata: an inference graph takes no parameters and no target, but "
                f"{KEYS['parameters']} is {short(value['parameters'])} and "
                f"{KEYS['target_rank']} {short(value['target_rank'])}"
            )
        shape = parse_example_shape(value["example_shape"], kind)
        dtype = choice(value["dtype"], "dtype", FLOAT_DTYPES)
        layers = json_value(value["layers"], "layers", is_objects, "a JSON list of objects")
        quantize = value["quantize"]
        if quantize is not None and (mode != "inference" or not quantize.startswith("int8")):
            raise ValueError(
                f"has bad metadata: {QUANTIZE_KEY} must describe int8 weights ('int8 QDQ: ...') "
                f"of an inference graph, got {short(quantize)} on a {mode} graph"
            )
        initial = value["initial_state"]
        if initial is not None:
            initial = parse_initial_state(initial, [slot.name for slot in states])
        contract = cls(
            kind=kind,
            mode=mode,
            states=states,
            parameters=tuple(parameters),
            target_rank=target_rank,
            example_shape=shape,
            dtype=dtype,
            layers=tuple(layers),
            version=value["version"],
            source=value["source"],
            quantize=quantize,
            initial_state=initial,
        )
        for name in ("input_names", "output_names"):
            recorded = tuple(json_value(value[name], name, is_strings, "a JSON list of names"))
            if recorded != getattr(contract, name):
                raise ValueError(
                    f"has metadata {KEYS[name]} {list(recorded)} disagrees with the contract's "
                    f"{list(getattr(contract, name))}"
                )
        return contract
