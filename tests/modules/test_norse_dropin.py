"""Norse drop-in: inputs and states that Norse 1.1.0 accepts give Norse's results here too.

- Recurrent layers take an unbatched sequence ``(T, input_size)`` (and cells one unbatched
  step ``(input_size,)``), as Norse's recurrent modules do.
- A state that broadcasts to the neurons' shape (a scalar ``v``, a per-neuron ``rho``) is
  accepted and expanded, as Norse's arithmetic broadcasts it; the returned state is full-size.

Spikes and states must be bit-equal to Norse's over many steps.
"""

from __future__ import annotations

import norse.torch as norse
import norse.torch.functional.leaky_integrator as norse_li
import norse.torch.functional.lif as norse_lif
import norse.torch.functional.lif_refrac as norse_refrac
import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport as lx
from lifexport.functional import (
    LIFFeedForwardState,
    LIFRefracFeedForwardState,
    LIFRefracState,
    LIFState,
    LIState,
)

T, FEATURES, HIDDEN = 50, 5, 7
pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same(ours, theirs) -> None:
    (z, state), (n_z, n_state) = ours, theirs
    assert z.shape == n_z.shape
    assert torch.equal(z, n_z)
    leaves, n_leaves = tree_leaves(state), tree_leaves(n_state)
    assert len(leaves) == len(n_leaves)
    for a, b in zip(leaves, n_leaves):
        assert a.shape == b.shape
        assert torch.equal(a, b)


def recurrent_pair(kind: str):
    """A lifexport recurrent sequence layer and Norse's, with the same weights."""
    gen = torch.Generator().manual_seed(1)
    w_in = 2.0 * torch.rand(HIDDEN, FEATURES, generator=gen)
    w_rec = 0.5 * torch.randn(HIDDEN, HIDDEN, generator=gen)
    if kind == "LIFRefracRecurrent":
        ours = lx.LIFRefracRecurrent(FEATURES, HIDDEN, input_weights=w_in, recurrent_weights=w_rec)
        theirs = norse.LIFRefracRecurrent(
            FEATURES, HIDDEN, input_weights=w_in.clone(), recurrent_weights=w_rec.clone()
        )
    else:
        ours = lx.LIFRecurrent(FEATURES, HIDDEN, input_weights=w_in, recurrent_weights=w_rec)
        theirs = norse.LIFRecurrent(
            FEATURES, HIDDEN, input_weights=w_in.clone(), recurrent_weights=w_rec.clone()
        )
    return ours, theirs


@pytest.mark.parametrize("kind", ["LIFRefracRecurrent", "LIFRecurrent"])
def test_recurrent_layer_takes_an_unbatched_sequence_as_norse(kind: str) -> None:
    ours, theirs = recurrent_pair(kind)
    xs = 3.0 * torch.rand(T, FEATURES, generator=torch.Generator().manual_seed(2))
    z, state = ours(xs)
    assert z.shape == (T, HIDDEN)
    assert 0 < z.sum() < z.numel()
    assert_same((z, state), theirs(xs))
    # and on from the final state, again as Norse
    assert_same(ours(xs, state), theirs(xs, state))


@pytest.mark.parametrize("kind", ["LIFRefracRecurrent", "LIFRecurrent"])
def test_unbatched_sequence_equals_a_batch_of_one(kind: str) -> None:
    ours, _ = recurrent_pair(kind)
    xs = 3.0 * torch.rand(T, FEATURES, generator=torch.Generator().manual_seed(3))
    z, state = ours(xs)
    z1, state1 = ours(xs[:, None])
    assert torch.equal(z, z1[:, 0])
    for a, b in zip(tree_leaves(state), tree_leaves(state1)):
        assert torch.equal(a, b[0])


def test_recurrent_cell_takes_an_unbatched_step() -> None:
    ours = lx.LIFRefracRecurrentCell(FEATURES, HIDDEN)
    x = torch.full((FEATURES,), 3.0)
    z, state = ours(x)
    z1, state1 = ours(x[None])
    assert z.shape == (HIDDEN,)
    assert torch.equal(z, z1[0])
    assert torch.equal(state.lif.v, state1.lif.v[0])


