r"""LIF neurons with an absolute refractory period (LIF-refrac).

A LIF neuron (:mod:`lifexport.functional.lif`) plus a refractory counter :math:`\rho`. After a
spike, :math:`\rho` is set to ``rho_reset`` and counts down by one per step; while
:math:`\rho > 0` the neuron is refractory: its potential stays where it was and it cannot
spike. With the mask :math:`r = \Theta(\rho)`:

.. math::
    \begin{align*}
        v' &= (1 - r)\, v_{\text{LIF}} + r\, v \\
        z' &= (1 - r)\, z_{\text{LIF}} \\
        \rho' &= (1 - z')\, \max(0, \rho - r) + z'\, \rho_{\text{reset}}
    \end{align*}

The API, the arithmetic and its order are Norse's ``norse.torch.functional.lif_refrac``.
Gradient details follow Norse too: the mask :math:`r` is computed with the layer's
surrogate (so gradient flows into :math:`\rho`), and the recurrent step detaches the spike in
the voltage reset while the feed-forward step does not.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lifexport.functional._checks import (
    check_dt,
    check_input,
    check_parameter_type,
    check_parameters,
    check_state,
    check_weighted_args,
)
from lifexport.functional.lif import (
    LIFFeedForwardState,
    LIFParameters,
    LIFState,
    _lif_feed_forward_step,
    _lif_step,
)
from lifexport.functional.threshold import check_alpha, check_method, spike

__all__ = [
    "LIFRefracParameters",
    "LIFRefracState",
    "LIFRefracFeedForwardState",
    "compute_refractory_update",
    "lif_refrac_step",
    "lif_refrac_feed_forward_step",
]


class LIFRefracParameters(NamedTuple):
    """Parameters of a LIF neuron with an absolute refractory period.

    Attributes:
        lif: parameters of the LIF integration.
        rho_reset: refractory steps after a spike (a number or tensor, per neuron allowed).
    """

    lif: LIFParameters = LIFParameters()
    rho_reset: float | Tensor = 5.0


#: What ``p`` of the LIF-refrac functions must be: its class, and that of its ``lif`` field.
PARAMETER_CLASSES = (LIFRefracParameters, LIFParameters)


class LIFRefracState(NamedTuple):
    """State of a recurrent LIF-refrac neuron: the LIF state and the counter ``rho``."""

    lif: LIFState
    rho: Tensor


class LIFRefracFeedForwardState(NamedTuple):
    """State of a feed-forward LIF-refrac neuron: the LIF state and the counter ``rho``."""

    lif: LIFFeedForwardState
    rho: Tensor


def compute_refractory_update(
    state: LIFRefracState | LIFRefracFeedForwardState,
    z_new: Tensor,
    v_new: Tensor,
    p: LIFRefracParameters = LIFRefracParameters(),
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Apply the refractory period to a LIF step's result.

    Args:
        state: the state *before* the LIF step (its ``lif.v`` and ``rho`` are used).
        z_new: spikes of the LIF step.
        v_new: potential after the LIF step (reset applied).
        p: parameters.

    Returns:
        ``(v, z, rho)``: potential held where refractory, spikes silenced where
        refractory, and the new counter.

    Examples:
        >>> s = LIFRefracFeedForwardState(
        ...     LIFFeedForwardState(torch.tensor([0.5, 0.5]), torch.zeros(2)),
        ...     torch.tensor([0.0, 3.0]))
        >>> compute_refractory_update(s, torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0]))
        (tensor([0.0000, 0.5000]), tensor([1., 0.]), tensor([5., 2.]))
    """
    check_parameter_type(p, PARAMETER_CLASSES)
    check_method(p.lif.method, "p.lif.method")
    check_alpha(p.lif.alpha, "p.lif.alpha")
    return _refractory_update(state, z_new, v_new, p)


