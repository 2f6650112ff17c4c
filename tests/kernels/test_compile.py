"""The fused ops under ``torch.compile(fullgraph=True)``: no graph break, one graph for every
T, the same values as eager; exports trace the step loop whatever the backend."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import AotEagerAndRecordGraphs

import lifexport
from tests.kernels._reference import initial_state, inputs, layer

pytestmark = pytest.mark.usefixtures("interpreter")


def _loss(y, state):
    return (y * torch.linspace(-1, 1, y.shape[-1])).sum() + state.lif.v.sum()


# torch 2.13's recording test backend returns an unboxed function, and warns about it.
@pytest.mark.filterwarnings("ignore:Your compiler for AOTAutograd:UserWarning")
@pytest.mark.parametrize("t", (7, 1, 40))
def test_compiled_graph_holds_the_ops_and_serves_every_t(t):
    torch._dynamo.reset()
    eager = layer("lif_refrac", 9, "super", backend="triton")
    graphs = AotEagerAndRecordGraphs()
    compiled = torch.compile(eager, fullgraph=True, backend=graphs)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        x = inputs(5, 2, 9).requires_grad_()
        torch._dynamo.mark_dynamic(x, 0)
        _loss(*compiled(x)).backward()
        with torch.compiler.set_stance("fail_on_recompile"):
            x = inputs(t, 2, 9, seed=t).requires_grad_()
            z, state = compiled(x)
            _loss(z, state).backward()
    assert "lifexport.lif_refrac_sequence.default" in graphs.fw_graphs[0].code
    assert "lifexport.lif_refrac_sequence_backward.default" in graphs.bw_graphs[0].code
    assert "scan" not in graphs.fw_graphs[0].code
    x_ref = x.detach().clone().requires_grad_()
    eager.zero_grad()
    z_ref, state_ref = eager(x_ref)
    _loss(z_ref, state_ref).backward()
    assert torch.equal(z, z_ref)
    assert torch.equal(x.grad, x_ref.grad)


def test_inductor_compile_equals_eager():
    torch._dynamo.reset()
    eager = layer("lif", 11, "tanh", backend="triton")
    compiled = lifexport.compile(eager)
    for t in (3, 8):  # the second T runs the first graph
        with torch.compiler.set_stance("fail_on_recompile" if t == 8 else "default"):
            x = inputs(t, 2, 11, seed=t)
            state = initial_state(eager, x)
            z, s = compiled(x, state)
        z_ref, s_ref = eager(x, state)
        assert torch.equal(z, z_ref)
        torch.testing.assert_close(s.v, s_ref.v, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ("triton", "auto"))
def test_export_traces_the_step_loop(backend):
    net = layer("lif_refrac", 4, "super", backend=backend, trainable=False)
    program = torch.export.export(net, (inputs(6, 2, 4),))
    targets = {str(node.target) for node in program.graph.nodes}
    assert not any("_sequence" in target for target in targets)
    assert any("scan" in target for target in targets)
