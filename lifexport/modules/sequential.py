"""A stateful stack of layers, and a time loop around any step module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lifexport.modules._layers import RecurrentCell
from lifexport.modules._neuron import NeuronModule, check_rank, check_time_steps, rest
from lifexport.modules._time import time_loop

__all__ = [
    "SequentialState",
    "TimeLoop",
    "as_sequence",
    "check_fits",
    "check_layers",
    "neuron_layers",
    "step_module",
]

#: Stateless torch layers a stack may hold: they act on each time step alike.
STATELESS_LAYERS = (
    torch.nn.Linear,
    torch.nn.Conv1d,
    torch.nn.Conv2d,
    torch.nn.Flatten,
    torch.nn.MaxPool1d,
    torch.nn.MaxPool2d,
    torch.nn.AvgPool1d,
    torch.nn.AvgPool2d,
    torch.nn.Dropout,
    torch.nn.Identity,
    torch.nn.ReLU,
)


class SequentialState(torch.nn.Sequential):
    """Layers applied in order, each neuron layer's state threaded through.

    The stack holds torch layers (:data:`STATELESS_LAYERS`) and lifexport neuron layers,
    either all cells (the stack computes one step, ``(B, ...)`` in) or all sequence layers
    (the stack takes ``(T, B, ...)``: torch layers see the ``T * B`` samples as one batch,
    each sequence layer runs its own time loop). ``forward(x, state=None) -> (y, state)``
    where ``state`` holds one entry per layer, ``None`` for stateless layers.

    Examples:
        >>> from lifexport.modules import LIFRefracCell
        >>> net = SequentialState(torch.nn.Linear(4, 3), LIFRefracCell())
        >>> y, state = net(torch.ones(2, 4))
        >>> y.shape, state[0], type(state[1]).__name__
        (torch.Size([2, 3]), None, 'LIFRefracFeedForwardState')
    """

    def __init__(self, *layers: torch.nn.Module) -> None:
        super().__init__(*layers)
        neurons = [m for m in layers if isinstance(m, NeuronModule)]
        check_layers(layers)
        kinds = {m.is_sequence for m in neurons}
        if len(kinds) > 1:
            raise ValueError(
                "a SequentialState holds either cells (one step) or sequence layers "
                f"(time-major), not both: got {[type(m).__name__ for m in neurons]}"
            )
        self.is_sequence = kinds == {True}

    def _state_list(self, state: Any) -> list:
        if state is None:
            return [None] * len(self)
        if not isinstance(state, (tuple, list)) or len(state) != len(self):
            got = (
                f"{len(state)} entries"
                if isinstance(state, (tuple, list))
                else type(state).__name__
            )
            raise ValueError(
                f"state must be a tuple with one entry per layer ({len(self)}), got {got}"
            )
        return list(state)

    def initial_state(self, x: Tensor) -> tuple:
        """Every neuron layer at rest, for one step's input ``x`` of shape ``(B, ...)``.

        Only the shapes of the intermediate values are used, so compiled code drops the
        torch layers' arithmetic here.
        """
        states = []
        h = x
        for index, layer in enumerate(self):
            check_fits(self, index, h.shape)
            if isinstance(layer, NeuronModule):
                states.append(layer.initial_state(h))
                h = rest(h, layer.output_shape(h.shape))
            else:
                states.append(None)
                h = layer(h)
        return tuple(states)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, tuple]:
        """One time step of the whole stack (neuron layers use their single-step form)."""
        states = self._state_list(state)
        for index, layer in enumerate(self):
            check_fits(self, index, x.shape)
            if isinstance(layer, NeuronModule):
                s = states[index]
                x, states[index] = layer.step(x, layer.initial_state(x) if s is None else s)
            else:
                x = layer(x)
        return x, tuple(states)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, tuple]:
        if not self.is_sequence:
            for layer in self:
                if isinstance(layer, NeuronModule):
                    layer.check_parameter_values()
            return self.step(x, state)
        check_rank(x, 2, "(time, batch, ...)")
        check_time_steps(x)
        states = self._state_list(state)
        for index, layer in enumerate(self):
            check_fits(self, index, x.shape)
            if isinstance(layer, NeuronModule):
                x, states[index] = layer(x, states[index])
            else:
                y = layer(x.flatten(0, 1))  # (T * B, ...)
                x = y.unflatten(0, x.shape[:2])  # (T, B, ...)
        return x, tuple(states)


class TimeLoop(torch.nn.Module):
    """Runs a step module (a cell or a stack of cells) over a time-major sequence.

    ``forward(xs, state=None) -> (ys, state)`` with ``xs`` of shape ``(T, B, ...)``; under
    ``torch.compile`` and ``torch.export`` the loop is one ``scan``.

    Examples:
        >>> from lifexport.modules import LIFRefracCell
        >>> ys, state = TimeLoop(LIFRefracCell())(torch.full((8, 1, 2), 20.0))
        >>> ys[:, 0, 0]
        tensor([1., 0., 0., 0., 0., 0., 1., 0.])
    """

    is_sequence = True

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        if not (hasattr(module, "step") and hasattr(module, "initial_state")):
            raise ValueError(
                f"TimeLoop needs a module with step() and initial_state(), such as a lifexport "
                f"cell or SequentialState; got {type(module).__name__}"
            )
        self.module = module

    def forward(self, xs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        check_rank(xs, 2, "(time, batch, ...)")
        check_time_steps(xs)
        for layer in self.module.modules():
            if isinstance(layer, NeuronModule):
                layer.check_parameter_values()
        state = self.module.initial_state(xs[0]) if state is None else state
        return time_loop(self.module.step, xs, state)


def check_layers(layers) -> None:
    """Raise ``ValueError`` naming the first layer a :class:`SequentialState` cannot hold."""
    for index, layer in enumerate(layers):
        if not isinstance(layer, (NeuronModule, *STATELESS_LAYERS)):
            raise ValueError(
                f"layer {index} ({type(layer).__name__}) is not supported in a "
                f"SequentialState: it cannot be run or exported; use lifexport layers and "
                f"{', '.join(t.__name__ for t in STATELESS_LAYERS)}"
            )


def check_fits(layers: Sequence[torch.nn.Module], index: int, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` naming layer ``index`` of ``layers`` when its input, of ``shape``,
    lacks the features the layer takes: a Linear's ``in_features`` or a recurrent cell's
    ``input_size`` in the last dimension, a Conv's ``in_channels`` in its channel dimension.

    Sizes only (no tensor values), so compiled and exported code checks once, while tracing.
    """
    layer = layers[index]
    if isinstance(layer, (torch.nn.Linear, RecurrentCell)):
        want = layer.in_features if isinstance(layer, torch.nn.Linear) else layer.input_size
        axis, what = -1, "input features (last dimension)"
    elif isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d)):
        dims = 1 if isinstance(layer, torch.nn.Conv1d) else 2
        want, axis = layer.in_channels, -(dims + 1)
        what = f"input channels (dimension {axis}, before the {dims} spatial ones)"
    else:
        return
    if len(shape) >= -axis and shape[axis] == want:
        return
    got = shape[axis] if len(shape) >= -axis else "none"
    source = (
        "the input"
        if index == 0
        else f"the output of layer {index - 1} ({type(layers[index - 1]).__name__})"
    )
    raise ValueError(
        f"layer {index} ({type(layer).__name__}) takes {want} {what}, got {got}: "
        f"{source} has shape {tuple(shape)}"
    )


def step_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose ``step`` and ``initial_state`` make one time step of ``model``: a
    ``TimeLoop``'s cell or stack, else the model itself."""
    return model.module if isinstance(model, TimeLoop) else model


def as_sequence(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` if it takes whole sequences, else a :class:`TimeLoop` around it."""
    return model if getattr(model, "is_sequence", False) else TimeLoop(model)


def neuron_layers(model: torch.nn.Module) -> list[tuple[int, NeuronModule]]:
    """The neuron layers of a lifexport model, each with its index in its stack (0 for a
    single layer): the ``<k>`` of its states' names in an exported graph.

    Raises:
        TypeError: ``model`` is not a lifexport layer, ``SequentialState`` or ``TimeLoop``.
        ValueError: a ``SequentialState`` that holds a layer it does not support (appended
            after construction).
    """
    model = step_module(model)
    if isinstance(model, NeuronModule):
        return [(0, model)]
    if isinstance(model, SequentialState):
        check_layers(model)
        return [(k, m) for k, m in enumerate(model) if isinstance(m, NeuronModule)]
    raise TypeError(
        f"model must be a lifexport layer, SequentialState or TimeLoop; got {type(model).__name__}"
    )
