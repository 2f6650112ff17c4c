"""The steps under ``torch.compile(fullgraph=True)``: no graph break, fused spikes, eager parity.

Each compiled function is built once per module (compiling costs seconds on 2 cores).
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch._inductor.utils import run_and_get_code
from torch.utils._pytree import tree_leaves

import lifexport.functional as lx

B, N, FEATURES, STEPS = 4, 16, 8, 30


def ff_params(dtype):
    gen = torch.Generator().manual_seed(0)
    v_th = (0.9 + 0.2 * torch.rand(N, generator=gen, dtype=dtype)).requires_grad_()
    tau_mem_inv = torch.tensor(100.0, dtype=dtype, requires_grad=True)
    return lx.LIFRefracParameters(lx.LIFParameters(tau_mem_inv=tau_mem_inv, v_th=v_th, alpha=2.0))


def ff_trajectory(step, xs, p):
    zero = torch.zeros_like(xs[0])
    state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(zero, zero), zero)
    spikes = []
    for x in xs:
        z, state = step(x, state, p)
        spikes.append(z)
    return torch.stack(spikes), state


def rec_trajectory(step, xs, w_in, w_rec, p):
    zero = xs.new_zeros(xs.shape[1], w_in.shape[0])
    state = lx.LIFRefracState(lx.LIFState(zero, zero, zero), zero)
    spikes = []
    for x in xs:
        z, state = step(x, state, w_in, w_rec, p)
        spikes.append(z)
    return torch.stack(spikes), state


@functools.cache
def compiled(fn):
    return torch.compile(fn, fullgraph=True)


def grads(spikes, state, leaves):
    gen = torch.Generator().manual_seed(1)
    loss = sum(
        (t * torch.rand(t.shape, generator=gen)).sum() for t in [spikes, *tree_leaves(state)]
    )
    return torch.autograd.grad(loss, leaves)


def test_feed_forward_step_has_no_graph_break():
    xs = 3 * torch.rand(2, B, N)
    p = ff_params(torch.float32)
    zero = torch.zeros(B, N)
    state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(zero, zero), zero)
    explanation = torch._dynamo.explain(lx.lif_refrac_feed_forward_step)(xs[0], state, p)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_recurrent_step_has_no_graph_break():
    zero = torch.zeros(B, N)
    state = lx.LIFRefracState(lx.LIFState(zero, zero, zero), zero)
    explanation = torch._dynamo.explain(lx.lif_refrac_step)(
        torch.rand(B, FEATURES), state, torch.rand(N, FEATURES), torch.rand(N, N)
    )
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_feed_forward_step_equals_eager_forward_and_backward():
    xs = (4 * torch.rand(STEPS, B, N, generator=torch.Generator().manual_seed(2))).requires_grad_()
    p = ff_params(torch.float32)
    leaves = [xs, p.lif.v_th, p.lif.tau_mem_inv]

    z_eager, s_eager = ff_trajectory(lx.lif_refrac_feed_forward_step, xs, p)
    z_comp, s_comp = ff_trajectory(compiled(lx.lif_refrac_feed_forward_step), xs, p)
    assert z_eager.sum() > 0 and (s_eager.rho > 0).any()
    assert torch.equal(z_comp, z_eager)
    for a, b in zip(tree_leaves(s_comp), tree_leaves(s_eager)):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads(z_comp, s_comp, leaves), grads(z_eager, s_eager, leaves)):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_compiled_recurrent_step_equals_eager_forward_and_backward():
    gen = torch.Generator().manual_seed(3)
    xs = (torch.rand(STEPS, B, FEATURES, generator=gen)).requires_grad_()
    w_in = (2 * torch.rand(N, FEATURES, generator=gen)).requires_grad_()
    w_rec = (0.3 * torch.randn(N, N, generator=gen)).requires_grad_()
    p = lx.LIFRefracParameters(lx.LIFParameters(method="triangle", alpha=1.0), rho_reset=3.0)
    leaves = [xs, w_in, w_rec]

    z_eager, s_eager = rec_trajectory(lx.lif_refrac_step, xs, w_in, w_rec, p)
    z_comp, s_comp = rec_trajectory(compiled(lx.lif_refrac_step), xs, w_in, w_rec, p)
    assert z_eager.sum() > 0
    assert torch.equal(z_comp, z_eager)
    for a, b in zip(tree_leaves(s_comp), tree_leaves(s_eager)):
        torch.testing.assert_close(a, b)
    for a, b in zip(grads(z_comp, s_comp, leaves), grads(z_eager, s_eager, leaves)):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def all_surrogates(x):
    return sum(lx.threshold(x - 0.1 * k, m, 1.5) for k, m in enumerate(lx.SURROGATES))


def ff_spikes(x, v, i, rho):
    state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(v, i), rho)
    return lx.lif_refrac_feed_forward_step(x, state)[0]


@pytest.mark.parametrize(
    "fn, shapes",
    [(all_surrogates, [(64,)]), (ff_spikes, [(B, N)] * 4)],
    ids=["all_surrogates", "feed_forward_step"],
)
def test_spike_ops_fuse_into_inductor_kernels(fn, shapes):
    """Inductor lowers the spike ops and their backward to fused elementwise code: neither
    the forward nor the backward program calls a ``lifexport`` op as an opaque kernel."""
    gen = torch.Generator().manual_seed(4)
    inputs = [2 * torch.rand(shape, generator=gen) for shape in shapes]
    if fn is ff_spikes:
        inputs[3].zero_()  # rho = 0: not refractory, so spikes carry gradient
    x = inputs[0].requires_grad_()

    (grad,), codes = run_and_get_code(lambda: torch.autograd.grad(compiled(fn)(*inputs).sum(), x))
    (expected,) = torch.autograd.grad(fn(*inputs).sum(), x)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(grad, expected)
    assert len(codes) == 2, "expected one forward and one backward program"
    for code in codes:
        assert "spike" in code, "the spike should appear in a fused kernel's name"
        assert "torch.ops.lifexport" not in code, "a spike op runs as an opaque call"


def test_export_keeps_one_named_node_per_spike():
    """``torch.export`` keeps the spike as the named custom op (and the refractory mask, which
    is a spike of rho, as a second one), for the ONNX exporter to translate."""

    class Step(torch.nn.Module):
        def forward(self, x, v, i, rho):
            state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(v, i), rho)
            return lx.lif_refrac_feed_forward_step(x, state, lx.LIFRefracParameters())

    ep = torch.export.export(Step(), tuple(torch.rand(4, B, N)))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    # alpha, a Python float, is recorded as a constant (the op that takes it as a float)
    assert targets.count("lifexport.super_spike_attr.default") == 2
    assert not any("lifexport" in t and "super_spike_attr" not in t for t in targets)
    spike = next(n for n in ep.graph.nodes if str(n.target) == "lifexport.super_spike_attr.default")
    assert spike.args[1] == 100.0


def test_floats_made_symbolic_by_dynamo_are_accepted():
    """torch 2.13 (specialize_float=False): a float argument that changes between calls of a
    compiled function becomes a SymFloat on recompile; the argument checks must let it through
    and the results must still follow each call's value."""
    fn = torch.compile(lx.lif_refrac_feed_forward_step, fullgraph=True)
    x = torch.full((2, 3), 12.0)
    zero = torch.zeros(2, 3)
    state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(zero, zero), zero)
    for dt in (0.001, 0.0005, 0.002):
        p = lx.LIFRefracParameters(lx.LIFParameters(alpha=1.0 / dt))
        z, s = fn(x, state, p, dt)
        z_eager, s_eager = lx.lif_refrac_feed_forward_step(x, state, p, dt)
        assert torch.equal(z, z_eager)
        torch.testing.assert_close(s.lif.v, s_eager.lif.v)
