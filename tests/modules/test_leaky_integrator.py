"""LICell and LI against Norse 1.1.0's LICell."""

from __future__ import annotations

import norse.torch as norse
import torch

import lifexport


def test_licell_and_li_match_norse_licell_over_200_steps():
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(200, 4, 5, generator=gen, requires_grad=True)
    p = lifexport.functional.LIParameters(
        tau_syn_inv=torch.full((5,), 180.0),
        tau_mem_inv=torch.tensor(90.0),
        v_leak=torch.tensor(0.1),
    )
    theirs_cell = norse.LICell(norse.LIParameters(*p))
    ours_cell, ours_seq = lifexport.LICell(p), lifexport.LI(p)

    state, theirs = None, []
    for x in xs:
        v, state = theirs_cell(x, state)
        theirs.append(v)
    theirs = torch.stack(theirs)
    state, ours = None, []
    for x in xs:
        v, state = ours_cell(x, state)
        ours.append(v)
    ours = torch.stack(ours)
    seq, seq_state = ours_seq(xs)

    assert torch.equal(ours, theirs)
    assert torch.equal(seq, theirs)
    assert torch.equal(seq_state.i, state.i)
    (g,) = torch.autograd.grad((theirs * torch.linspace(0, 1, 5)).sum(), xs)
    (g_seq,) = torch.autograd.grad((seq * torch.linspace(0, 1, 5)).sum(), xs)
    torch.testing.assert_close(g_seq, g)
