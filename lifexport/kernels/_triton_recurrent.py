"""The recurrent Triton kernels: one program per tile of batch rows runs every time step of
every neuron, the recurrent product inside the loop.

Imported lazily, as :mod:`lifexport.kernels._triton` (whose rules on ``TRITON_INTERPRET``,
FMA, rounding and libdevice hold here too), by :mod:`lifexport.kernels._recurrent_ops`.

Layout: ``a`` ``(T, B, H)`` is the input projection ``x @ W_in^T`` for every step, computed
before the loop (one GEMM); ``zs`` ``(T + 1, B, H)`` holds the spikes before every step
(``zs[0]`` the initial state's ``z``, ``zs[t + 1]`` step ``t``'s output) in ``a``'s dtype;
the other state tensors ``(v, i[, rho])`` are ``(NS, B, H)``. Step ``t`` of neuron tile ``n``
needs the product ``zs[t] @ W_rec^T`` over *all* neurons, so a program owns its rows' every
neuron: it walks the neuron tiles (``BLOCK_N``) and, for each, sums ``tl.dot`` over tiles of
``BLOCK_K`` inputs, reading ``zs[t]`` (written by the previous step) and ``W_rec`` from memory
(the L2 cache at common sizes). A barrier between steps makes one step's spikes visible to the
next step's products in every thread of the program. The state ``(v, i, rho)`` lives in the
output ``final`` between steps (each element read and written by one tile), so any number of
neurons fits; programs are independent (``cdiv(B, BLOCK_B)`` of them).

Rounding: ``i_jump = (i + a) + zs[t] @ W_rec^T``, the step functions' order. The product sums
in ``tl.dot``'s order (tiles of ``BLOCK_K``, in float32 with ``input_precision="ieee"``: no
TF32), not torch's matmul's, so ``i_jump`` may differ from the ``scan`` path's in the last
bits and a neuron that lands within an ulp of its threshold may spike in one and not the other.
Under ``torch.autocast`` (``a`` and ``W_rec`` in half precision) the product takes half
precision operands, sums in float32 and is rounded to half precision, as autocast's matmul.

Backward, reverse time: the state before each step, as ``(v, i_jump[, rho])`` (the current
after the product, so the backward needs no product to recover it): stored for every step
(``CHUNK == 1``), or recomputed chunk by chunk from ``(v, i[, rho])`` checkpoints every
``CHUNK`` steps, the products from the stored spikes ``zs`` (one neuron tile at a time: no
barrier within a chunk). Step ``t``'s gradient w.r.t. its spikes is the output's plus
``g[t + 1] @ W_rec`` (``g`` the gradient w.r.t. ``i_jump``, which is also ``a``'s gradient),
another product of the whole row. The weight gradient ``g^T @ zs[:-1]`` is one GEMM in torch
afterwards (:mod:`lifexport.kernels._recurrent_ops`).

Tiles are fixed (:data:`CONFIG`), not tuned: the forward and the backward's recomputation must
sum the products in the same order, so ``store`` and ``recompute`` give bit-equal gradients.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lifexport.kernels._ops import METHOD_CODES
from lifexport.kernels._triton import INTERPRETED, _quiet
from lifexport.kernels._triton_step import (
    load_params,
    load_state,
    round_to,
    step,
    step_backward,
    store_state,
)

CONFIG = {"BLOCK_B": 16, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4}
"""Rows per program, neurons per tile, inputs per ``tl.dot``, warps: ``tl.dot`` needs 16 or
more in each dimension."""

_INTERPRETED = tl.constexpr(INTERPRETED)

INTERPRETER_CONFIG = {"BLOCK_B": 16, "BLOCK_N": 32, "BLOCK_K": 16, "num_warps": 1}
"""Smaller tiles in the interpreter, so the tests' small layers have partial tiles."""


@triton.jit
def _tile(rows, rmask, n0, H, BLOCK_N: tl.constexpr):
    """Offsets and mask of neuron tile ``n0`` of the program's rows in a ``(B, H)`` tensor."""
    cols = n0 + tl.arange(0, BLOCK_N)
    offs = rows[:, None] * H + cols[None, :]
    return offs, rmask[:, None] & (cols < H)[None, :]


