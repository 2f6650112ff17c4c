"""Trajectories and surrogate gradients computed by hand, independent of Norse and of lifexport.

Every expected number below is a literal derived in the comments from the Euler update

    i_new = i + x           (feed forward; recurrent: i_new = i + W_in x + W_rec z)
    v_dec = v + dt * tau_mem_inv * ((v_leak - v) + i_new)
    i_dec = i_new - dt * tau_syn_inv * i_new
    z     = 1 if v_dec > v_th else 0,  v = v_reset where z = 1
    if rho > 0 at the start of the step: v is held at its old value, z = 0, rho -> max(0, rho - 1)
    after a spike: rho = rho_reset

with dt = 0.001, tau_syn_inv = 200, tau_mem_inv = 100, v_leak = 0, v_th = 1, v_reset = 0,
rho_reset = 5, so that dt * tau_mem_inv = 0.1 and dt * tau_syn_inv = 0.2:

    v_dec = v + 0.1 * (i_new - v),   i_dec = 0.8 * i_new.
"""

from __future__ import annotations

import math

import pytest
import torch

from lifexport.functional import (
    SURROGATES,
    LIFFeedForwardState,
    LIFParameters,
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIFRefracState,
    LIFState,
    lif_refrac_feed_forward_step,
    lif_refrac_step,
    threshold,
)

TOL = dict(rel=1e-12, abs=1e-12)  # pytest.approx tolerances
DT = 0.001
P = LIFRefracParameters(
    LIFParameters(
        tau_syn_inv=200.0, tau_mem_inv=100.0, v_leak=0.0, v_th=1.0, v_reset=0.0, method="super"
    ),
    rho_reset=5.0,
)


def _run_feed_forward(x: float, v: float, i: float, rho: float, steps: int) -> list[tuple]:
    """Run one float64 feed-forward neuron; return (z, v, i, rho) after each step."""
    f64 = dict(dtype=torch.float64)
    state = LIFRefracFeedForwardState(
        LIFFeedForwardState(torch.tensor([v], **f64), torch.tensor([i], **f64)),
        torch.tensor([rho], **f64),
    )
    out = []
    for _ in range(steps):
        z, state = lif_refrac_feed_forward_step(torch.tensor([x], **f64), state, P, DT)
        assert z.dtype == state.lif.v.dtype == state.lif.i.dtype == torch.float64
        out.append((z.item(), state.lif.v.item(), state.lif.i.item(), state.rho.item()))
    return out


# Constant input x = 20 from rest (v = i = rho = 0):
# step  rho at start  i_new                  v_dec                       z   v    i_dec      rho
#  1    0             0 + 20 = 20            0 + 0.1*20 = 2.0 > 1        1   0    16         5
#  2    5 (refrac)    16 + 20 = 36           (3.6, not used)             0   0    28.8       4
#  3    4 (refrac)    28.8 + 20 = 48.8       (4.88)                      0   0    39.04      3
#  4    3 (refrac)    39.04 + 20 = 59.04     (5.904)                     0   0    47.232     2
#  5    2 (refrac)    47.232 + 20 = 67.232   (6.7232)                    0   0    53.7856    1
#  6    1 (refrac)    53.7856 + 20 = 73.7856 (7.37856)                   0   0    59.02848   0
#  7    0             59.02848 + 20          0 + 0.1*79.02848            1   0    63.222784  5
#                     = 79.02848             = 7.902848 > 1
#  8    5 (refrac)    63.222784 + 20         (8.3222784)                 0   0    66.5782272 4
#                     = 83.222784
CONSTANT_DRIVE = [
    # (z, v, i, rho) after each step
    (1.0, 0.0, 16.0, 5.0),
    (0.0, 0.0, 28.8, 4.0),
    (0.0, 0.0, 39.04, 3.0),
    (0.0, 0.0, 47.232, 2.0),
    (0.0, 0.0, 53.7856, 1.0),
    (0.0, 0.0, 59.02848, 0.0),
    (1.0, 0.0, 63.222784, 5.0),
    (0.0, 0.0, 66.5782272, 4.0),
]


def test_constant_drive_trajectory_matches_hand_values() -> None:
    got = _run_feed_forward(x=20.0, v=0.0, i=0.0, rho=0.0, steps=len(CONSTANT_DRIVE))
    for step, (g, e) in enumerate(zip(got, CONSTANT_DRIVE, strict=True), start=1):
        assert g == pytest.approx(e, **TOL), f"step {step}"


def test_refractory_counter_counts_down_after_a_spike() -> None:
    got = _run_feed_forward(x=20.0, v=0.0, i=0.0, rho=0.0, steps=8)
    rho = [r for *_, r in got]
    z = [zz for zz, *_ in got]
    # the spike at step 1 sets rho = 5; it then counts 4, 3, 2, 1, 0 on successive steps
    assert rho[:6] == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    # spikes are silenced while refractory (steps 2..6) although v_dec > v_th there
    assert z[1:6] == [0.0] * 5
    # the counter reached 0 after step 6, so step 7 spikes again and re-arms the counter
    assert z[6] == 1.0 and rho[6] == 5.0


