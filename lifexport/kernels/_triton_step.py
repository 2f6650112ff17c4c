"""The step arithmetic of the Triton kernels, forward and backward, as ``triton.jit`` device
functions that :mod:`lifexport.kernels._triton`'s kernels inline.

Every operation of the step functions in :mod:`lifexport.functional`, in their order and
rounding (see :mod:`lifexport.kernels._triton` for the rules: no FMA, IEEE division and square
root, libdevice's ``exp``/``tanh``/``pow`` on the GPU); the surrogate gradients are those of
:mod:`lifexport.functional.threshold`, one per code of
:data:`lifexport.kernels._ops.METHOD_CODES`.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

# Model codes (constexpr kernel arguments); the method codes are METHOD_CODES'.
LI, LIF, LIF_REFRAC = 0, 1, 2
_SQRT_PI = tl.constexpr(1.7724538509055159)  # math.sqrt(math.pi), as threshold.py divides by it
_INF = tl.constexpr(float("inf"))


@triton.jit
def _param(ptr, offs, size, mask):
    """A parameter for each neuron: a tensor of ``size`` elements repeating over the neurons."""
    return tl.load(ptr + offs % size, mask=mask, other=0.0)


@triton.jit
def _spike(x):
    """heaviside: 1 where x > 0, else 0 (NaN gives 0), in x's dtype."""
    return (x > 0).to(x.dtype)


@triton.jit
def step(x, v, i, rho, a_mem, a_syn, v_leak, v_th, v_reset, rho_reset, MODEL: tl.constexpr):
    """One feed-forward step; returns ``(y, v, i, rho)``. ``a_mem = dt * tau_mem_inv`` and
    ``a_syn = -dt * tau_syn_inv``, as the step functions compute them."""
    i_jump = i + x
    v_decayed = v + a_mem * ((v_leak - v) + i_jump)
    i_new = i_jump + a_syn * i_jump
    y = v_decayed
    v_new = v_decayed
    rho_new = rho
    if MODEL != 0:
        z = _spike(v_decayed - v_th)
        y = z
        v_new = (1 - z) * v_decayed + z * v_reset
        if MODEL == 2:
            r = _spike(rho)
            v_new = (1 - r) * v_new + r * v
            y = (1 - r) * z
            relu = tl.maximum(rho - r, 0.0, propagate_nan=tl.PropagateNan.ALL)
            rho_new = (1 - y) * relu + y * rho_reset
    return y, v_new, i_new, rho_new


# The interpreter has no libdevice: it takes these in float64 and rounds once, which is within
# an ulp of torch's CPU functions (a float32 formula would be several ulps off).
@triton.jit
def _tanh(x, INTERPRET: tl.constexpr):
    if INTERPRET:
        e = tl.exp(-2.0 * tl.abs(x.to(tl.float64)))
        t = ((1.0 - e) / (1.0 + e)).to(x.dtype)  # numpy: correctly rounded
        result = tl.where(x < 0, -t, t)
    else:
        result = libdevice.tanh(x)
    return result


@triton.jit
def _pow_1_5(x, INTERPRET: tl.constexpr):
    if INTERPRET:
        x64 = x.to(tl.float64)
        result = (x64 * tl.sqrt(x64)).to(x.dtype)  # numpy: correctly rounded
    else:
        result = libdevice.pow(x, 1.5)
    return result


@triton.jit
def _exp(x, INTERPRET: tl.constexpr):
    if INTERPRET:
        result = tl.exp(x.to(tl.float64)).to(x.dtype)
    else:
        result = libdevice.exp(x)
    return result


