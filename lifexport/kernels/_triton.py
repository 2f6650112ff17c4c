"""The Triton kernels: one program per block of neurons loops over every time step.

Imported lazily (by :mod:`lifexport.kernels._ops`, on the first call that runs a kernel), so
the package imports without Triton. Whether the kernels are compiled for the GPU or run by
Triton's interpreter (numpy, on CPU tensors) is fixed here, when they are defined: Triton reads
``TRITON_INTERPRET`` when it is first imported and defines its jit functions (its own library's
too), and ``torch._dynamo`` imports it, so the variable must be set before the process imports
lifexport (triton 3.9); :data:`INTERPRETED` records which it was.

The step arithmetic (forward, backward, surrogate gradients) is in
:mod:`lifexport.kernels._triton_step`; the kernels here loop it over time.

Arithmetic: every operation of the step functions in :mod:`lifexport.functional`, in their
order and rounding, so float32 spikes are bit-equal to the ``scan`` path. Launches pass
``enable_fp_fusion=False``: a fused multiply-add rounds once where torch's separate ``*`` and
``+`` round twice, which would move ``v`` by an ulp and flip spikes. Division and square root
are the IEEE round-to-nearest ones, and ``exp``/``tanh``/``pow`` are libdevice's (what torch's
CUDA kernels call), not Triton's approximate defaults; the interpreter has no libdevice and
uses numpy's (or, for ``tanh`` and ``pow``, a formula), within a few ulps of torch's CPU ones.

Dtypes: the state (and the parameters) have one dtype, which the steps compute in. ``x`` may
be float16 or bfloat16 over a float32 state: it is loaded in its own dtype and converted in
registers (exactly), which is ``x.float()`` followed by the float32 steps. Spikes are written
in ``x``'s dtype (0 and 1 are exact), ``LI``'s output (its ``v``) in the state's. The backward
reads the output's gradient in its dtype and writes the input's gradient rounded to ``x``'s
dtype to nearest even, as torch's ``.to`` rounds it (:func:`round_to`).

Backward: reverse time, from the state before each step. Two layouts of the states the forward
keeps (``checkpoints``, ``(ceil(T / CHUNK), NS, M)``: the state ``(v, i[, rho])`` before every
``CHUNK``-th step), chosen by the caller per launch (:mod:`lifexport.kernels`'s ``memory``):

- ``CHUNK == 1`` (``store``): every step's state; the backward reads it back, ``NS`` times
  the memory of a float32 ``x``, and nothing is recomputed.
- ``CHUNK > 1`` (``recompute``): ``NS / CHUNK`` of it. The backward, at the last step of each
  chunk, recomputes the chunk's states from its checkpoint into a scratch ``(CHUNK, NS, M)``
  (small: L2-resident at common sizes) and walks them back. One more read of ``x`` and the
  step arithmetic per step.

Both hand each step's backward the same state, so their gradients are bit-equal. Each step's
backward is the autograd of the step function unrolled by hand, gradients summed in the order
torch's autograd engine sums them (consumers in reverse creation order), so the gradients agree
with the ``scan`` path to rounding.

Block size: on the GPU, Triton's autotuner picks the neurons per program and warps per
program from :data:`CONFIGS` for each ``M`` (neurons), model, surrogate, checkpoint interval
and set of dtypes, by timing every config whose block fits ``M`` on the first call with that
key; later calls reuse the choice. That first call must run outside CUDA graph capture (the
timing synchronises the device): run the layer once eagerly first at each size, as
``torch.compile``'s ``mode="reduce-overhead"`` does in its warm-up run. The kernels only write
their outputs (and the backward its scratch), so the timing runs change nothing. The
interpreter takes one config (:data:`INTERPRETER_CONFIG`): it checks values, not speed.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from lifexport.kernels._ops import METHOD_CODES
from lifexport.kernels._triton_step import (
    load_params,
    load_state,
    recompute,
    round_to,
    step,
    step_backward,
    store_state,
)

INTERPRETED: bool = bool(triton.knobs.runtime.interpret)
"""Whether the kernels were defined for Triton's interpreter (``TRITON_INTERPRET=1``)."""