def test_current_keeps_integrating_while_refractory() -> None:
    got = _run_feed_forward(x=20.0, v=0.0, i=0.0, rho=0.0, steps=6)
    i = [ii for _, _, ii, _ in got]
    # i_{k+1} = 0.8 * (i_k + 20) every step, refractory or not
    for before, after in zip(i[:-1], i[1:], strict=True):
        assert after == pytest.approx(0.8 * (before + 20.0), **TOL)
    assert i == pytest.approx([16.0, 28.8, 39.04, 47.232, 53.7856, 59.02848], **TOL)


# Refractory from a non-rest potential: v = 0.5, i = 0, rho = 2, constant x = 6.
# step  rho at start  i_new              v_dec                              z  v    i_dec   rho
#  1    2 (refrac)    0 + 6 = 6          0.5 + 0.1*(6 - 0.5) = 1.05 > 1     0  0.5  4.8     1
#                                        (silenced; v held at 0.5)
#  2    1 (refrac)    4.8 + 6 = 10.8     0.5 + 0.1*(10.8 - 0.5) = 1.53 > 1  0  0.5  8.64    0
#  3    0             8.64 + 6 = 14.64   0.5 + 0.1*(14.64 - 0.5) = 1.914    1  0    11.712  5
#  4    5 (refrac)    11.712 + 6         (1.7712)                           0  0    14.1696 4
#                     = 17.712
HELD_POTENTIAL = [
    (0.0, 0.5, 4.8, 1.0),
    (0.0, 0.5, 8.64, 0.0),
    (1.0, 0.0, 11.712, 5.0),
    (0.0, 0.0, 14.1696, 4.0),
]


def test_potential_is_frozen_while_refractory() -> None:
    got = _run_feed_forward(x=6.0, v=0.5, i=0.0, rho=2.0, steps=len(HELD_POTENTIAL))
    for step, (g, e) in enumerate(zip(got, HELD_POTENTIAL, strict=True), start=1):
        assert g == pytest.approx(e, **TOL), f"step {step}"
    # frozen means bit-identical to the pre-step value, not merely close
    assert got[0][1] == 0.5 and got[1][1] == 0.5


# Recurrent step, 2 neurons, 2 input features, constant input x = (1, 1):
#   W_in  = [[20, 0], [0, 2]]    (neuron 0 driven hard, neuron 1 weakly)
#   W_rec = [[0, -1], [5, 0]]    (row = target, column = source: 0 -> 1 excites by 5,
#                                 1 -> 0 inhibits by 1)
# i_jump = i + W_in x + W_rec z_prev
# step 1 (from rest): i_jump = (20, 2)
#   v_dec = (2.0, 0.2)  -> z = (1, 0), v = (0, 0.2), i = (16, 1.6), rho = (5, 0)
# step 2: i_jump = (16 + 20 + 0, 1.6 + 2 + 5*1) = (36, 8.6)
#   neuron 0 refractory: v held at 0, z = 0, rho 5 -> 4
#   neuron 1: v_dec = 0.2 + 0.1*(8.6 - 0.2) = 1.04 > 1 -> z = 1, v = 0, rho = 5
#   i = (28.8, 6.88)
# step 3: i_jump = (28.8 + 20 + (-1)*1, 6.88 + 2 + 5*0) = (47.8, 8.88)
#   both refractory: v held at (0, 0), z = (0, 0), rho = (3, 4)
#   i = (38.24, 7.104)
RECURRENT = [
    # (z, v, i, rho) after each step
    ((1.0, 0.0), (0.0, 0.2), (16.0, 1.6), (5.0, 0.0)),
    ((0.0, 1.0), (0.0, 0.0), (28.8, 6.88), (4.0, 5.0)),
    ((0.0, 0.0), (0.0, 0.0), (38.24, 7.104), (3.0, 4.0)),
]


def test_recurrent_step_matches_hand_values() -> None:
    f64 = dict(dtype=torch.float64)
    w_in = torch.tensor([[20.0, 0.0], [0.0, 2.0]], **f64)
    w_rec = torch.tensor([[0.0, -1.0], [5.0, 0.0]], **f64)
    x = torch.ones(1, 2, **f64)
    state = LIFRefracState(LIFState(*torch.zeros(3, 1, 2, **f64)), torch.zeros(1, 2, **f64))
    for step, (z_e, v_e, i_e, rho_e) in enumerate(RECURRENT, start=1):
        z, state = lif_refrac_step(x, state, w_in, w_rec, P, DT)
        assert z.dtype == torch.float64 and z.shape == (1, 2)
        assert z[0].tolist() == list(z_e), f"step {step}"
        assert torch.equal(state.lif.z, z), f"step {step}"
        assert state.lif.v[0].tolist() == pytest.approx(v_e, **TOL), f"step {step}"
        assert state.lif.i[0].tolist() == pytest.approx(i_e, **TOL), f"step {step}"
        assert state.rho[0].tolist() == list(rho_e), f"step {step}"