@triton.jit
def _surrogate(g, x, alpha, METHOD: tl.constexpr, INTERPRET: tl.constexpr):
    """The gradient w.r.t. ``x`` of a spike at ``x``, given ``g`` w.r.t. the spike, in the op
    order of :mod:`lifexport.functional.threshold`'s formulas; 0 for heaviside."""
    if METHOD == 1:  # super
        d = alpha * tl.abs(x) + 1.0
        result = tl.math.div_rn(g, d * d)
    elif METHOD == 2:  # triangle
        result = g * alpha * tl.maximum(1.0 - tl.abs(x), 0.0, propagate_nan=tl.PropagateNan.ALL)
    elif METHOD == 3:  # tanh
        t = _tanh(x * alpha, INTERPRET)
        result = g * (1.0 - t * t)
    elif METHOD == 4:  # circ
        r2 = alpha * alpha + x * x
        a = tl.math.div_rn(x * x, 2.0 * _pow_1_5(r2, INTERPRET))
        b = tl.math.div_rn(1.0, 2.0 * tl.sqrt_rn(r2))
        dz = (-a + b) * 2.0 * alpha
        dz = tl.where(r2 == _INF, 0.0, dz)  # r2 >= 0: isinf(r2)
        result = g * tl.maximum(dz, 0.0, propagate_nan=tl.PropagateNan.ALL)
    elif METHOD == 5:  # heavi_erfc
        ax = alpha * x
        result = tl.math.div_rn(2.0 * _exp(-(ax * ax), INTERPRET), _SQRT_PI) * g
    else:  # heaviside: the spike carries no gradient
        result = tl.zeros_like(g)
    return result


@triton.jit
def step_backward(
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
    MODEL: tl.constexpr,
    METHOD: tl.constexpr,
    INTERPRET: tl.constexpr,
    DETACH_RESET: tl.constexpr = False,
):
    """The autograd of :func:`step` at the state ``(v, i, rho)`` before it.

    ``gy``, ``gv``, ``gi``, ``grho``: gradients w.r.t. the step's output and new state (for LI,
    whose output is its new ``v``, ``gv`` holds both); ``gy_prev``: LI only, the gradient
    w.r.t. the previous step's output, which is this step's ``v``. ``DETACH_RESET``: the
    spike in the voltage reset carries no gradient (the recurrent steps detach it). Returns
    the gradients w.r.t. ``x`` (= ``i``), ``v``, ``rho`` and each parameter. A tensor used
    ``n`` times gets its ``n`` parts summed last-use first, as torch's autograd engine sums
    them.
    """
    i_jump = i + x
    d2 = (v_leak - v) + i_jump
    v_decayed = v + a_mem * d2
    g_v_first = gy_prev  # LI: the previous output's gradient reaches v first
    g_vd = gv
    g_rho = grho
    g_vth = tl.zeros_like(x)
    g_vreset = tl.zeros_like(x)
    g_rr = tl.zeros_like(x)
    if MODEL != 0:
        s = v_decayed - v_th
        z = _spike(s)
        omz = 1 - z
        g_vr = gv
        g_z_last = gy  # LIF: z is the output (the stack's gradient comes first)
        g_v_first = tl.zeros_like(x)
        if MODEL == 2:
            v_reset_ = omz * v_decayed + z * v_reset
            r = _spike(rho)
            omr = 1 - r
            z_out = omr * z
            relu = tl.maximum(rho - r, 0.0, propagate_nan=tl.PropagateNan.ALL)
            # rho' = (1 - z') relu + z' rho_reset ; z' = (1 - r) z ; v' = (1 - r) v_r + r v
            g_z_out = (gy + grho * rho_reset) - grho * relu
            g_rr = grho * z_out
            g_q = tl.where(relu <= 0, 0.0, grho * (1 - z_out))
            g_r = ((-g_q + -(g_z_out * z)) + gv * v) + -(gv * v_reset_)
            g_rho = g_q + _surrogate(g_r, rho, alpha, METHOD, INTERPRET)
            g_v_first = gv * r
            g_vr = gv * omr
            g_z_last = g_z_out * omr
        if DETACH_RESET:
            g_z = g_z_last
        else:
            g_z = (g_z_last + g_vr * v_reset) - g_vr * v_decayed
        g_vreset = g_vr * z
        g_s = _surrogate(g_z, s, alpha, METHOD, INTERPRET)
        g_vth = -g_s
        g_vd = g_vr * omz + g_s
    g_d2 = g_vd * a_mem
    g_v = (g_v_first + g_vd) - g_d2
    g_i = (gi + gi * a_syn) + g_d2
    return g_i, g_v, g_rho, g_vd * d2, gi * i_jump, g_d2, g_vth, g_vreset, g_rr


