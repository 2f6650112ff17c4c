"""A state tensor's slot and its names in a graph (no torch: the runtime reads them)."""

from __future__ import annotations

from dataclasses import dataclass

#: Name prefixes of the state inputs and of the matching outputs.
STATE_PREFIX = "state."
NEXT_PREFIX = "next_"


@dataclass(frozen=True)
class StateSlot:
    """One state tensor of a graph: field ``field`` (``z``, ``v``, ``i``, ``rho``) of the
    neuron layer at index ``layer`` of its stack (0 for a single layer)."""

    layer: int
    field: str

    @property
    def name(self) -> str:
        """The graph input: ``state.<layer>.<field>``."""
        return f"{STATE_PREFIX}{self.layer}.{self.field}"

    @property
    def next_name(self) -> str:
        """The graph output: ``next_state.<layer>.<field>``."""
        return NEXT_PREFIX + self.name

    @property
    def is_spike(self) -> bool:
        """Whether the slot holds spikes (exactly 0 or 1), by the naming convention of the
        package's layers: a field named ``z``. This is the default for reading a file without
        its model; where the model is at hand, its layers declare their spike fields
        (``NeuronModule.spike_fields``), and validation takes them from there."""
        return self.field == "z"

    @classmethod
    def parse(cls, name: str) -> StateSlot:
        """The slot of a state input name, as :attr:`name` writes it.

        Raises:
            ValueError: not of the form ``state.<layer>.<field>``.
        """
        layer, dot, field = name.removeprefix(STATE_PREFIX).partition(".")
        if not (name.startswith(STATE_PREFIX) and dot and layer.isdigit() and field.isidentifier()):
            raise ValueError(f"{name!r} is not a state name state.<layer>.<field>")
        return cls(int(layer), field)
