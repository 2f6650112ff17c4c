"""Property tests (hypothesis) of the LIF-refrac steps and of the surrogate spike thresholds.

Shapes (1 to 4 dimensions), dtypes, parameters (numbers or per-neuron tensors), states and
inputs are drawn at random; each test states one invariant that must hold for all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from lifexport.functional import (
    METHODS,
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

DTYPES = [torch.float32, torch.float64]
PROPERTY = settings(deadline=None, max_examples=50)
KINDS = ["feed_forward", "recurrent"]


@dataclass
class Case:
    """One random run of a LIF-refrac step."""

    recurrent: bool
    shape: tuple[int, ...]  # neuron shape (*batch, hidden); state tensors have this shape
    dtype: torch.dtype
    p: LIFRefracParameters
    dt: float
    xs: Tensor  # (T, *shape) currents, or (T, *batch, features) spikes when recurrent
    state: LIFRefracFeedForwardState | LIFRefracState
    rho_reset: Tensor  # p.rho_reset broadcast to ``shape``
    input_weights: Tensor | None = None  # (hidden, features)
    recurrent_weights: Tensor | None = None  # (hidden, hidden)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        if self.recurrent:
            return lif_refrac_step(
                x, state, self.input_weights, self.recurrent_weights, self.p, self.dt
            )
        return lif_refrac_feed_forward_step(x, state, self.p, self.dt)

    def trajectory(self) -> Iterator[tuple[Any, Tensor, Any]]:
        """``(state before, spikes, state after)`` of every step."""
        state = self.state
        for x in self.xs:
            z, new = self.step(x, state)
            yield state, z, new
            state = new


@st.composite
def refrac_cases(draw: st.DrawFn, recurrent: bool, min_dims: int = 1) -> Case:
    """A random shape, dtype, parameter set, initial state and input sequence.

    Parameters are Python numbers or per-neuron tensors of the trailing shape ``shape[1:]``.
    Tensor values come from a drawn seed (cheap for hypothesis to generate); the structure
    (shapes, which parameters are tensors, scalar values) is drawn directly so it shrinks.
    In the recurrent case the inputs and spikes are 0/1 and the weights multiples of 1/4, so
    every matrix product is exact whatever the summation order.
    """
    dims = draw(st.integers(min_dims, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=dims, max_size=dims)))
    dtype = draw(st.sampled_from(DTYPES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    trailing = shape[1:]

    def uniform(size: tuple[int, ...], lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=gen, dtype=dtype)

    def param(lo: float, hi: float) -> float | Tensor:
        per_neuron = draw(st.booleans())
        return uniform(trailing, lo, hi) if per_neuron else draw(st.floats(lo, hi))

    lif = LIFParameters(
        tau_syn_inv=param(10.0, 500.0),
        tau_mem_inv=param(10.0, 500.0),
        v_leak=param(-0.5, 0.5),
        v_th=param(0.1, 2.0),
        v_reset=param(-0.5, 0.5),
        method=draw(st.sampled_from(METHODS)),
        alpha=draw(st.floats(0.1, 100.0)),
    )
    if draw(st.booleans()):
        rho_reset: int | Tensor = torch.randint(1, 11, trailing, generator=gen).to(dtype)
    else:
        rho_reset = draw(st.integers(1, 10))
    rho_full = torch.as_tensor(rho_reset, dtype=dtype).expand(shape)

    # integer counters in [0, rho_reset], half of the neurons starting non-refractory
    rho = torch.floor(uniform(shape, 0.0, 1.0) * (rho_full + 1)).minimum(rho_full)  # (*shape)
    rho = torch.where(uniform(shape, 0.0, 1.0) < 0.5, torch.zeros_like(rho), rho)
    v = uniform(shape, -1.0, 2.0)
    i = uniform(shape, -10.0, 30.0)
    steps = draw(st.integers(1, 6))
    dt = draw(st.floats(1e-4, 2e-3))
    p = LIFRefracParameters(lif, rho_reset)

    if not recurrent:
        xs = uniform((steps, *shape), -20.0, 60.0)  # (T, *shape)
        state = LIFRefracFeedForwardState(LIFFeedForwardState(v, i), rho)
        return Case(False, shape, dtype, p, dt, xs, state, rho_full)

    hidden, features = shape[-1], draw(st.integers(1, 4))
    xs = (uniform((steps, *shape[:-1], features), 0.0, 1.0) < 0.5).to(dtype)  # (T, *b, F)
    z = (uniform(shape, 0.0, 1.0) < 0.3).to(dtype)
    w_in = torch.randint(-16, 33, (hidden, features), generator=gen).to(dtype) / 4
    w_rec = torch.randint(-16, 33, (hidden, hidden), generator=gen).to(dtype) / 4
    state = LIFRefracState(LIFState(z, v, i), rho)
    return Case(True, shape, dtype, p, dt, xs, state, rho_full, w_in, w_rec)


def _leaves(state: Any) -> list[Tensor]:
    """The state's tensors in field order (``lif`` fields first, then ``rho``)."""
    return [*state.lif, state.rho]


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_outputs_are_binary_spikes_of_the_input_dtype_and_shape(kind: str, data: Any) -> None:
    case = data.draw(refrac_cases(kind == "recurrent"))
    for _, z, new in case.trajectory():
        assert z.dtype == case.dtype and z.shape == case.shape
        assert ((z == 0) | (z == 1)).all()
        for t in _leaves(new):
            assert t.dtype == case.dtype and t.shape == case.shape
        if case.recurrent:
            assert torch.equal(new.lif.z, z)


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_rho_stays_integral_within_zero_and_rho_reset(kind: str, data: Any) -> None:
    case = data.draw(refrac_cases(kind == "recurrent"))
    for old, z, new in case.trajectory():
        rho = new.rho
        assert (rho >= 0).all() and (rho <= case.rho_reset).all()
        assert torch.equal(rho, rho.round())
        # it counts down by exactly one while refractory, and stays 0 otherwise unless a spike
        refractory = old.rho > 0
        assert torch.equal(rho[refractory], old.rho[refractory] - 1)
        quiet = ~refractory & (z == 0)
        assert (rho[quiet] == 0).all()


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_refractory_neurons_do_not_spike_and_keep_their_potential(kind: str, data: Any) -> None:
    case = data.draw(refrac_cases(kind == "recurrent"))
    for old, z, new in case.trajectory():
        refractory = old.rho > 0
        assert (z[refractory] == 0).all()
        assert torch.equal(new.lif.v[refractory], old.lif.v[refractory])


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_a_spike_sets_rho_to_rho_reset(kind: str, data: Any) -> None:
    case = data.draw(refrac_cases(kind == "recurrent"))
    for _, z, new in case.trajectory():
        spiked = z == 1
        assert torch.equal(new.rho[spiked], case.rho_reset[spiked])


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(data=st.data())
def test_results_do_not_depend_on_batch_composition(kind: str, data: Any) -> None:
    # a batch of B rows gives, bit for bit, what each row gives alone (as a batch of one)
    recurrent = kind == "recurrent"
    case = data.draw(refrac_cases(recurrent, min_dims=2 if recurrent else 1))
    batch = list(case.trajectory())
    for b in range(case.shape[0]):
        row = slice(b, b + 1)
        state = type(case.state)(
            type(case.state.lif)(*(t[row] for t in case.state.lif)), case.state.rho[row]
        )
        for t, (x, (_, z_all, new_all)) in enumerate(zip(case.xs, batch, strict=True)):
            z, state = case.step(x[row], state)
            assert torch.equal(z, z_all[row]), f"row {b}, step {t}: spikes"
            for k, (a, c) in enumerate(zip(_leaves(state), _leaves(new_all), strict=True)):
                assert torch.equal(a, c[row]), f"row {b}, step {t}: state leaf {k}"


