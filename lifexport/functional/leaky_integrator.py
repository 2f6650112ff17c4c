r"""Leaky integrators (LI): the LIF membrane without a threshold, a non-spiking readout.

The same explicit Euler step as :mod:`lifexport.functional.lif`, with no spike and no reset;
the output is the membrane potential :math:`v`. The arithmetic and its order are Norse's
``norse.torch.functional.leaky_integrator``.
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

__all__ = ["LIParameters", "LIState", "li_feed_forward_step", "li_step"]


class LIParameters(NamedTuple):
    """Parameters of a leaky integrator; each a number, a scalar or a per-neuron tensor.

    Attributes:
        tau_syn_inv: inverse synaptic time constant (1/s).
        tau_mem_inv: inverse membrane time constant (1/s).
        v_leak: leak potential.
    """

    tau_syn_inv: float | Tensor = 200.0
    tau_mem_inv: float | Tensor = 100.0
    v_leak: float | Tensor = 0.0


class LIState(NamedTuple):
    """State of a leaky integrator: potential ``v`` and current ``i``."""

    v: Tensor
    i: Tensor


def _li_integrate(i_jump: Tensor, state: LIState, p: LIParameters, dt: float):
    dv = dt * p.tau_mem_inv * ((p.v_leak - state.v) + i_jump)
    v_new = state.v + dv
    di = -dt * p.tau_syn_inv * i_jump
    i_decayed = i_jump + di
    return v_new, LIState(v_new, i_decayed)


def li_feed_forward_step(
    input_tensor: Tensor,
    state: LIState,
    p: LIParameters = LIParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIState]:
    """One Euler step of a leaky integrator driven by an input current.

    Args:
        input_tensor: input current of any shape ``(batch, ...)``.
        state: the state at this step, tensors of ``input_tensor``'s shape.
        p: parameters.
        dt: integration step in seconds.
        check_values: check the values of tensor parameters too (eager only; a device sync
            per tensor). Python numbers are always checked. Modules pass ``False`` in their
            time loops, having checked their parameters once per call.

    Returns:
        ``(v, LIState(v, i))``: the new potential (the output) and the new state.

    Examples:
        >>> v, s = li_feed_forward_step(torch.ones(2), LIState(torch.zeros(2), torch.zeros(2)))
        >>> v, s.i
        (tensor([0.1000, 0.1000]), tensor([0.8000, 0.8000]))
    """
    check_input("input_tensor", input_tensor)
    check_dt(dt)
    state = check_state(state, (LIState,), input_tensor.shape, input_tensor)
    check_parameters(
        p, input_tensor.shape, input_tensor, values=check_values, classes=(LIParameters,)
    )
    return _li_integrate(state.i + input_tensor, state, p, dt)


def li_step(
    input_tensor: Tensor,
    state: LIState,
    input_weights: Tensor,
    p: LIParameters = LIParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIState]:
    """One Euler step of a leaky integrator with input weights ``(hidden, features)``.

    Returns:
        ``(v, LIState(v, i))``.
    """
    shape = check_weighted_args(input_tensor, dt, input_weights=input_weights)
    state = check_state(state, (LIState,), shape, input_tensor)
    check_parameters(p, shape, input_tensor, values=check_values, classes=(LIParameters,))
    i_jump = state.i + torch.nn.functional.linear(input_tensor, input_weights)
    return _li_integrate(i_jump, state, p, dt)
