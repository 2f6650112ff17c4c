"""Fused recurrent sequences: the recurrent LIF and LIF-refrac steps over a whole sequence in
one Triton kernel per direction (see :mod:`lifexport.kernels._triton_recurrent`)."""

from __future__ import annotations

import torch
from torch import Tensor

from lifexport.functional.lif import LIFParameters, LIFState
from lifexport.functional.lif_refrac import LIFRefracParameters, LIFRefracState
from lifexport.functional.threshold import alpha_tensor
from lifexport.kernels._ops import CHUNK, lif_params
from lifexport.kernels._recurrent_ops import RECURRENT_OPS


def _run(
    name: str,
    x: Tensor,
    states: tuple[Tensor, ...],
    input_weights: Tensor,
    recurrent_weights: Tensor,
    params: list,
    p: LIFParameters,
    memory: str,
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    """The input projection, then op ``name``: ``(spikes, final z, final (v, i[, rho]))``."""
    from lifexport.kernels import _method_error, per_neuron, stores_states  # (imports this module)

    unsupported = _method_error(p.method)
    if unsupported is not None:
        raise ValueError(f"p.method: {unsupported}; run such a layer with backend='scan'")
    T, H = x.shape[0], recurrent_weights.shape[0]
    # One GEMM for every step's input (under autocast in its dtype, as the step's would be).
    a = torch.nn.functional.linear(x, input_weights)
    shape = a.shape[1:]  # (B, H), or (H,) for an unbatched sequence
    a = a.reshape(T, -1, H).contiguous()
    state = torch.stack([s.expand(shape).reshape(-1, H) for s in states]).contiguous()
    ps = [per_neuron(q, a.shape[1:], state[0]) for q in params]
    alpha = alpha_tensor(p.alpha, state)
    neurons = a.shape[1] * H
    stored = stores_states(memory, T, neurons, len(states) - 1, state.dtype)
    w = recurrent_weights.to(a.dtype).contiguous()  # autocast: the product in half precision
    zs, final, _ = RECURRENT_OPS[name](a, state, w, *ps, alpha, p.method, 1 if stored else CHUNK)
    z_final = zs[-1].to(state.dtype).reshape(shape)
    return zs[1:].reshape(T, *shape), z_final, tuple(s.reshape(shape) for s in final.unbind(0))


def lif_refrac_recurrent_sequence(
    x: Tensor,
    state: LIFRefracState,
    input_weights: Tensor,
    recurrent_weights: Tensor,
    p: LIFRefracParameters,
    dt: float,
    memory: str = "auto",
) -> tuple[Tensor, LIFRefracState]:
    """The recurrent LIF-refrac step over ``x`` ``(T, [B,] input_size)`` in one kernel.

    Equal to running :func:`lifexport.functional.lif_refrac_step` over the time axis, but for
    the order in which the recurrent product sums (a spike may flip where the membrane lands
    within an ulp of its threshold; see :mod:`lifexport.kernels._triton_recurrent`). The input
    projection ``x @ input_weights^T`` is one matrix product over every step, before the loop.
    For float16/bfloat16 ``x`` over a float32 state (a float32 layer under ``torch.autocast``),
    the products are autocast's (half-precision operands and result) and the step float32.
    Arguments other than ``memory`` and ``p.lif.method`` are not checked here: the layers
    check them.

    Args:
        x: inputs ``(T, B, input_size)`` or ``(T, input_size)``.
        state: the state before the first step, tensors of the output's shape (or broadcasting
            to it); its dtype is the one the steps compute in.
        input_weights: ``(hidden, input_size)``.
        recurrent_weights: ``(hidden, hidden)``, as the step multiplies by them (autapses
            already masked).
        p: parameters (numbers, or tensors in the state's dtype).
        dt: integration step in seconds.
        memory: what the backward works from, one of :data:`lifexport.kernels.MEMORY_MODES`.

    Returns:
        ``(spikes (T, [B,] hidden) in x's dtype, final state)``.

    Raises:
        ValueError: ``memory`` is not one of the memory modes, or ``p.lif.method`` is not one
            of :data:`lifexport.kernels.KERNEL_METHODS`.
    """
    states = (state.lif.z, state.lif.v, state.lif.i, state.rho)
    params = [*lif_params(p.lif, dt), p.rho_reset]
    z, z_final, (v, i, rho) = _run(
        "lif_refrac", x, states, input_weights, recurrent_weights, params, p.lif, memory
    )
    return z, LIFRefracState(LIFState(z_final, v, i), rho)


def lif_recurrent_sequence(
    x: Tensor,
    state: LIFState,
    input_weights: Tensor,
    recurrent_weights: Tensor,
    p: LIFParameters,
    dt: float,
    memory: str = "auto",
) -> tuple[Tensor, LIFState]:
    """The recurrent LIF step over ``x`` ``(T, [B,] input_size)`` in one kernel (as
    :func:`lif_refrac_recurrent_sequence`, for :func:`lifexport.functional.lif_step`)."""
    z, z_final, (v, i) = _run(
        "lif", x, tuple(state), input_weights, recurrent_weights, lif_params(p, dt), p, memory
    )
    return z, LIFState(z_final, v, i)
