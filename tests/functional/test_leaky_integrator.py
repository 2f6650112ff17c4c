"""The leaky integrator against Norse 1.1.0 and a hand computation."""

from __future__ import annotations

import norse.torch.functional.leaky_integrator as norse_li
import pytest
import torch

import lifexport.functional as lx

T = 200


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_li_steps_match_norse(dtype):
    gen = torch.Generator().manual_seed(0)
    neurons = (4, 6)
    fields = dict(
        tau_syn_inv=(150 + 100 * torch.rand(6, generator=gen, dtype=dtype)).requires_grad_(),
        tau_mem_inv=torch.tensor(90.0, dtype=dtype, requires_grad=True),
        v_leak=(0.1 * torch.rand(6, generator=gen, dtype=dtype)).requires_grad_(),
    )
    xs = torch.randn((T, *neurons), generator=gen, dtype=dtype, requires_grad=True)
    w = torch.randn(6, 6, generator=gen, dtype=dtype, requires_grad=True)
    v0 = torch.rand(neurons, generator=gen, dtype=dtype, requires_grad=True)
    leaves = [xs, w, v0, *fields.values()]
    for ours_step, norse_step, kwargs in (
        (lx.li_feed_forward_step, norse_li.li_feed_forward_step, {}),
        (lx.li_step, norse_li.li_step, {"input_weights": w}),
    ):
        outs = []
        for step, params, state_cls in (
            (ours_step, lx.LIParameters(**fields), lx.LIState),
            (norse_step, norse_li.LIParameters(**fields), norse_li.LIState),
        ):
            state = state_cls(v0, torch.zeros(neurons, dtype=dtype))
            vs = []
            for x in xs:
                v, state = step(x, state, p=params, **kwargs)
                vs.append(v)
            outs.append((torch.stack(vs), state))
        (ours, ours_state), (theirs, theirs_state) = outs
        assert torch.equal(ours, theirs)
        assert torch.equal(ours_state.i, theirs_state.i)
        grads = torch.autograd.grad(ours.sum(), leaves, allow_unused=True)
        n_grads = torch.autograd.grad(theirs.sum(), leaves, allow_unused=True)
        for g, ng in zip(grads, n_grads):
            assert (g is None) == (ng is None)
            if g is not None:
                torch.testing.assert_close(g, ng)


def test_li_hand_computed():
    """x = 1 each step from rest: i' = i + 1, v' = v + 0.1 (i' - v), i'' = 0.8 i'."""
    state = lx.LIState(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    expected_v = [0.1, 0.1 + 0.1 * (1.8 - 0.1)]
    for v_e in expected_v:
        v, state = lx.li_feed_forward_step(torch.ones(1, dtype=torch.float64), state)
        assert v.item() == pytest.approx(v_e, abs=1e-12)
    assert state.i.item() == pytest.approx(0.8 * 1.8, abs=1e-12)


def test_li_bad_input():
    state = lx.LIState(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"state.v must have shape \(2,\).*got \(3,\)"):
        lx.li_feed_forward_step(torch.zeros(2), state)
    with pytest.raises(ValueError, match=r"input_weights must have shape \(hidden, 2\)"):
        lx.li_step(torch.zeros(1, 2), lx.LIState(*torch.zeros(2, 1, 3)), torch.zeros(3, 4))
