"""A model's state as an exported graph lays it out: one walk gives the names and the tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.utils._pytree import (
    GetAttrKey,
    SequenceKey,
    TreeSpec,
    tree_flatten_with_path,
    tree_unflatten,
)

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


class StateLayout:
    """The state of a model, flattened in one fixed order with a name per tensor.

    ``state`` is what the model's ``initial_state`` returns: a layer's state NamedTuple
    (possibly nested, as ``LIFRefracState(lif=LIFState(...), rho)``), or a stack's tuple with
    one entry per layer, ``None`` for stateless layers. The names and the order of the tensors
    come from the same :func:`torch.utils._pytree.tree_flatten_with_path` walk, so they cannot
    disagree.

    Examples:
        >>> import torch
        >>> from lifexport.modules import LIFRefracCell
        >>> state = (None, LIFRefracCell().initial_state(torch.zeros(2, 3)))
        >>> layout = StateLayout(state)
        >>> [slot.name for slot in layout.slots]
        ['state.1.v', 'state.1.i', 'state.1.rho']
        >>> len(layout.flatten(state)), type(layout.unflatten(layout.flatten(state))[1]).__name__
        (3, 'LIFRefracFeedForwardState')
    """

    def __init__(self, state: Any) -> None:
        leaves, self._spec = tree_flatten_with_path(state)
        stack = type(state) is tuple  # a stack's per-layer tuple, not a layer's NamedTuple
        self._leaves = [leaf for _, leaf in leaves]
        self._positions = [i for i, (_, leaf) in enumerate(leaves) if leaf is not None]
        self.slots = tuple(_slot(leaves[i][0], stack) for i in self._positions)

    @property
    def names(self) -> tuple[str, ...]:
        """The state input names, in order."""
        return tuple(slot.name for slot in self.slots)

    def flatten(self, state: Any) -> list[Tensor]:
        """The tensors of ``state`` (laid out as the example state), in the slots' order.

        Raises:
            ValueError: ``state`` has another structure than the example state.
        """
        leaves, spec = tree_flatten_with_path(state)
        if spec != self._spec:
            raise ValueError(f"state has structure {spec}, expected {self._spec}")
        return [leaves[i][1] for i in self._positions]

    def unflatten(self, tensors: list[Tensor]) -> Any:
        """The state pytree holding ``tensors`` (one per slot, in order)."""
        filled = list(self._leaves)
        for position, tensor in zip(self._positions, tensors, strict=True):
            filled[position] = tensor
        return tree_unflatten(filled, self._spec)

    @property
    def spec(self) -> TreeSpec:
        return self._spec


def _slot(path: tuple, stack: bool) -> StateSlot:
    """A slot from a leaf's pytree path: the stack index (when a stack), then field keys."""
    layer = path[0].idx if stack and isinstance(path[0], SequenceKey) else 0
    last = path[-1]
    if not isinstance(last, GetAttrKey):
        raise ValueError(f"a state leaf at {path} is not a NamedTuple field")
    return StateSlot(layer, last.name)
