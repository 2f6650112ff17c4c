"""LIF-refrac layers: thin modules over :mod:`lifexport.functional.lif_refrac`.

Cells compute one time step, ``(B, ...)``; sequence layers run the same step over a
time-major ``(T, B, ...)`` input and return every step's spikes and the final state. The
constructor arguments are Norse's (``p``, ``dt``, ``input_weights``, ``recurrent_weights``,
``autapses``); ``trainable`` names neuron parameters to learn as ``nn.Parameter``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from lifexport.functional.lif import LIFFeedForwardState, LIFParameters, LIFState
from lifexport.functional.lif_refrac import (
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIFRefracState,
    lif_refrac_feed_forward_step,
    lif_refrac_step,
)
from lifexport.modules._neuron import NeuronModule, rest
from lifexport.modules._time import time_loop

__all__ = ["LIFRefracCell", "LIFRefrac", "LIFRefracRecurrentCell", "LIFRefracRecurrent"]

_LIF_NAMES = ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset")


def check_rank(x: Tensor, min_dim: int, axes: str) -> None:
    """A clear error for an input without its time or batch axis."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor {axes}, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"input must have shape {axes} (at least {min_dim} dimensions), got "
            f"{tuple(x.shape)}; add the missing time or batch dimension"
        )


class _LIFRefracNeuron(NeuronModule):
    """The LIF-refrac parameters, held as tensors, and the parameter tuple built from them."""

    parameter_names = (*_LIF_NAMES, "rho_reset")
    #: Sequence layers take ``(T, B, ...)``; cells one step ``(B, ...)``.
    is_sequence = False

    def __init__(self, p: LIFRefracParameters, dt: float, trainable: Iterable[str]) -> None:
        values = {name: getattr(p.lif, name) for name in _LIF_NAMES}
        values["rho_reset"] = p.rho_reset
        super().__init__(values, p.lif.method, p.lif.alpha, dt, trainable)

    @property
    def p(self) -> LIFRefracParameters:
        """The parameters as the functional API takes them (tensors of this module)."""
        lif = LIFParameters(
            *(getattr(self, name) for name in _LIF_NAMES), method=self.method, alpha=self.alpha
        )
        return LIFRefracParameters(lif, self.rho_reset)


class LIFRefracCell(_LIFRefracNeuron):
    r"""One feed-forward LIF-refrac step on an input current of any shape ``(B, ...)``.

    Args:
        p: neuron parameters (numbers or tensors, per neuron allowed).
        dt: integration step in seconds.
        trainable: names of parameters to learn (e.g. ``("v_th", "tau_mem_inv")``).

    Examples:
        >>> cell = LIFRefracCell()
        >>> z, state = cell(torch.full((2, 3), 20.0))
        >>> z, state.rho
        (tensor([[1., 1., 1.],
                [1., 1., 1.]]), tensor([[5., 5., 5.],
                [5., 5., 5.]]))
    """

    def __init__(
        self,
        p: LIFRefracParameters = LIFRefracParameters(),
        dt: float = 0.001,
        trainable: Iterable[str] = (),
    ) -> None:
        super().__init__(p, dt, trainable)

    def initial_state(self, x: Tensor) -> LIFRefracFeedForwardState:
        """Rest: ``v = v_leak``, ``i = 0``, ``rho = 0``, with ``x``'s shape, dtype and device."""
        return LIFRefracFeedForwardState(
            LIFFeedForwardState(rest(x, x.shape, self.v_leak), rest(x, x.shape)),
            rest(x, x.shape),
        )

    def output_shape(self, shape: torch.Size) -> torch.Size:
        """Spikes have the input's shape."""
        return shape

    def step(
        self, x: Tensor, state: LIFRefracFeedForwardState
    ) -> tuple[Tensor, LIFRefracFeedForwardState]:
        """One time step from an explicit state."""
        return lif_refrac_feed_forward_step(x, state, self.p, self.dt)

    def forward(
        self, x: Tensor, state: LIFRefracFeedForwardState | None = None
    ) -> tuple[Tensor, LIFRefracFeedForwardState]:
        check_rank(x, 1, "(batch, ...)")
        return super().forward(x, state)


