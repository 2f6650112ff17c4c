"""LIF layers (no refractory period): thin modules over :mod:`lifexport.functional.lif`.

The same shapes and arguments as the LIF-refrac layers; they exist so Norse models built from
``LIFCell``/``LIFRecurrentCell`` convert and export too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lifexport import kernels
from lifexport.functional.lif import (
    LIFFeedForwardState,
    LIFParameters,
    LIFState,
    lif_feed_forward_step,
    lif_step,
)
from lifexport.modules._layers import (
    FeedForwardCell,
    FusedSequenceLayer,
    RecurrentCell,
)
from lifexport.modules._neuron import rest

__all__ = ["LIFCell", "LIF", "LIFRecurrentCell", "LIFRecurrent"]

LIF_NAMES = ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset")


class _LIFParameters:
    parameter_names = LIF_NAMES
    parameter_tuple = LIFParameters

    @staticmethod
    def neuron_args(p: LIFParameters, dt: float, trainable: Iterable[str]) -> dict[str, Any]:
        """The :class:`~lifexport.modules.NeuronModule` arguments for ``p``."""
        values = {name: getattr(p, name) for name in LIF_NAMES}
        return dict(values=values, method=p.method, alpha=p.alpha, dt=dt, trainable=trainable)

    @property
    def p(self) -> LIFParameters:
        """The parameters as the functional API takes them (tensors of this module)."""
        values = (getattr(self, name) for name in LIF_NAMES)
        return LIFParameters(*values, method=self.method, alpha=self.surrogate_alpha())


class LIFCell(_LIFParameters, FeedForwardCell):
    """One feed-forward LIF step on an input current ``(B, ...)``; returns ``(z, state)``."""

    state_classes = (LIFFeedForwardState,)
    spike_fields = ()  # the spikes are the output only
    membrane_call = 0  # the step thresholds v - v_th

    def __init__(
        self, p: LIFParameters = LIFParameters(), dt: float = 0.001, trainable: Iterable[str] = ()
    ) -> None:
        super().__init__(**self.neuron_args(p, dt, trainable))

    def state_at_rest(self, x: Tensor) -> LIFFeedForwardState:
        return LIFFeedForwardState(rest(x, x.shape, self.v_leak), rest(x, x.shape))

    def dynamics(self, x: Tensor, state: LIFFeedForwardState) -> tuple[Tensor, LIFFeedForwardState]:
        return lif_feed_forward_step(x, state, self.p, self.dt, check_values=False)


class LIF(FusedSequenceLayer, LIFCell):
    """Feed-forward LIF neurons over a time-major sequence ``(T, B, ...)``.

    Arguments as :class:`LIFCell`, and ``backend``: ``"auto"``, ``"scan"`` or ``"triton"``
    (see :func:`lifexport.kernels.use_kernel`), and ``memory``: ``"auto"``, ``"store"`` or
    ``"recompute"`` (what the kernel's backward keeps; see
    :class:`~lifexport.modules.FusedSequenceLayer`).
    """

    def fused(self, x: Tensor, state: LIFFeedForwardState) -> tuple[Tensor, LIFFeedForwardState]:
        return kernels.lif_sequence(x, state, self.p, self.dt, self.memory)


class RecurrentNeuronCell(RecurrentCell, abstract=True):
    """The constructor of the LIF and LIF-refrac recurrent cells: Norse's arguments, with
    ``p`` of the class's ``parameter_tuple`` (its defaults when ``None``).

    Args:
        input_size: input features.
        hidden_size: neurons.
        p: neuron parameters.
        dt: integration step in seconds.
        input_weights: ``(hidden_size, input_size)``; Norse's random init when ``None``.
        recurrent_weights: ``(hidden_size, hidden_size)``; Norse's random init when ``None``.
        autapses: allow self-connections (see :class:`~lifexport.modules.RecurrentCell`).
        trainable: names of neuron parameters to learn.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        p: Any = None,
        dt: float = 0.001,
        input_weights: Tensor | None = None,
        recurrent_weights: Tensor | None = None,
        autapses: bool = False,
        trainable: Iterable[str] = (),
    ) -> None:
        p = self.parameter_tuple() if p is None else p
        neuron = self.neuron_args(p, dt, trainable)
        super().__init__(
            input_size, hidden_size, input_weights, recurrent_weights, autapses, **neuron
        )


class LIFRecurrentCell(_LIFParameters, RecurrentNeuronCell):
    """One step of recurrently connected LIF neurons (arguments as
    :class:`RecurrentNeuronCell`, ``p`` a :class:`LIFParameters`)."""

    state_classes = (LIFState,)
    spike_fields = ("z",)
    membrane_call = 0

    def state_at_rest(self, x: Tensor) -> LIFState:
        shape = self.output_shape(x.shape)
        return LIFState(rest(x, shape), rest(x, shape, self.v_leak), rest(x, shape))

    def dynamics(self, x: Tensor, state: LIFState) -> tuple[Tensor, LIFState]:
        return lif_step(x, state, *self.weights(), self.p, self.dt, check_values=False)


class LIFRecurrent(FusedSequenceLayer, LIFRecurrentCell):
    """Recurrent LIF neurons over a time-major sequence ``(T, B, input_size)``; ``backend``
    and ``memory`` as :class:`~lifexport.modules.LIFRefracRecurrent`'s (its fused kernel is
    :func:`lifexport.kernels.lif_recurrent_sequence`)."""

    kernel_dtypes = (torch.float32,)

    def fused(self, x: Tensor, state: LIFState) -> tuple[Tensor, LIFState]:
        return kernels.lif_recurrent_sequence(
            x, state, *self.weights(), self.p, self.dt, self.memory
        )
