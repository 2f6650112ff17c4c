"""from_norse: converted Norse 1.1.0 modules compute Norse's spikes and states over 200 steps."""

from __future__ import annotations

import norse.torch as norse
import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport

T, B, F, H = 200, 3, 5, 7
REFRAC = norse.LIFRefracParameters(
    norse.LIFParameters(method="super", alpha=torch.tensor(1.0), v_th=torch.tensor(0.8)),
    rho_reset=torch.tensor(3.0),
)
LIF = norse.LIFParameters(method="super", alpha=torch.tensor(1.0), v_th=torch.tensor(0.8))


def excitatory(n_in, n_out):
    layer = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.uniform_(0.0, 0.6)
    return layer


CASES = {  # name: (builder, input shape, time-major sequence module?)
    "LIFRefracCell": (lambda: norse.LIFRefracCell(REFRAC), (B, F), False),
    "LIFRefracRecurrentCell": (lambda: norse.LIFRefracRecurrentCell(F, H, REFRAC), (B, F), False),
    "LIFRefracRecurrent": (lambda: norse.LIFRefracRecurrent(F, H, REFRAC), (T, B, F), True),
    "LIFCell": (lambda: norse.LIFCell(LIF), (B, F), False),
    "LIFRecurrentCell": (lambda: norse.LIFRecurrentCell(F, H, LIF, autapses=True), (B, F), False),
    "LICell": (lambda: norse.LICell(), (B, F), False),
    "SequentialState": (
        lambda: norse.SequentialState(
            excitatory(F, H),
            norse.LIFRefracCell(REFRAC),
            excitatory(H, H),
            norse.LIFRefracRecurrentCell(H, 4, REFRAC),
            torch.nn.Linear(4, 2),
            norse.LICell(),
        ),
        (B, F),
        False,
    ),
}


def run_steps(module, xs):
    """A Python loop of single steps; returns stacked outputs and every step's state leaves."""
    state, outs, states = None, [], []
    for x in xs:
        y, state = module(x, state)
        outs.append(y)
        states.append([t for t in tree_leaves(state) if t is not None])
    return torch.stack(outs), states


@pytest.mark.parametrize("name", list(CASES))
def test_converted_module_matches_norse(name):
    build, shape, sequence = CASES[name]
    torch.manual_seed(0)
    theirs = build()
    ours = lifexport.from_norse(theirs)
    gen = torch.Generator().manual_seed(1)
    steps = shape if sequence else (T, *shape)
    xs = 4 * torch.rand(steps, generator=gen)
    if sequence:
        y_theirs, s_theirs = theirs(xs)
        y_ours, s_ours = ours(xs)
        assert torch.equal(y_ours, y_theirs)
        for a, b in zip(tree_leaves(s_ours), tree_leaves(s_theirs)):
            assert torch.equal(a, b.expand_as(a))
    else:
        y_theirs, states_theirs = run_steps(theirs, xs)
        y_ours, states_ours = run_steps(ours, xs)
        assert torch.equal(y_ours, y_theirs)
        for t, (a, b) in enumerate(zip(states_ours, states_theirs)):
            for u, v in zip(a, b):
                assert torch.equal(u, v.expand_as(u)), f"state differs at step {t}"
    assert y_theirs.abs().sum() > 0, "all-zero output: the comparison would prove little"


def test_unsupported_norse_module_is_named():
    with pytest.raises(TypeError, match="LSNNCell has no lifexport equivalent"):
        lifexport.from_norse(norse.LSNNCell())
    stack = norse.SequentialState(torch.nn.Linear(2, 2), norse.LSNNCell())
    with pytest.raises(TypeError, match="layer 1 of the SequentialState: LSNNCell"):
        lifexport.from_norse(stack)