class LIFRefrac(LIFRefracCell):
    r"""Feed-forward LIF-refrac neurons over a time-major sequence ``(T, B, ...)``.

    Returns ``(spikes, state)``: spikes of every step ``(T, B, ...)`` and the final state.

    Examples:
        >>> z, state = LIFRefrac()(torch.full((8, 1, 2), 20.0))
        >>> z[:, 0, 0]
        tensor([1., 0., 0., 0., 0., 0., 1., 0.])
    """

    is_sequence = True

    def forward(
        self, x: Tensor, state: LIFRefracFeedForwardState | None = None
    ) -> tuple[Tensor, LIFRefracFeedForwardState]:
        check_rank(x, 2, "(time, batch, ...)")
        state = self.initial_state(x[0]) if state is None else state
        return time_loop(self.step, x, state)


class LIFRefracRecurrentCell(_LIFRefracNeuron):
    r"""One step of recurrently connected LIF-refrac neurons: ``(B, input_size)`` in,
    ``(B, hidden_size)`` spikes out.

    Args:
        input_size: input features.
        hidden_size: neurons.
        p: neuron parameters.
        dt: integration step in seconds.
        input_weights: ``(hidden_size, input_size)``; Norse's random init when ``None``.
        recurrent_weights: ``(hidden_size, hidden_size)``; Norse's random init when ``None``.
        autapses: allow self-connections; when ``False`` the diagonal of the recurrent
            weights is zeroed and masked in every step, so it never acts nor learns.
        trainable: names of neuron parameters to learn.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        p: LIFRefracParameters = LIFRefracParameters(),
        dt: float = 0.001,
        input_weights: Tensor | None = None,
        recurrent_weights: Tensor | None = None,
        autapses: bool = False,
        trainable: Iterable[str] = (),
    ) -> None:
        super().__init__(p, dt, trainable)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.autapses = autapses
        scale = math.sqrt(2.0 / hidden_size)  # Norse's initialisation
        self.input_weights = _weight(
            "input_weights", input_weights, (hidden_size, input_size), scale
        )
        self.recurrent_weights = _weight(
            "recurrent_weights", recurrent_weights, (hidden_size, hidden_size), scale
        )
        if autapses:
            self.autapse_mask = None
        else:
            mask = 1.0 - torch.eye(hidden_size, dtype=self.recurrent_weights.dtype)
            self.register_buffer("autapse_mask", mask, persistent=False)
            with torch.no_grad():
                self.recurrent_weights.fill_diagonal_(0.0)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"autapses={self.autapses}, {super().extra_repr()}"
        )

    def initial_state(self, x: Tensor) -> LIFRefracState:
        """Rest for a step input ``x`` of shape ``(B, input_size)``."""
        shape = self.output_shape(x.shape)
        return LIFRefracState(
            LIFState(rest(x, shape), rest(x, shape, self.v_leak), rest(x, shape)), rest(x, shape)
        )

    def output_shape(self, shape: torch.Size) -> torch.Size:
        """``(..., input_size)`` in, ``(..., hidden_size)`` spikes out."""
        return torch.Size((*shape[:-1], self.hidden_size))

    def step(self, x: Tensor, state: LIFRefracState) -> tuple[Tensor, LIFRefracState]:
        """One time step from an explicit state."""
        w_rec = self.recurrent_weights
        if self.autapse_mask is not None:
            w_rec = w_rec * self.autapse_mask
        return lif_refrac_step(x, state, self.input_weights, w_rec, self.p, self.dt)

    def check_features(self, x: Tensor, min_dim: int, axes: str) -> None:
        check_rank(x, min_dim, axes)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have {self.input_size} features in its last dimension {axes}, "
                f"got shape {tuple(x.shape)}"
            )

    def forward(
        self, x: Tensor, state: LIFRefracState | None = None
    ) -> tuple[Tensor, LIFRefracState]:
        self.check_features(x, 2, f"(batch, {self.input_size})")
        return super().forward(x, state)


class LIFRefracRecurrent(LIFRefracRecurrentCell):
    r"""Recurrent LIF-refrac neurons over a time-major sequence ``(T, B, input_size)``.

    Returns ``(spikes, state)``: spikes ``(T, B, hidden_size)`` and the final state.
    """

    is_sequence = True

    def forward(
        self, x: Tensor, state: LIFRefracState | None = None
    ) -> tuple[Tensor, LIFRefracState]:
        self.check_features(x, 3, f"(time, batch, {self.input_size})")
        state = self.initial_state(x[0]) if state is None else state
        return time_loop(self.step, x, state)


def _weight(name: str, value: Tensor | None, shape: tuple[int, int], scale: float):
    """A weight ``nn.Parameter``: the given tensor (copied) or Norse's random init."""
    if value is None:
        return torch.nn.Parameter(torch.randn(shape) * scale)
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {got}")
    return torch.nn.Parameter(value.detach().clone())
