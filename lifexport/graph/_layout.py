"""A model's state as an exported graph lays it out: one walk gives the names and the tensors."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import (
    GetAttrKey,
    SequenceKey,
    TreeSpec,
    tree_flatten_with_path,
    tree_unflatten,
)

from lifexport.graph._initial import InitialValue
from lifexport.graph._slot import StateSlot


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

    def initial_values(self, state: Any) -> dict[str, InitialValue]:
        """The state at rest ``state`` (``(B, ...)`` tensors) as a file records it: per slot,
        the smallest of a scalar, a last-axis vector or one sample that broadcasts to it.

        Raises:
            ValueError: the rows of a state tensor differ (a rest state that depends on the
                batch row cannot be recorded once for every row).
        """
        return {
            slot.name: _initial_value(slot.name, tensor)
            for slot, tensor in zip(self.slots, self.flatten(state), strict=True)
        }


def _initial_value(name: str, tensor: Tensor) -> InitialValue:
    """The smallest :class:`InitialValue` that broadcasts to ``tensor`` ``(B, ...)``."""
    rest = tensor.detach().cpu()
    if rest.dim() == 0 or not bool((rest == rest[:1]).all()):
        raise ValueError(
            f"the state at rest {name} of shape {tuple(rest.shape)} differs between batch rows "
            "(or has no batch axis); a file records one rest state for every row"
        )
    sample = rest[0]  # (...)
    if sample.numel() and bool((sample == sample.reshape(-1)[0]).all()):
        kept = sample.reshape(-1)[:1].reshape(())
    elif sample.dim() > 1 and bool((sample == sample.reshape(-1, sample.shape[-1])[0]).all()):
        kept = sample.reshape(-1, sample.shape[-1])[0]
    else:
        kept = sample
    values = kept.to(torch.float64).reshape(-1).tolist()
    return InitialValue(tuple(kept.shape), tuple(values))


def _slot(path: tuple, stack: bool) -> StateSlot:
    """A slot from a leaf's pytree path: the stack index (when a stack), then field keys."""
    layer = path[0].idx if stack and isinstance(path[0], SequenceKey) else 0
    last = path[-1]
    if not isinstance(last, GetAttrKey):
        raise ValueError(f"a state leaf at {path} is not a NamedTuple field")
    return StateSlot(layer, last.name)