@triton.jit
def _product(
    src_ptr,
    w_ptr,
    rows,
    rmask,
    n0,
    H,
    TRANSPOSE: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Neuron tile ``n0`` of ``src @ W^T`` (``TRANSPOSE``: the forward's ``z @ W_rec^T``) or
    of ``src @ W`` (the backward's gradient w.r.t. ``z``), ``src`` ``(B, H)`` and ``W``
    ``(H, H)`` in one dtype; summed in float32, then rounded to ``W``'s dtype when
    ``ROUND`` (half precision, as autocast's matmul returns it)."""
    cols = n0 + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        src_mask = rmask[:, None] & (ks < H)[None, :]
        src = tl.load(src_ptr + rows[:, None] * H + ks[None, :], mask=src_mask, other=0.0)
        w_mask = (ks < H)[:, None] & (cols < H)[None, :]
        if TRANSPOSE:  # w[k, n] = W[n, k]
            w = tl.load(w_ptr + cols[None, :] * H + ks[:, None], mask=w_mask, other=0.0)
        else:
            w = tl.load(w_ptr + ks[:, None] * H + cols[None, :], mask=w_mask, other=0.0)
        if ROUND and not _INTERPRETED:
            acc = tl.dot(src, w, acc)
        elif ROUND:  # the interpreter's bfloat16 dot is wrong (triton 3.9); float32 is exact
            acc = tl.dot(src.to(tl.float32), w.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(src, w, acc, input_precision="ieee")
    if ROUND:
        acc = round_to(acc, w_ptr.dtype.element_ty).to(tl.float32)
    return acc


@triton.jit(do_not_specialize=["T"])
def recurrent_forward_kernel(
    a_ptr,
    state_ptr,
    w_ptr,
    zs_ptr,
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
    B,
    H,
    MODEL: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """The sequence from ``a`` ``(T, B, H)`` and the state ``(1 + NS, B, H)`` (``z`` first):
    the spikes ``zs`` ``(T + 1, B, H)``, the final ``(v, i[, rho])`` ``(NS, B, H)``, and the
    checkpoints (``CHUNK == 1``: ``(v, i_jump[, rho])`` before every step; else
    ``(v, i[, rho])`` before every ``CHUNK``-th step)."""
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = rows < B
    bh = tl.cast(B, tl.int64) * H
    for n0 in range(0, H, BLOCK_N):
        offs, mask = _tile(rows, rmask, n0, H, BLOCK_N)
        z = tl.load(state_ptr + offs, mask=mask, other=0.0)
        tl.store(zs_ptr + offs, z.to(zs_ptr.dtype.element_ty), mask=mask)
        v, i, rho = load_state(state_ptr + bh, offs, mask, bh, MODEL)
        store_state(final_ptr, offs, mask, bh, v, i, rho, MODEL)
    tl.debug_barrier()
    for t in range(0, T):
        for n0 in range(0, H, BLOCK_N):
            offs, mask = _tile(rows, rmask, n0, H, BLOCK_N)
            r = _product(
                zs_ptr + t * bh, w_ptr, rows, rmask, n0, H, True, ROUND, BLOCK_B, BLOCK_N, BLOCK_K
            )
            a_mem, a_syn, v_leak, v_th, v_reset, rho_reset = load_params(
                p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask
            )
            v, i, rho = load_state(final_ptr, offs, mask, bh, MODEL)
            a = tl.load(a_ptr + t * bh + offs, mask=mask, other=0.0).to(v.dtype)
            ia = i + a
            if CHUNK == 1:
                store_state(checkpoint_ptr + t * NS * bh, offs, mask, bh, v, ia + r, rho, MODEL)
            elif t % CHUNK == 0:
                checkpoint = checkpoint_ptr + (t // CHUNK) * NS * bh
                store_state(checkpoint, offs, mask, bh, v, i, rho, MODEL)
            # step() adds its x to its i: (i + a) + r, the step functions' order.
            y, v, i, rho = step(
                r, v, ia, rho, a_mem, a_syn, v_leak, v_th, v_reset, rho_reset, MODEL
            )
            tl.store(zs_ptr + (t + 1) * bh + offs, y, mask=mask)  # 0 or 1: exact
            store_state(final_ptr, offs, mask, bh, v, i, rho, MODEL)
        tl.debug_barrier()  # this step's spikes, for every tile's next product


@triton.jit
def _recompute(
    a_ptr,
    zs_ptr,
    w_ptr,
    checkpoint_ptr,
    scratch_ptr,
    t0,
    steps,
    rows,
    rmask,
    H,
    bh,
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
    MODEL: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """``(v, i_jump[, rho])`` before steps ``t0 .. t0 + steps - 1`` (one chunk) into the
    scratch ``(CHUNK, NS, B, H)``, from the chunk's checkpoint and the stored spikes: the
    forward's arithmetic, so the same bits."""
    for n0 in range(0, H, BLOCK_N):
        offs, mask = _tile(rows, rmask, n0, H, BLOCK_N)
        a_mem, a_syn, v_leak, v_th, v_reset, rho_reset = load_params(
            p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask
        )
        v, i, rho = load_state(checkpoint_ptr + (t0 // CHUNK) * NS * bh, offs, mask, bh, MODEL)
        for k in range(0, steps):
            r = _product(
                zs_ptr + (t0 + k) * bh, w_ptr, rows, rmask, n0, H, True, ROUND,
                BLOCK_B, BLOCK_N, BLOCK_K,
            )  # fmt: skip
            a = tl.load(a_ptr + (t0 + k) * bh + offs, mask=mask, other=0.0).to(v.dtype)
            ia = i + a
            store_state(scratch_ptr + k * NS * bh, offs, mask, bh, v, ia + r, rho, MODEL)
            _, v, i, rho = step(
                r, v, ia, rho, a_mem, a_syn, v_leak, v_th, v_reset, rho_reset, MODEL
            )


@triton.jit
def _accumulate(ptr, offs, mask, g):
    """``ptr[offs] += g``: a parameter gradient's running sum, one element per neuron."""
    tl.store(ptr + offs, tl.load(ptr + offs, mask=mask, other=0.0) + g, mask=mask)


@triton.jit(do_not_specialize=["T"])
def recurrent_backward_kernel(
    a_ptr,
    gzs_ptr,
    gfinal_ptr,
    zs_ptr,
    checkpoint_ptr,
    scratch_ptr,
    w_ptr,
    ga_ptr,
    gstate_ptr,
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
    B,
    H,
    MODEL: tl.constexpr,
    METHOD: tl.constexpr,
    INTERPRET: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Reverse time, from the gradients w.r.t. ``zs`` ``(T + 1, B, H)`` and the final
    ``(v, i[, rho])``: the gradients w.r.t. ``a`` ``(T, B, H)`` (= ``i_jump``'s), the initial
    ``(v, i[, rho])`` (``gstate``, which carries the state's gradient between steps) and each
    neuron's parameters ``(6, B * H)``. ``scratch_ptr`` is not read when ``CHUNK == 1``.

    Long for the reason :func:`lifexport.kernels._triton.backward_kernel` is."""
    rows = (tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    rmask = rows < B
    bh = tl.cast(B, tl.int64) * H
    for n0 in range(0, H, BLOCK_N):
        offs, mask = _tile(rows, rmask, n0, H, BLOCK_N)
        gv, gi, grho = load_state(gfinal_ptr, offs, mask, bh, MODEL)
        store_state(gstate_ptr, offs, mask, bh, gv, gi, grho, MODEL)
        for slot in range(0, 6):
            tl.store(gparams_ptr + slot * bh + offs, tl.zeros_like(gv), mask=mask)
    tl.debug_barrier()
    alpha = tl.load(alpha_ptr)
    for jt in range(0, T):
        t = T - 1 - jt
        k = t % CHUNK
        if CHUNK != 1:
            # The walk enters a chunk at its last step (or the sequence's): its states first.
            if (k == CHUNK - 1) | (t == T - 1):
                _recompute(
                    a_ptr, zs_ptr, w_ptr, checkpoint_ptr, scratch_ptr, t - k, k + 1, rows,
                    rmask, H, bh, p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5,
                    MODEL, NS, CHUNK, ROUND, BLOCK_B, BLOCK_N, BLOCK_K,
                )  # fmt: skip
                tl.debug_barrier()
        for n0 in range(0, H, BLOCK_N):
            offs, mask = _tile(rows, rmask, n0, H, BLOCK_N)
            # This step's spikes: the output's gradient, and the next step's product's.
            gz = tl.load(gzs_ptr + (t + 1) * bh + offs, mask=mask, other=0.0).to(tl.float32)
            if t < T - 1:
                gz += _product(
                    ga_ptr + (t + 1) * bh, w_ptr, rows, rmask, n0, H, False, ROUND,
                    BLOCK_B, BLOCK_N, BLOCK_K,
                )  # fmt: skip
            if CHUNK == 1:
                v, j, rho = load_state(checkpoint_ptr + t * NS * bh, offs, mask, bh, MODEL)
            else:
                v, j, rho = load_state(scratch_ptr + k * NS * bh, offs, mask, bh, MODEL)
            a_mem, a_syn, v_leak, v_th, v_reset, rho_reset = load_params(
                p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask
            )
            gv, gi, grho = load_state(gstate_ptr, offs, mask, bh, MODEL)
            zero = tl.zeros_like(v)  # i_jump is j + 0: j as stored
            gj, gv, grho, g_mem, g_syn, g_leak, g_th, g_reset, g_rr = step_backward(
                zero, v, j, rho, gz, gv, gi, grho, zero, a_mem, a_syn, v_leak, v_th, v_reset,
                rho_reset, alpha, MODEL, METHOD, INTERPRET, True,
            )  # fmt: skip
            tl.store(ga_ptr + t * bh + offs, round_to(gj, ga_ptr.dtype.element_ty), mask=mask)
            store_state(gstate_ptr, offs, mask, bh, gv, gj, grho, MODEL)
            _accumulate(gparams_ptr, offs, mask, g_mem)
            _accumulate(gparams_ptr + bh, offs, mask, g_syn)
            _accumulate(gparams_ptr + 2 * bh, offs, mask, g_leak)
            _accumulate(gparams_ptr + 3 * bh, offs, mask, g_th)
            _accumulate(gparams_ptr + 4 * bh, offs, mask, g_reset)
            _accumulate(gparams_ptr + 5 * bh, offs, mask, g_rr)
        tl.debug_barrier()  # this step's gradient, for every tile's product at the step before


_TILES = INTERPRETER_CONFIG if INTERPRETED else CONFIG
"""The tiles and warps of every launch here."""


def _options() -> dict:
    """The launch's tiles and warps, and no FMA (the step functions' rounding)."""
    return {"enable_fp_fusion": False, **_TILES}


def _grid(B: int) -> tuple[int]:
    """One program per ``BLOCK_B`` batch rows."""
    return (triton.cdiv(B, _TILES["BLOCK_B"]),)


def launch_forward(
    a: torch.Tensor,
    state: torch.Tensor,
    w: torch.Tensor,
    params: list[torch.Tensor],
    model: int,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run :func:`recurrent_forward_kernel`: ``a`` ``(T, B, H)``, ``state`` ``(1 + NS, B, H)``,
    ``w`` ``(H, H)`` in ``a``'s dtype, six parameter tensors of 1 to ``B * H`` elements in the
    state's dtype, all contiguous. Returns ``(zs, final, checkpoints)``."""
    T, B, H = a.shape
    ns = state.shape[0] - 1
    zs = a.new_empty((T + 1, B, H))
    final = state.new_empty((ns, B, H))
    checkpoints = state.new_empty((triton.cdiv(T, chunk), ns, B, H))
    if B * H > 0:
        with _quiet():
            recurrent_forward_kernel[_grid(B)](
                a, state, w, zs, final, checkpoints, *params, *[p.numel() for p in params],
                T, B, H, MODEL=model, NS=ns, CHUNK=chunk, ROUND=w.dtype != state.dtype,
                **_options(),
            )  # fmt: skip
    return zs, final, checkpoints


def launch_backward(
    grad_zs: torch.Tensor,
    grad_final: torch.Tensor,
    a: torch.Tensor,
    zs: torch.Tensor,
    checkpoints: torch.Tensor,
    w: torch.Tensor,
    params: list[torch.Tensor],
    alpha: torch.Tensor,
    model: int,
    method: str,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run :func:`recurrent_backward_kernel`. ``a`` is read only when ``chunk > 1`` (else it
    may be empty). Returns the gradients w.r.t. ``a`` (in ``zs``'s dtype, which is ``a``'s),
    the initial ``(v, i[, rho])`` and each neuron's six parameters ``(6, B * H)``."""
    T, B, H = zs.shape[0] - 1, zs.shape[1], zs.shape[2]
    ns = grad_final.shape[0]
    grad_a = torch.empty_like(zs[1:])
    grad_state = torch.empty_like(grad_final)
    grad_params = grad_final.new_empty((6, B * H))
    # Stored states need no scratch, nor a: the kernel never reads what it is given then.
    scratch = checkpoints if chunk == 1 else checkpoints.new_empty((min(chunk, T), ns, B, H))
    a = zs if chunk == 1 else a
    if B * H > 0:
        with _quiet():
            recurrent_backward_kernel[_grid(B)](
                a, grad_zs, grad_final, zs, checkpoints, scratch, w, grad_a, grad_state,
                grad_params, alpha, *params, *[p.numel() for p in params], T, B, H,
                MODEL=model, METHOD=METHOD_CODES[method], INTERPRET=INTERPRETED, NS=ns,
                CHUNK=chunk, ROUND=w.dtype != grad_final.dtype, **_options(),
            )  # fmt: skip
    return grad_a, grad_state, grad_params
