r"""Leaky integrate-and-fire (LIF) neurons, one explicit Euler step at a time.

The membrane potential :math:`v` and the synaptic current :math:`i` follow

.. math::
    \begin{align*}
        \dot{v} &= \tau_{\text{mem}}^{-1} (v_{\text{leak}} - v + i) \\
        \dot{i} &= -\tau_{\text{syn}}^{-1} i
    \end{align*}

with the jump condition :math:`z = \Theta(v - v_{\text{th}})` and the transitions

.. math::
    \begin{align*}
        v &\leftarrow (1 - z) v + z v_{\text{reset}} \\
        i &\leftarrow i + i_{\text{in}}
    \end{align*}

where :math:`i_{\text{in}}` is the input current (feed-forward step) or
:math:`W_{\text{in}} z_{\text{in}} + W_{\text{rec}} z` (recurrent step). The arithmetic and
its order are Norse's ``norse.torch.functional.lif``, so results agree to the bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lifexport.functional._checks import (
    check_dt,
    check_input,
    check_parameters,
    check_state,
    check_weighted_args,
)
from lifexport.functional.threshold import spike

__all__ = [
    "LIFParameters",
    "LIFState",
    "LIFFeedForwardState",
    "lif_step",
    "lif_feed_forward_step",
]


class LIFParameters(NamedTuple):
    """Parameters of a LIF neuron; each a number, a scalar tensor or a per-neuron tensor.

    Attributes:
        tau_syn_inv: inverse synaptic time constant :math:`1/\\tau_{\\text{syn}}` (1/s).
        tau_mem_inv: inverse membrane time constant :math:`1/\\tau_{\\text{mem}}` (1/s).
        v_leak: leak potential.
        v_th: threshold potential.
        v_reset: reset potential.
        method: surrogate gradient of the spike, one of
            :func:`lifexport.functional.methods` (the built-in ones and those registered).
        alpha: surrogate width (one number per layer).
    """

    tau_syn_inv: float | Tensor = 200.0
    tau_mem_inv: float | Tensor = 100.0
    v_leak: float | Tensor = 0.0
    v_th: float | Tensor = 1.0
    v_reset: float | Tensor = 0.0
    method: str = "super"
    alpha: float | Tensor = 100.0


class LIFState(NamedTuple):
    """State of a recurrent LIF neuron: spikes ``z``, potential ``v``, current ``i``."""

    z: Tensor
    v: Tensor
    i: Tensor


class LIFFeedForwardState(NamedTuple):
    """State of a feed-forward LIF neuron: potential ``v`` and current ``i``."""

    v: Tensor
    i: Tensor


def _integrate(
    i_jump: Tensor, v: Tensor, p: LIFParameters, dt: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Euler step of ``v`` and ``i`` after the current jump, then the spike.

    Returns ``(z_new, v_decayed, i_decayed)``; the reset is the caller's, since the
    recurrent and feed-forward steps differ there.
    """
    dv = dt * p.tau_mem_inv * ((p.v_leak - v) + i_jump)
    v_decayed = v + dv
    di = -dt * p.tau_syn_inv * i_jump
    i_decayed = i_jump + di
    z_new = spike(v_decayed - p.v_th, p.method, p.alpha)
    return z_new, v_decayed, i_decayed


def _lif_step(
    input_tensor: Tensor,
    state: LIFState,
    input_weights: Tensor,
    recurrent_weights: Tensor,
    p: LIFParameters,
    dt: float,
) -> tuple[Tensor, LIFState]:
    """:func:`lif_step` without argument checks."""
    i_jump = (
        state.i
        + torch.nn.functional.linear(input_tensor, input_weights)
        + torch.nn.functional.linear(state.z, recurrent_weights)
    )
    z_new, v_decayed, i_decayed = _integrate(i_jump, state.v, p, dt)
    # The reset does not carry gradient through z (as Norse's lif_step).
    z_const = z_new.detach()
    v_new = (1 - z_const) * v_decayed + z_const * p.v_reset
    return z_new, LIFState(z_new, v_new, i_decayed)