@triton.jit
def load_state(ptr, offs, mask, stride, MODEL: tl.constexpr):
    """``(v, i, rho)`` from ``ptr``, components ``stride`` apart (rho: zeros unless refrac)."""
    v = tl.load(ptr + offs, mask=mask, other=0.0)
    i = tl.load(ptr + stride + offs, mask=mask, other=0.0)
    rho = tl.zeros_like(v)
    if MODEL == 2:
        rho = tl.load(ptr + 2 * stride + offs, mask=mask, other=0.0)
    return v, i, rho


@triton.jit
def store_state(ptr, offs, mask, stride, v, i, rho, MODEL: tl.constexpr):
    tl.store(ptr + offs, v, mask=mask)
    tl.store(ptr + stride + offs, i, mask=mask)
    if MODEL == 2:
        tl.store(ptr + 2 * stride + offs, rho, mask=mask)


@triton.jit
def round_to(g, DTYPE: tl.constexpr):
    """``g`` in ``DTYPE``, rounded to nearest even as torch's ``.to(DTYPE)`` rounds.

    bfloat16 by torch's own formula (``c10::round_to_nearest_even``), in integers: the
    interpreter's float32-to-bfloat16 conversion truncates, and one formula keeps the GPU and
    the interpreter bit-equal. float16 and the rest by the conversion itself (round to nearest
    even on the GPU and in numpy)."""
    if DTYPE == tl.bfloat16:
        tl.static_assert(g.dtype == tl.float32, "bfloat16 gradients come from float32")
        bits = g.to(tl.uint32, bitcast=True)
        bits = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
        bits = tl.where(g != g, 0x7FC0, bits)  # NaN: torch's quiet NaN
        result = bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        result = g.to(DTYPE)
    return result


@triton.jit
def load_params(p0, p1, p2, p3, p4, p5, s0, s1, s2, s3, s4, s5, offs, mask):
    """The six parameters ``a_mem, a_syn, v_leak, v_th, v_reset, rho_reset`` per neuron, from
    tensors of ``s0 ... s5`` elements (1, the trailing neuron dims, or every neuron)."""
    return (
        _param(p0, offs, s0, mask),
        _param(p1, offs, s1, mask),
        _param(p2, offs, s2, mask),
        _param(p3, offs, s3, mask),
        _param(p4, offs, s4, mask),
        _param(p5, offs, s5, mask),
    )


@triton.jit
def recompute(
    x_ptr,
    checkpoint_ptr,
    scratch_ptr,
    t0,
    steps,
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
    MODEL: tl.constexpr,
    NS: tl.constexpr,
    CHUNK: tl.constexpr,
):
    """The states before steps ``t0 .. t0 + steps - 1`` (one chunk), from the chunk's
    checkpoint, into the scratch ``(CHUNK, NS, M)``."""
    v, i, rho = load_state(checkpoint_ptr + (t0 // CHUNK) * NS * m64, offs, mask, M, MODEL)
    for k in range(0, steps):
        store_state(scratch_ptr + k * NS * m64, offs, mask, M, v, i, rho, MODEL)
        x = tl.load(x_ptr + (t0 + k) * m64 + offs, mask=mask, other=0.0).to(v.dtype)
        _, v, i, rho = step(x, v, i, rho, a_mem, a_syn, v_leak, v_th, v_reset, rho_reset, MODEL)
