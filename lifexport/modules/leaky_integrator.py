"""Leaky-integrator layers: a non-spiking readout over :mod:`lifexport.functional.leaky_integrator`.

The output of each step is the membrane potential ``v``, e.g. for a max-over-time readout.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from lifexport.functional.leaky_integrator import LIParameters, LIState, li_feed_forward_step
from lifexport.modules._neuron import NeuronModule, rest
from lifexport.modules._time import time_loop
from lifexport.modules.lif_refrac import check_rank

__all__ = ["LICell", "LI"]


class LICell(NeuronModule):
    """One leaky-integrator step on an input current ``(B, ...)``; returns ``(v, state)``.

    Args:
        p: parameters (numbers or tensors, per neuron allowed).
        dt: integration step in seconds.
        trainable: names of parameters to learn.

    Examples:
        >>> v, state = LICell()(torch.ones(1, 2))
        >>> v
        tensor([[0.1000, 0.1000]])
    """

    parameter_names = ("tau_syn_inv", "tau_mem_inv", "v_leak")
    is_sequence = False

    def __init__(
        self, p: LIParameters = LIParameters(), dt: float = 0.001, trainable: Iterable[str] = ()
    ) -> None:
        super().__init__(p._asdict(), None, None, dt, trainable)

    @property
    def p(self) -> LIParameters:
        """The parameters as the functional API takes them (tensors of this module)."""
        return LIParameters(self.tau_syn_inv, self.tau_mem_inv, self.v_leak)

    def output_shape(self, shape: torch.Size) -> torch.Size:
        return shape

    def initial_state(self, x: Tensor) -> LIState:
        """Rest: ``v = v_leak``, ``i = 0``, with ``x``'s shape, dtype and device."""
        return LIState(rest(x, x.shape, self.v_leak), rest(x, x.shape))

    def step(self, x: Tensor, state: LIState) -> tuple[Tensor, LIState]:
        return li_feed_forward_step(x, state, self.p, self.dt)

    def forward(self, x: Tensor, state: LIState | None = None) -> tuple[Tensor, LIState]:
        check_rank(x, 1, "(batch, ...)")
        return super().forward(x, state)


class LI(LICell):
    """Leaky integrators over a time-major sequence ``(T, B, ...)``; returns every step's
    potential ``(T, B, ...)`` and the final state."""

    is_sequence = True

    def forward(self, x: Tensor, state: LIState | None = None) -> tuple[Tensor, LIState]:
        check_rank(x, 2, "(time, batch, ...)")
        state = self.initial_state(x[0]) if state is None else state
        return time_loop(self.step, x, state)