def _lif_feed_forward_step(
    input_tensor: Tensor, state: LIFFeedForwardState, p: LIFParameters, dt: float
) -> tuple[Tensor, LIFFeedForwardState]:
    """:func:`lif_feed_forward_step` without argument checks."""
    i_new = state.i + input_tensor
    z_new, v_decayed, i_decayed = _integrate(i_new, state.v, p, dt)
    # Here the reset does carry gradient through z (as Norse's lif_feed_forward_step).
    v_new = (1 - z_new) * v_decayed + z_new * p.v_reset
    return z_new, LIFFeedForwardState(v_new, i_decayed)


def lif_step(
    input_tensor: Tensor,
    state: LIFState,
    input_weights: Tensor,
    recurrent_weights: Tensor,
    p: LIFParameters = LIFParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIFState]:
    r"""One Euler step of a recurrently connected LIF neuron.

    Args:
        input_tensor: input spikes or values, shape ``(*, features)``.
        state: the state at the current step, each tensor of shape ``(*, hidden)``.
        input_weights: ``(hidden, features)``.
        recurrent_weights: ``(hidden, hidden)``.
        p: neuron parameters.
        dt: integration step in seconds.
        check_values: check the values of tensor parameters too (eager only; a device sync
            per tensor). Python numbers are always checked. Modules pass ``False`` in their
            time loops, having checked their parameters once per call.

    Returns:
        ``(z, LIFState(z, v, i))``: the spikes of this step and the new state.

    Raises:
        ValueError: shapes that do not fit, ``dt <= 0``, an unknown ``method``.
        TypeError: a non-floating input, ``p`` not a :class:`LIFParameters`.

    Examples:
        >>> s = LIFState(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2))
        >>> z, s = lif_step(torch.ones(1, 3), s, torch.ones(2, 3), torch.zeros(2, 2))
        >>> s.i
        tensor([[2.4000, 2.4000]])
    """
    shape = check_weighted_args(
        input_tensor, dt, input_weights=input_weights, recurrent_weights=recurrent_weights
    )
    state = check_state(state, (LIFState,), shape, input_tensor)
    check_parameters(p, shape, input_tensor, values=check_values, classes=(LIFParameters,))
    return _lif_step(input_tensor, state, input_weights, recurrent_weights, p, dt)


def lif_feed_forward_step(
    input_tensor: Tensor,
    state: LIFFeedForwardState,
    p: LIFParameters = LIFParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIFFeedForwardState]:
    r"""One Euler step of a feed-forward LIF neuron driven by an input current.

    Args:
        input_tensor: input current of any shape ``(batch, ...)``, e.g. a layer's output.
        state: the state at the current step, tensors of ``input_tensor``'s shape.
        p: neuron parameters.
        dt: integration step in seconds.
        check_values: check the values of tensor parameters too (eager only; a device sync
            per tensor). Python numbers are always checked. Modules pass ``False`` in their
            time loops, having checked their parameters once per call.

    Returns:
        ``(z, LIFFeedForwardState(v, i))``: the spikes of this step and the new state.

    Raises:
        ValueError: a state of another shape, ``dt <= 0``, an unknown ``method``.
        TypeError: a non-floating input, ``p`` not a :class:`LIFParameters`.

    Examples:
        >>> s = LIFFeedForwardState(torch.zeros(2), torch.zeros(2))
        >>> z, s = lif_feed_forward_step(torch.tensor([1.0, 20.0]), s)
        >>> z, s.v
        (tensor([0., 1.]), tensor([0.1000, 0.0000]))
    """
    check_input("input_tensor", input_tensor)
    check_dt(dt)
    state = check_state(state, (LIFFeedForwardState,), input_tensor.shape, input_tensor)
    check_parameters(
        p, input_tensor.shape, input_tensor, values=check_values, classes=(LIFParameters,)
    )
    return _lif_feed_forward_step(input_tensor, state, p, dt)