def _refractory_update(
    state: LIFRefracState | LIFRefracFeedForwardState,
    z_new: Tensor,
    v_new: Tensor,
    p: LIFRefracParameters,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`compute_refractory_update` without argument checks."""
    refrac_mask = spike(state.rho, p.lif.method, p.lif.alpha)
    v_new = (1 - refrac_mask) * v_new + refrac_mask * state.lif.v
    z_new = (1 - refrac_mask) * z_new
    rho_new = (1 - z_new) * torch.nn.functional.relu(state.rho - refrac_mask) + z_new * p.rho_reset
    return v_new, z_new, rho_new


def lif_refrac_step(
    input_tensor: Tensor,
    state: LIFRefracState,
    input_weights: Tensor,
    recurrent_weights: Tensor,
    p: LIFRefracParameters = LIFRefracParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIFRefracState]:
    r"""One Euler step of a recurrently connected LIF neuron with a refractory period.

    Args:
        input_tensor: input at this step, shape ``(*, features)``.
        state: state at this step, each tensor of shape ``(*, hidden)``.
        input_weights: ``(hidden, features)``.
        recurrent_weights: ``(hidden, hidden)``.
        p: neuron parameters.
        dt: integration step in seconds.
        check_values: check the values of tensor parameters too (eager only; a device sync
            per tensor). Python numbers are always checked. Modules pass ``False`` in their
            time loops, having checked their parameters once per call.

    Returns:
        ``(z, LIFRefracState(LIFState(z, v, i), rho))``.

    Raises:
        ValueError: weights or states whose shapes do not fit, ``dt <= 0``, an unknown
            ``method``.
        TypeError: a non-floating input, ``p`` not a :class:`LIFRefracParameters`.

    Examples:
        >>> s = LIFRefracState(LIFState(*torch.zeros(3, 1, 2)), torch.zeros(1, 2))
        >>> z, s = lif_refrac_step(torch.ones(1, 1), s, torch.full((2, 1), 20.0),
        ...                        torch.zeros(2, 2))
        >>> z, s.rho
        (tensor([[1., 1.]]), tensor([[5., 5.]]))
    """
    shape = check_weighted_args(
        input_tensor, dt, input_weights=input_weights, recurrent_weights=recurrent_weights
    )
    state = check_state(state, (LIFRefracState, LIFState), shape, input_tensor)
    check_parameters(p, shape, input_tensor, values=check_values, classes=PARAMETER_CLASSES)
    z_new, s_new = _lif_step(input_tensor, state.lif, input_weights, recurrent_weights, p.lif, dt)
    v_new, z_new, rho_new = _refractory_update(state, z_new, s_new.v, p)
    return z_new, LIFRefracState(LIFState(z_new, v_new, s_new.i), rho_new)


def lif_refrac_feed_forward_step(
    input_tensor: Tensor,
    state: LIFRefracFeedForwardState,
    p: LIFRefracParameters = LIFRefracParameters(),
    dt: float = 0.001,
    *,
    check_values: bool = True,
) -> tuple[Tensor, LIFRefracFeedForwardState]:
    r"""One Euler step of a feed-forward LIF neuron with a refractory period.

    Args:
        input_tensor: input current of any shape ``(batch, ...)``.
        state: state at this step, tensors of ``input_tensor``'s shape.
        p: neuron parameters.
        dt: integration step in seconds.
        check_values: check the values of tensor parameters too (eager only; a device sync
            per tensor). Python numbers are always checked. Modules pass ``False`` in their
            time loops, having checked their parameters once per call.

    Returns:
        ``(z, LIFRefracFeedForwardState(LIFFeedForwardState(v, i), rho))``.

    Raises:
        ValueError: a state of another shape, ``dt <= 0``, an unknown ``method``.
        TypeError: a non-floating input, ``p`` not a :class:`LIFRefracParameters`.

    Examples:
        >>> s = LIFRefracFeedForwardState(LIFFeedForwardState(*torch.zeros(2, 3)),
        ...                               torch.zeros(3))
        >>> z, s = lif_refrac_feed_forward_step(torch.tensor([0.0, 5.0, 20.0]), s)
        >>> z, s.lif.v, s.rho
        (tensor([0., 0., 1.]), tensor([0.0000, 0.5000, 0.0000]), tensor([0., 0., 5.]))
    """
    check_input("input_tensor", input_tensor)
    check_dt(dt)
    state = check_state(
        state, (LIFRefracFeedForwardState, LIFFeedForwardState), input_tensor.shape, input_tensor
    )
    check_parameters(
        p, input_tensor.shape, input_tensor, values=check_values, classes=PARAMETER_CLASSES
    )
    z_new, s_new = _lif_feed_forward_step(input_tensor, state.lif, p.lif, dt)
    v_new, z_new, rho_new = _refractory_update(state, z_new, s_new.v, p)
    return z_new, LIFRefracFeedForwardState(LIFFeedForwardState(v_new, s_new.i), rho_new)