CONFIGS: tuple[tuple[int, int], ...] = (
    (128, 1),
    (256, 1),
    (256, 2),
    (512, 2),
    (512, 4),
    (1024, 4),
    (1024, 8),
)
"""``(BLOCK, num_warps)`` pairs the autotuner times: neurons per program, 4 or 8 contiguous
per thread (128-bit accesses of float32; the backward holds many carries per neuron, so a
thread's share stays small). Small blocks fill a large GPU at small batch x features; large
ones cost fewer programs at large sizes."""

INTERPRETER_CONFIG = (256, 2)
"""``(BLOCK, num_warps)`` in the interpreter: a full block and a partial one in the tests."""


@triton.jit(do_not_specialize=["T"])
def forward_kernel(
    x_ptr,
    state_ptr,
    y_ptr,
    final_ptr,
    checkpoint_ptr,
    p0,
    p1,
    p2,
    p3,
    p4,
    p5,
    s0,
    s1,
    s2,
    s3,
    s4,
    s5,
    T,
    M,
    MODEL: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """The whole sequence ``x`` ``(T, M)`` from the state ``(NS, M)``: outputs ``y`` ``(T, M)``,
    the final state ``(NS, M)``, and the state before every ``CHUNK``-th step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    a_mem, a_syn, v_leak, v_th, v_reset, rho_reset = load_params(
        p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask
    )
    v, i, rho = load_state(state_ptr, offs, mask, M, MODEL)
    # Offsets of (T, M) tensors may pass 2**31. tl.cast, not M.to: Triton passes an M of 1 as
    # a constant (it specialises integer arguments equal to 1), which has no .to.
    m64 = tl.cast(M, tl.int64)
    for t in range(0, T):
        if t % CHUNK == 0:
            checkpoint = checkpoint_ptr + (t // CHUNK) * NS * m64
            store_state(checkpoint, offs, mask, M, v, i, rho, MODEL)
        row = t * m64
        # x in its own dtype, the step in the state's: exact, as x.float() is.
        x = tl.load(x_ptr + row + offs, mask=mask, other=0.0).to(v.dtype)
        y, v, i, rho = step(x, v, i, rho, a_mem, a_syn, v_leak, v_th, v_reset, rho_reset, MODEL)
        tl.store(y_ptr + row + offs, y, mask=mask)  # spikes: 0 or 1, exact in y's dtype
    store_state(final_ptr, offs, mask, M, v, i, rho, MODEL)


@triton.jit(do_not_specialize=["T"])
def backward_kernel(
    x_ptr,
    gy_ptr,
    gfinal_ptr,
    checkpoint_ptr,
    scratch_ptr,
    gx_ptr,
    ginit_ptr,
    gparams_ptr,
    alpha_ptr,
    p0,
    p1,
    p2,
    p3,
    p4,
    p5,
    s0,
    s1,
    s2,
    s3,
    s4,
    s5,
    T,
    M,
    MODEL: tl.constexpr,
    METHOD: tl.constexpr,
    INTERPRET: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Reverse time: from the gradients w.r.t. ``y`` ``(T, M)`` and the final state
    ``(NS, M)``, the gradients w.r.t. ``x`` ``(T, M)``, the initial state ``(NS, M)`` and each
    neuron's parameters ``(6, M)``. The state before step ``t`` is checkpoint ``t`` when
    ``CHUNK == 1``; else the scratch ``(CHUNK, NS, M)`` holds its chunk's, recomputed when the
    walk enters the chunk (at its last step). ``scratch_ptr`` is not read when ``CHUNK == 1``.

    Long because a Triton kernel is one program: the reverse loop keeps its gradient carries in
    registers, which helper functions cannot share without returning every carry each step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    a_mem, a_syn, v_leak, v_th, v_reset, rho_reset = load_params(
        p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask
    )
    alpha = tl.load(alpha_ptr)
    # Offsets of (T, M) tensors may pass 2**31. tl.cast, not M.to: Triton passes an M of 1 as
    # a constant (it specialises integer arguments equal to 1), which has no .to.
    m64 = tl.cast(M, tl.int64)
    gv, gi, grho = load_state(gfinal_ptr, offs, mask, M, MODEL)
    if MODEL == 0:  # LI: the last output is the final v
        gv = tl.load(gy_ptr + (T - 1) * m64 + offs, mask=mask, other=0.0).to(gv.dtype) + gv
    acc_mem = tl.zeros_like(gv)
    acc_syn = tl.zeros_like(gv)
    acc_leak = tl.zeros_like(gv)
    acc_th = tl.zeros_like(gv)
    acc_reset = tl.zeros_like(gv)
    acc_rr = tl.zeros_like(gv)
    for jt in range(0, T):
        t = T - 1 - jt
        row = t * m64
        if CHUNK == 1:
            v, i, rho = load_state(checkpoint_ptr + t * NS * m64, offs, mask, M, MODEL)
        else:
            k = t % CHUNK
            # The walk enters a chunk at its last step (or the sequence's): its states first.
            if (k == CHUNK - 1) | (t == T - 1):
                recompute(
                    x_ptr,
                    checkpoint_ptr,
                    scratch_ptr,
                    t - k,
                    k + 1,
                    offs,
                    mask,
                    M,
                    m64,
                    a_mem,
                    a_syn,
                    v_leak,
                    v_th,
                    v_reset,
                    rho_reset,
                    MODEL,
                    NS,
                    CHUNK,
                )
            v, i, rho = load_state(scratch_ptr + k * NS * m64, offs, mask, M, MODEL)
        x = tl.load(x_ptr + row + offs, mask=mask, other=0.0).to(v.dtype)
        gy = tl.zeros_like(x)
        gy_prev = tl.zeros_like(x)
        if MODEL == 0:  # the previous output is this step's v
            first = (offs * 0 + t) == 0  # a block: the interpreter rejects a scalar mask
            gy_prev = tl.load(gy_ptr + row - M + offs, mask=mask & ~first, other=0.0)
            gy_prev = gy_prev.to(x.dtype)
        else:
            gy = tl.load(gy_ptr + row + offs, mask=mask, other=0.0).to(x.dtype)
        gi, gv, grho, g_mem, g_syn, g_leak, g_th, g_reset, g_rr = step_backward(
            x,
            v,
            i,
            rho,
            gy,
            gv,
            gi,
            grho,
            gy_prev,
            a_mem,
            a_syn,
            v_leak,
            v_th,
            v_reset,
            rho_reset,
            alpha,
            MODEL,
            METHOD,
            INTERPRET,
        )
        tl.store(gx_ptr + row + offs, round_to(gi, gx_ptr.dtype.element_ty), mask=mask)
        acc_mem += g_mem
        acc_syn += g_syn
        acc_leak += g_leak
        acc_th += g_th
        acc_reset += g_reset
        acc_rr += g_rr
    store_state(ginit_ptr, offs, mask, M, gv, gi, grho, MODEL)
    g = gparams_ptr + offs
    tl.store(g, acc_mem, mask=mask)
    tl.store(g + M, acc_syn, mask=mask)
    tl.store(g + 2 * M, acc_leak, mask=mask)
    tl.store(g + 3 * M, acc_th, mask=mask)
    tl.store(g + 4 * M, acc_reset, mask=mask)
    tl.store(g + 5 * M, acc_rr, mask=mask)


def _fitting(configs: list, named_args: dict, **kwargs) -> list:
    """The configs whose block is no larger than ``M`` rounded up to a power of two (the
    smallest block always): a larger one only adds masked lanes, so it is not worth timing."""
    largest = max(triton.next_power_of_2(named_args["M"]), CONFIGS[0][0])
    return [config for config in configs if config.kwargs["BLOCK"] <= largest]


def _tuned(kernel, key: list[str]):
    """``kernel`` behind Triton's autotuner over :data:`CONFIGS` (compiled kernels only).

    The autotuner adds every tensor argument's dtype to ``key`` itself."""
    if INTERPRETED:
        return kernel
    configs = [triton.Config({"BLOCK": block}, num_warps=warps) for block, warps in CONFIGS]
    prune = {"early_config_prune": _fitting}
    return triton.autotune(configs=configs, key=key, prune_configs_by=prune)(kernel)


_forward = _tuned(forward_kernel, ["M", "MODEL", "NS", "CHUNK"])
_backward = _tuned(backward_kernel, ["M", "MODEL", "METHOD", "NS", "CHUNK"])


def _launch_options() -> dict:
    """What every launch passes: no FMA (torch's rounding), and, in the interpreter (which
    does not autotune), one block size and warps."""
    options = {"enable_fp_fusion": False}
    if INTERPRETED:
        block, warps = INTERPRETER_CONFIG
        options.update(BLOCK=block, num_warps=warps)
    return options


def _grid(M: int):
    """One program per ``BLOCK`` neurons, ``BLOCK`` as the launch's config has it."""
    return lambda meta: (triton.cdiv(M, meta["BLOCK"]),)


def _quiet():
    """The interpreter computes with numpy, which warns on inf/NaN arithmetic that the GPU
    does silently (masked lanes, overflowing surrogates); silence it there."""
    if INTERPRETED:
        import numpy

        return numpy.errstate(all="ignore")
    return contextlib.nullcontext()


def _sizes(params: list[torch.Tensor]) -> list[int]:
    """The six parameter tensors (unused ones repeated by the caller) and their sizes."""
    return [p.numel() for p in params]


def launch_forward(
    x: torch.Tensor,
    state: torch.Tensor,
    params: list[torch.Tensor],
    model: int,
    chunk: int,
    y_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run :func:`forward_kernel`: ``x`` ``(T, M)``, ``state`` ``(NS, M)``, six parameter
    tensors of 1 to M elements in the state's dtype, all contiguous; a checkpoint every
    ``chunk`` steps. Returns ``(y, final_state, checkpoints)``, ``y`` in ``y_dtype``."""
    T, M = x.shape
    ns = state.shape[0]
    y = torch.empty((T, M), dtype=y_dtype, device=x.device)
    final = torch.empty_like(state)
    checkpoints = state.new_empty((triton.cdiv(T, chunk), ns, M))
    if M > 0:
        with _quiet():
            _forward[_grid(M)](
                x, state, y, final, checkpoints, *params, *_sizes(params), T, M,
                MODEL=model, NS=ns, CHUNK=chunk, **_launch_options(),
            )  # fmt: skip
    return y, final, checkpoints


def launch_backward(
    grad_y: torch.Tensor,
    grad_final: torch.Tensor,
    x: torch.Tensor,
    checkpoints: torch.Tensor,
    params: list[torch.Tensor],
    alpha: torch.Tensor,
    model: int,
    method: str,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run :func:`backward_kernel` from the ``checkpoints`` of a forward with ``chunk``.
    Returns the gradients w.r.t. ``x`` ``(T, M)`` (in ``x``'s dtype), the initial state
    ``(NS, M)`` and each neuron's six parameters ``(6, M)`` (summed over time; both in the
    state's dtype)."""
    T, M = x.shape
    ns = checkpoints.shape[1]
    grad_x = torch.empty_like(x)
    grad_init = torch.empty_like(grad_final)
    grad_params = checkpoints.new_empty((6, M))
    # Stored states need no scratch: the kernel never reads the one it is given then.
    scratch = checkpoints if chunk == 1 else checkpoints.new_empty((min(chunk, T), ns, M))
    if M > 0:
        with _quiet():
            _backward[_grid(M)](
                x, grad_y, grad_final, checkpoints, scratch, grad_x, grad_init, grad_params,
                alpha, *params, *_sizes(params), T, M,
                MODEL=model, METHOD=METHOD_CODES[method], INTERPRET=INTERPRETED, NS=ns,
                CHUNK=chunk, **_launch_options(),
            )  # fmt: skip
    return grad_x, grad_init, grad_params
