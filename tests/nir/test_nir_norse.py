"""NIR against Norse 1.1.0's own NIR conversion, on Linear -> LIF -> Linear over 100 steps.

Norse 1.1.0 reads and writes the part of the reference network Linear -> LIF -> Linear -> LI
up to the last Linear: its writer has no mapping for ``LICell`` (the node comes out empty)
and its reader none for ``CubaLI``/``LI``.

Norse 1.1.0's writer has a known bug (norse/norse#411, fixed by #413): it writes time
constants as ``dt / tau_inv`` instead of ``1 / tau_inv`` seconds. Its graphs are read here
after that fix. It also writes ``w_in = 1`` for a ``LIFCell``, whose input jumps the synaptic
current by the full input each step; in NIR's discrete convention (snnTorch's writer, Norse's
own reader) ``w_in = 1`` means a jump of ``dt / tau_syn`` times the input, so such a graph
describes neurons with a 0.2 input gain at the defaults, and every reader (Norse's included)
simulates that. Both differences are tested as such.
"""

from __future__ import annotations

import nir
import norse.torch as norse
import numpy as np
import pytest
import torch

import lifexport
from lifexport.functional import LIFParameters
from tests.nets import seeded_linear

T, B, F, H, O = 100, 4, 5, 8, 3
DT = 1e-3
TAU_SYN_INV, TAU_MEM_INV, V_TH = 250.0, 80.0, 0.4

# nirtorch 2.6, which Norse 1.1.0 calls, warns that its extract_nir_graph and load are
# deprecated; that is Norse's business, not what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore:nirtorch.*deprecat:DeprecationWarning")


def linear(n_in, n_out, seed):
    return seeded_linear(n_in, n_out, seed, (-0.2, 0.8), (-0.1, 0.1))


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, F, generator=g) < 0.3).float()  # (T, B, F) spikes


def run_steps(module, xs):
    """Norse modules and nirtorch executors take one step and return (output, state)."""
    state, ys = None, []
    for x in xs:
        y, state = module(x, state)
        ys.append(y)
    return torch.stack(ys)


def lifexport_net():
    p = LIFParameters(tau_syn_inv=TAU_SYN_INV, tau_mem_inv=TAU_MEM_INV, v_th=V_TH)
    return lifexport.SequentialState(linear(F, H, 2), lifexport.LIF(p, DT), linear(H, O, 3))


def norse_net():
    p = norse.LIFParameters(
        tau_syn_inv=torch.tensor(TAU_SYN_INV),
        tau_mem_inv=torch.tensor(TAU_MEM_INV),
        v_th=torch.tensor(V_TH),
    )
    return norse.SequentialState(linear(F, H, 2), norse.LIFCell(p, dt=DT), linear(H, O, 3))


def test_norse_reads_lifexport_graph():
    net = lifexport_net()
    module = norse.from_nir(lifexport.to_nir(net, dt=DT), dt=DT)
    xs = inputs()
    with torch.no_grad():
        expected, _ = net(xs)
        got = run_steps(module, xs)
        spikes, _ = net[1](net[0](xs))
    assert 0.05 < spikes.mean() < 0.6  # the neurons do spike, and not always
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_norse_writes_time_constants_times_dt():
    """The documented bug of Norse 1.1.0's writer (norse/norse#411)."""
    graph = norse.to_nir(norse_net(), torch.zeros(1, F), dt=DT)
    lif = graph.nodes["1"]
    assert isinstance(lif, nir.CubaLIF)
    np.testing.assert_allclose(np.asarray(lif.tau_mem), DT / TAU_MEM_INV, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lif.tau_syn), DT / TAU_SYN_INV, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(lif.w_in), 1.0)


def norse_graph_fixed():
    """Norse 1.1.0's graph with time constants in seconds, as Norse writes since #413."""
    graph = norse.to_nir(norse_net(), torch.zeros(1, F), dt=DT)
    lif = graph.nodes["1"]
    lif.tau_mem = np.asarray(lif.tau_mem) / DT
    lif.tau_syn = np.asarray(lif.tau_syn) / DT
    return graph


def test_lifexport_reads_norse_graph_as_norse_does():
    """Both readers simulate the graph Norse wrote (w_in = 1: an input gain dt / tau_syn)."""
    graph = norse_graph_fixed()
    ours = lifexport.from_nir(graph, dt=DT)
    theirs = norse.from_nir(graph, dt=DT)
    xs = inputs(4)
    with torch.no_grad():
        got, _ = ours(xs)
        expected = run_steps(theirs, xs)
    gain = ours[0].weight.detach() / norse_net()[0].weight.detach()  # folded into the Linear
    torch.testing.assert_close(gain, torch.full_like(gain, DT * TAU_SYN_INV))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_lifexport_reads_norse_graph_as_norse_model_with_w_in():
    """With ``w_in = tau_syn / dt``, the graph is Norse's LIFCell network itself."""
    graph = norse_graph_fixed()
    lif = graph.nodes["1"]
    lif.w_in = np.asarray(lif.tau_syn) / DT
    model = norse_net()
    ours = lifexport.from_nir(graph, dt=DT)
    xs = inputs(5)
    with torch.no_grad():
        got, _ = ours(xs)
        expected = run_steps(model, xs)
        spikes = run_steps(model[1], model[0](xs))
    assert 0.05 < spikes.mean() < 0.6
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_norse_writes_no_node_for_li():
    graph = norse.to_nir(
        norse.SequentialState(linear(F, H, 2), norse.LIFCell(), linear(H, O, 3), norse.LICell()),
        torch.zeros(1, F),
        dt=DT,
    )
    with pytest.raises(TypeError, match="node '3' is empty"):
        lifexport.from_nir(graph, dt=DT)
