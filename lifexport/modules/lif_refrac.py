"""LIF-refrac layers: thin modules over :mod:`lifexport.functional.lif_refrac`.

Cells compute one time step, ``(B, ...)``; sequence layers run the same step over a
time-major ``(T, B, ...)`` input and return every step's spikes and the final state. The
constructor arguments are Norse's (``p``, ``dt``, ``input_weights``, ``recurrent_weights``,
``autapses``); ``trainable`` names neuron parameters to learn as ``nn.Parameter``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lifexport import kernels
from lifexport.functional.lif import LIFFeedForwardState, LIFParameters, LIFState
from lifexport.functional.lif_refrac import (
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIFRefracState,
    lif_refrac_feed_forward_step,
    lif_refrac_step,
)
from lifexport.modules._layers import FeedForwardCell, FusedSequenceLayer
from lifexport.modules._neuron import rest
from lifexport.modules.lif import LIF_NAMES, RecurrentNeuronCell

__all__ = ["LIFRefracCell", "LIFRefrac", "LIFRefracRecurrentCell", "LIFRefracRecurrent"]


class _LIFRefracParameters:
    """The parameter tuple of a LIF-refrac layer, built from the tensors it holds."""

    parameter_names = (*LIF_NAMES, "rho_reset")
    parameter_tuple = LIFRefracParameters

    @staticmethod
    def neuron_args(p: LIFRefracParameters, dt: float, trainable: Iterable[str]) -> dict[str, Any]:
        """The :class:`~lifexport.modules.NeuronModule` arguments for ``p``."""
        values = {name: getattr(p.lif, name) for name in LIF_NAMES}
        values["rho_reset"] = p.rho_reset
        lif = p.lif
        return dict(values=values, method=lif.method, alpha=lif.alpha, dt=dt, trainable=trainable)

    @property
    def p(self) -> LIFRefracParameters:
        """The parameters as the functional API takes them (tensors of this module)."""
        lif = LIFParameters(
            *(getattr(self, name) for name in LIF_NAMES),
            method=self.method,
            alpha=self.surrogate_alpha(),
        )
        return LIFRefracParameters(lif, self.rho_reset)


class LIFRefracCell(_LIFRefracParameters, FeedForwardCell):
    r"""One feed-forward LIF-refrac step on an input current of any shape ``(B, ...)``.

    Args:
        p: neuron parameters (numbers or tensors, per neuron allowed).
        dt: integration step in seconds.
        trainable: names of parameters to learn (e.g. ``("v_th", "tau_mem_inv")``).

    Examples:
        >>> z, state = LIFRefracCell()(torch.full((1, 3), 20.0))
        >>> z, state.rho
        (tensor([[1., 1., 1.]]), tensor([[5., 5., 5.]]))
    """

    state_classes = (LIFRefracFeedForwardState, LIFFeedForwardState)
    spike_fields = ()  # the spikes are the output only
    membrane_call = 0  # the step thresholds v - v_th, then rho

    def __init__(
        self,
        p: LIFRefracParameters = LIFRefracParameters(),
        dt: float = 0.001,
        trainable: Iterable[str] = (),
    ) -> None:
        super().__init__(**self.neuron_args(p, dt, trainable))

    def state_at_rest(self, x: Tensor) -> LIFRefracFeedForwardState:
        """Rest: ``v = v_leak``, ``i = 0``, ``rho = 0``, with ``x``'s shape, dtype and device."""
        return LIFRefracFeedForwardState(
            LIFFeedForwardState(rest(x, x.shape, self.v_leak), rest(x, x.shape)),
            rest(x, x.shape),
        )

    def dynamics(
        self, x: Tensor, state: LIFRefracFeedForwardState
    ) -> tuple[Tensor, LIFRefracFeedForwardState]:
        """One time step from an explicit state."""
        return lif_refrac_feed_forward_step(x, state, self.p, self.dt, check_values=False)


class LIFRefrac(FusedSequenceLayer, LIFRefracCell):
    r"""Feed-forward LIF-refrac neurons over a time-major sequence ``(T, B, ...)``.

    Returns ``(spikes, state)``: spikes of every step ``(T, B, ...)`` and the final state.
    Arguments as :class:`LIFRefracCell`, and ``backend``: ``"auto"``, ``"scan"`` or
    ``"triton"`` (see :func:`lifexport.kernels.use_kernel`), and ``memory``: ``"auto"``,
    ``"store"`` or ``"recompute"`` (what the kernel's backward keeps; see
    :class:`~lifexport.modules.FusedSequenceLayer`).

    Examples:
        >>> z, state = LIFRefrac()(torch.full((8, 1, 2), 20.0))
        >>> z[:, 0, 0]
        tensor([1., 0., 0., 0., 0., 0., 1., 0.])
    """

    def fused(
        self, x: Tensor, state: LIFRefracFeedForwardState
    ) -> tuple[Tensor, LIFRefracFeedForwardState]:
        return kernels.lif_refrac_sequence(x, state, self.p, self.dt, self.memory)


class LIFRefracRecurrentCell(_LIFRefracParameters, RecurrentNeuronCell):
    r"""One step of recurrently connected LIF-refrac neurons: ``(B, input_size)`` in,
    ``(B, hidden_size)`` spikes out (arguments as
    :class:`~lifexport.modules.lif.RecurrentNeuronCell`, ``p`` a :class:`LIFRefracParameters`).
    """

    state_classes = (LIFRefracState, LIFState)
    spike_fields = ("z",)  # state.lif.z
    membrane_call = 0

    def state_at_rest(self, x: Tensor) -> LIFRefracState:
        """Rest for a step input ``x`` of shape ``(B, input_size)``."""
        shape = self.output_shape(x.shape)
        return LIFRefracState(
            LIFState(rest(x, shape), rest(x, shape, self.v_leak), rest(x, shape)), rest(x, shape)
        )

    def dynamics(self, x: Tensor, state: LIFRefracState) -> tuple[Tensor, LIFRefracState]:
        """One time step from an explicit state."""
        return lif_refrac_step(x, state, *self.weights(), self.p, self.dt, check_values=False)


class LIFRefracRecurrent(FusedSequenceLayer, LIFRefracRecurrentCell):
    r"""Recurrent LIF-refrac neurons over a time-major sequence ``(T, B, input_size)``.

    Returns ``(spikes, state)``: spikes ``(T, B, hidden_size)`` and the final state.
    Arguments as :class:`LIFRefracRecurrentCell`, and ``backend`` and ``memory`` as
    :class:`LIFRefrac`'s: the fused kernel computes the input projection for every step in one
    matrix product, then runs the time loop with the recurrent product inside it
    (:func:`lifexport.kernels.lif_refrac_recurrent_sequence`; float32 only). It takes every
    size: its programs own tiles of batch rows and walk all the neurons' tiles each step. Its
    products sum in another order than torch's matmul, so a spike may flip where a membrane
    lands within an ulp of its threshold.
    """

    kernel_dtypes = (torch.float32,)

    def fused(self, x: Tensor, state: LIFRefracState) -> tuple[Tensor, LIFRefracState]:
        return kernels.lif_refrac_recurrent_sequence(
            x, state, *self.weights(), self.p, self.dt, self.memory
        )