# -- states that broadcast ------------------------------------------------------------------

B, N = 3, 4


def ff_refrac_states(v, i, rho):
    return (
        LIFRefracFeedForwardState(LIFFeedForwardState(v, i), rho),
        norse_refrac.LIFRefracFeedForwardState(norse_lif.LIFFeedForwardState(v, i), rho),
    )


BROADCAST_STATES = {
    "scalar v": lambda: (torch.tensor(0.9), torch.zeros(B, N), torch.zeros(B, N)),
    "per-neuron rho": lambda: (torch.zeros(B, N), torch.zeros(B, N), torch.tensor([0.0, 2, 0, 3])),
    "all scalars": lambda: (torch.tensor(0.5), torch.tensor(0.2), torch.tensor(0.0)),
}


@pytest.mark.parametrize("name", BROADCAST_STATES)
def test_lif_refrac_cell_broadcasts_a_state_as_norse(name: str) -> None:
    ours, theirs = ff_refrac_states(*BROADCAST_STATES[name]())
    xs = 6.0 * torch.rand(T, B, N, generator=torch.Generator().manual_seed(4))
    cell, n_cell = lx.LIFRefracCell(), norse.LIFRefracCell()
    state, n_state = ours, theirs
    for x in xs:  # the whole trajectory, from the broadcast state on
        z, state = cell(x, state)
        n_z, n_state = n_cell(x, n_state)
        assert_same((z, state), (n_z, n_state))


@pytest.mark.parametrize("name", BROADCAST_STATES)
def test_lif_refrac_sequence_broadcasts_a_state_as_a_loop_over_norse(name: str) -> None:
    ours, theirs = ff_refrac_states(*BROADCAST_STATES[name]())
    xs = 6.0 * torch.rand(T, B, N, generator=torch.Generator().manual_seed(5))
    zs, final = lx.LIFRefrac()(xs, ours)
    n_cell, n_state, n_zs = norse.LIFRefracCell(), theirs, []
    for x in xs:
        n_z, n_state = n_cell(x, n_state)
        n_zs.append(n_z)
    assert_same((zs, final), (torch.stack(n_zs), n_state))


def test_recurrent_and_li_layers_broadcast_a_scalar_v_as_norse() -> None:
    gen = torch.Generator().manual_seed(6)
    xs = 3.0 * torch.rand(T, B, FEATURES, generator=gen)
    ours, theirs = recurrent_pair("LIFRefracRecurrent")
    zeros = torch.zeros(B, HIDDEN)
    v = torch.tensor(0.7)
    state = LIFRefracState(LIFState(zeros, v, zeros), zeros)
    n_state = norse_refrac.LIFRefracState(norse_lif.LIFState(zeros, v, zeros), zeros)
    assert_same(ours(xs, state), theirs(xs, n_state))
    li_state = LIState(v, torch.zeros(B, FEATURES))
    n_li_state = norse_li.LIState(v, torch.zeros(B, FEATURES))
    n_li, n_s, n_vs = norse.LICell(), n_li_state, []
    for x in xs:
        n_v, n_s = n_li(x, n_s)
        n_vs.append(n_v)
    assert_same(lx.LI()(xs, li_state), (torch.stack(n_vs), n_s))


def test_a_state_that_does_not_broadcast_keeps_its_error() -> None:
    state, _ = ff_refrac_states(torch.zeros(2, N), torch.zeros(B, N), torch.zeros(B, N))
    expected = r"state.lif.v must have shape \(3, 4\) to match the input \(or broadcast"
    with pytest.raises(ValueError, match=expected):
        lx.LIFRefrac()(torch.rand(T, B, N), state)
    with pytest.raises(ValueError, match=expected):
        lx.LIFRefracCell()(torch.rand(B, N), state)