def _closed_form(method: str, x: float, alpha: float) -> float:
    """The surrogate derivative dz/dx, straight from the formula, with the math module."""
    if method == "super":
        return 1.0 / (alpha * abs(x) + 1.0) ** 2
    if method == "triangle":
        return alpha * max(0.0, 1.0 - abs(x))
    if method == "tanh":
        return 1.0 - math.tanh(alpha * x) ** 2
    if method == "circ":
        # Norse's (-(x^2 / (2 r^1.5)) + 1 / (2 r^0.5)) * 2 alpha with r = alpha^2 + x^2
        return alpha**3 / (alpha**2 + x**2) ** 1.5
    if method == "heavi_erfc":
        return 2.0 * math.exp(-((alpha * x) ** 2)) / math.sqrt(math.pi)
    raise AssertionError(method)


def _grad(method: str, x: float, alpha: float) -> tuple[float, float]:
    """(forward, dz/dx) of ``threshold`` at one float64 point, through autograd."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    z = threshold(xt, method, alpha)
    (g,) = torch.autograd.grad(z, xt)
    return z.item(), g.item()


@pytest.mark.parametrize("method", list(SURROGATES))
@pytest.mark.parametrize("alpha", [1.0, 2.5])
@pytest.mark.parametrize("x", [-0.5, 0.0, 0.3])
def test_surrogate_gradient_matches_closed_form(method: str, alpha: float, x: float) -> None:
    z, g = _grad(method, x, alpha)
    assert z == (1.0 if x > 0 else 0.0)
    assert g == pytest.approx(_closed_form(method, x, alpha), **TOL)


# A few of the closed forms worked out to literals, as a check on _closed_form itself.
@pytest.mark.parametrize(
    ("method", "x", "alpha", "expected"),
    [
        ("super", -0.5, 1.0, 0.4444444444444444),  # 1 / 1.5**2 = 4/9
        ("super", 0.3, 2.5, 0.32653061224489793),  # 1 / 1.75**2 = 16/49
        ("triangle", 0.3, 2.5, 1.75),  # 2.5 * (1 - 0.3)
        ("triangle", 0.0, 2.5, 2.5),  # alpha at the peak
        ("tanh", 0.0, 2.5, 1.0),  # 1 - tanh(0)**2
        ("circ", 0.0, 1.0, 1.0),  # 1 / 1**1.5
        ("circ", 0.0, 2.5, 1.0),  # 2.5**3 / 6.25**1.5 = 1
        ("heavi_erfc", 0.0, 1.0, 1.1283791670955126),  # 2 / sqrt(pi)
    ],
)
def test_surrogate_gradient_literals(method: str, x: float, alpha: float, expected: float) -> None:
    assert _closed_form(method, x, alpha) == pytest.approx(expected, **TOL)
    assert _grad(method, x, alpha)[1] == pytest.approx(expected, **TOL)


def test_heaviside_has_no_grad_fn() -> None:
    x = torch.tensor([-0.5, 0.0, 0.3], dtype=torch.float64, requires_grad=True)
    z = threshold(x, "heaviside", 1.0)
    assert z.grad_fn is None and not z.requires_grad
    assert z.tolist() == [0.0, 0.0, 1.0]


# Gradient edge cases, from the closed forms: at x = +-inf every surrogate derivative tends to 0
# (super 1/inf, triangle alpha*max(0, -inf), tanh 1 - 1, circ alpha^3/inf, heavi_erfc 2e^-inf);
# at NaN it is NaN.
@pytest.mark.parametrize("method", list(SURROGATES))
@pytest.mark.parametrize("alpha", [1.0, 2.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    ("x", "forward", "grad"),
    [(math.inf, 1.0, 0.0), (-math.inf, 0.0, 0.0), (math.nan, 0.0, math.nan)],
    ids=["+inf", "-inf", "nan"],
)
def test_surrogate_gradient_edge_cases(
    method: str, alpha: float, dtype: torch.dtype, x: float, forward: float, grad: float
) -> None:
    xt = torch.tensor([x], dtype=dtype, requires_grad=True)
    z = threshold(xt, method, alpha)
    (g,) = torch.autograd.grad(z.sum(), xt)
    assert z.dtype == g.dtype == dtype
    assert z.item() == forward
    if math.isnan(grad):
        assert math.isnan(g.item()), f"got {g.item()}"
    else:
        assert g.item() == grad, f"got {g.item()}"


@pytest.mark.parametrize("method", ["heaviside", *SURROGATES])
def test_forward_of_nan_is_zero(method: str) -> None:
    x = torch.tensor([math.nan, -math.nan], dtype=torch.float32)
    assert threshold(x, method, 1.0).tolist() == [0.0, 0.0]
