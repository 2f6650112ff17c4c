"""Leaky-integrator layers: a non-spiking readout over :mod:`lifexport.functional.leaky_integrator`.

The output of each step is the membrane potential ``v``, e.g. for a max-over-time readout.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from lifexport import kernels
from lifexport.functional.leaky_integrator import LIParameters, LIState, li_feed_forward_step
from lifexport.modules._layers import FeedForwardCell, FusedSequenceLayer
from lifexport.modules._neuron import rest

__all__ = ["LICell", "LI"]


class LICell(FeedForwardCell):
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
    state_classes = (LIState,)
    spike_fields = ()  # does not spike
    membrane_call = None

    def __init__(
        self, p: LIParameters = LIParameters(), dt: float = 0.001, trainable: Iterable[str] = ()
    ) -> None:
        super().__init__(values=p._asdict(), method=None, alpha=None, dt=dt, trainable=trainable)

    @property
    def p(self) -> LIParameters:
        """The parameters as the functional API takes them (tensors of this module)."""
        return LIParameters(self.tau_syn_inv, self.tau_mem_inv, self.v_leak)

    def state_at_rest(self, x: Tensor) -> LIState:
        """Rest: ``v = v_leak``, ``i = 0``, with ``x``'s shape, dtype and device."""
        return LIState(rest(x, x.shape, self.v_leak), rest(x, x.shape))

    def dynamics(self, x: Tensor, state: LIState) -> tuple[Tensor, LIState]:
        return li_feed_forward_step(x, state, self.p, self.dt, check_values=False)


class LI(FusedSequenceLayer, LICell):
    """Leaky integrators over a time-major sequence ``(T, B, ...)``; returns every step's
    potential ``(T, B, ...)`` and the final state. Arguments as :class:`LICell`, and
    ``backend``: ``"auto"``, ``"scan"`` or ``"triton"`` (see
    :func:`lifexport.kernels.use_kernel`), and ``memory`` (see
    :class:`~lifexport.modules.FusedSequenceLayer`)."""

    def fused(self, x: Tensor, state: LIState) -> tuple[Tensor, LIState]:
        return kernels.li_sequence(x, state, self.p, self.dt, self.memory)