def _x(dtype: torch.dtype, allow_non_finite: bool) -> st.SearchStrategy[Tensor]:
    width = 32 if dtype == torch.float32 else 64
    floats = st.floats(width=width, allow_nan=allow_non_finite, allow_infinity=allow_non_finite)
    return st.lists(floats, min_size=1, max_size=16).map(lambda xs: torch.tensor(xs, dtype=dtype))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), alpha=st.floats(0.1, 100.0))
def test_surrogate_forward_is_the_heaviside_step(
    method: str, dtype: torch.dtype, data: Any, alpha: float
) -> None:
    x = data.draw(_x(dtype, allow_non_finite=True))  # NaN and +-inf included
    z = threshold(x, method, alpha)
    assert z.dtype == dtype
    assert torch.equal(z, (x > 0).to(dtype))


@pytest.mark.parametrize("method", list(SURROGATES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@PROPERTY
@given(data=st.data(), alpha=st.floats(0.1, 100.0))
def test_surrogate_gradient_is_finite_and_non_negative(
    method: str, dtype: torch.dtype, data: Any, alpha: float
) -> None:
    x = data.draw(_x(dtype, allow_non_finite=False)).requires_grad_()
    (g,) = torch.autograd.grad(threshold(x, method, alpha).sum(), x)
    assert g.dtype == dtype
    assert torch.isfinite(g).all(), f"x={x.tolist()}, grad={g.tolist()}"
    assert (g >= 0).all(), f"x={x.tolist()}, grad={g.tolist()}"
