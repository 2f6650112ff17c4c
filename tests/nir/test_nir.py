"""to_nir / from_nir: exact round trips (in memory and through a file), the written graph
against NIR's equations simulated independently in numpy, and bad input."""

from __future__ import annotations

import sys
import warnings

import nir
import numpy as np
import pytest
import torch

import lifexport
from lifexport.functional import LIFParameters, LIFRefracParameters, LIParameters
from tests.nets import seeded_linear

T, B, F, H, O = 100, 3, 5, 6, 4
DT = 1e-3
REFRAC_WARNING = pytest.mark.filterwarnings("ignore:layers .* are LIF-refrac:UserWarning")


def linear(n_in, n_out, seed):
    return seeded_linear(n_in, n_out, seed, (-0.3, 1.0))


def lif_p(**kw):
    return LIFParameters(
        tau_syn_inv=torch.linspace(150, 300, H),
        tau_mem_inv=90.0,
        v_leak=0.1,
        v_th=torch.linspace(0.3, 0.6, H),
        v_reset=-0.2,
        method="triangle",
        alpha=0.7,
        **kw,
    )


def li_p():
    return LIParameters(tau_syn_inv=torch.linspace(100, 200, O), tau_mem_inv=50.0, v_leak=-0.1)


def nets(sequence: bool):
    """Linear -> LIF-refrac -> Linear -> LI, and the same with LIF, recurrent LIF(-refrac)."""
    lif, li, refrac = (lifexport.LIF, lifexport.LI, lifexport.LIFRefrac) if sequence else (
        lifexport.LIFCell, lifexport.LICell, lifexport.LIFRefracCell)
    rec = lifexport.LIFRefracRecurrent if sequence else lifexport.LIFRefracRecurrentCell
    rec_lif = lifexport.LIFRecurrent if sequence else lifexport.LIFRecurrentCell
    refrac_p = LIFRefracParameters(lif_p(), rho_reset=torch.arange(H) % 4 + 1.0)
    return {
        "refrac": [linear(F, H, 0), refrac(refrac_p), linear(H, O, 1), li(li_p())],
        "lif": [linear(F, H, 0), lif(lif_p()), linear(H, O, 1), li(li_p())],
        "recurrent_refrac": [rec(F, H, refrac_p), linear(H, O, 1), li(li_p())],
        "recurrent_autapses": [rec_lif(F, H, lif_p(), autapses=True), linear(H, O, 1)],
    }


def inputs(shape=(T, B, F), seed=7):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < 0.4).float()


def run(net, xs):
    """Outputs over time of a sequence stack, or of a stack of cells stepped over ``xs``."""
    with torch.no_grad():
        if net.is_sequence:
            return net(xs)[0]
        return lifexport.TimeLoop(net)(xs)[0]


def assert_same_model(a, b):
    assert [type(m) for m in a] == [type(m) for m in b]
    for x, y in zip(a, b):
        assert x.state_dict().keys() == y.state_dict().keys()
        for key, value in x.state_dict().items():
            other = y.state_dict()[key]
            same = torch.equal(value, other) or (
                value.numel() > 1 and torch.equal(value, other.expand_as(value))
            )
            assert same, key
        if isinstance(x, lifexport.modules.NeuronModule):
            assert (x.method, x.dt) == (y.method, y.dt)
            assert x.alpha is None or float(x.alpha) == float(y.alpha)


@REFRAC_WARNING
@pytest.mark.parametrize("sequence", [True, False], ids=["sequence", "cells"])
@pytest.mark.parametrize("case", ["refrac", "lif", "recurrent_refrac", "recurrent_autapses"])
def test_round_trip_is_exact(case, sequence, tmp_path):
    net = lifexport.SequentialState(*nets(sequence)[case])
    graph = lifexport.to_nir(net, dt=DT)
    path = tmp_path / "net.nir"
    nir.write(path, graph)
    xs = inputs()
    expected = run(net, xs)
    for back in (lifexport.from_nir(graph, dt=DT), lifexport.from_nir(nir.read(path), dt=DT)):
        assert_same_model(net, back)
        assert torch.equal(run(back, xs), expected)
    if case == "refrac":
        rho = lifexport.from_nir(nir.read(path), dt=DT)[1].rho_reset
        assert torch.equal(rho, torch.arange(H) % 4 + 1.0)


def test_refrac_layers_warn_that_other_tools_drop_rho_reset():
    net = lifexport.SequentialState(*nets(True)["refrac"])
    with pytest.warns(UserWarning, match=r"layers \['1'\] are LIF-refrac.*rho_reset"):
        graph = lifexport.to_nir(net)
    assert isinstance(graph.nodes["1"], nir.CubaLIF)
    np.testing.assert_array_equal(graph.nodes["1"].metadata["lifexport.rho_reset"],
                                  np.arange(H) % 4 + 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lifexport.to_nir(lifexport.SequentialState(*nets(True)["lif"]))  # no warning


def simulate_nir(graph, xs: np.ndarray, dt: float) -> np.ndarray:
    """Explicit Euler of NIR's equations for a chain of Affine, CubaLIF and CubaLI nodes:

    I += dt / tau_syn * (-I + w_in * S);  v += dt / tau_mem * (v_leak - v + r * I);
    z = v > v_threshold;  v = v_reset where z.  Rest: v = v_leak, I = 0.
    """
    order = [n for n in graph.nodes if n not in ("input", "output")]
    state = {}
    ys = []
    for x in xs:
        h = x
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Affine):
                h = h @ node.weight.T + node.bias
                continue
            i, v = state.get(name, (np.zeros_like(h), np.broadcast_to(node.v_leak, h.shape)))
            i = i + dt / node.tau_syn * (-i + node.w_in * h)
            v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
            if isinstance(node, nir.CubaLIF):
                z = (v > node.v_threshold).astype(np.float64)
                v = np.where(z > 0, node.v_reset, v)
                h = z
            else:
                h = v
            state[name] = (i, v)
        ys.append(h)
    return np.stack(ys)


def test_graph_follows_nir_equations():
    """The written graph, simulated from NIR's equations alone, is the model (float64)."""
    net = lifexport.SequentialState(*nets(True)["lif"]).double()
    graph = lifexport.to_nir(net, dt=DT)
    xs = inputs().double()
    expected = run(net, xs)
    got = simulate_nir(graph, xs.numpy(), DT)
    spikes = run(lifexport.SequentialState(*list(net)[:2]), xs)
    assert 0.05 < spikes.mean() < 0.6
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-9)


def test_graph_from_other_tools_follows_nir_equations():
    """A graph with r != 1 and w_in != tau_syn / dt (gain folded into the Affine), read back."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.uniform(-0.3, 1.0, (H, F)), rng.uniform(-0.5, 0.5, (O, H))

    def cuba(cls, n, **kw):
        return cls(tau_syn=np.full(n, 4e-3), tau_mem=np.linspace(8e-3, 2e-2, n), r=np.full(n, 2.0),
                   v_leak=np.zeros(n), w_in=np.full(n, 1.5), **kw)

    nodes = {
        "input": nir.Input(input_type=np.array([F])),
        "a": nir.Affine(weight=w1, bias=np.zeros(H)),
        "lif": cuba(nir.CubaLIF, H, v_threshold=np.full(H, 0.5), v_reset=np.zeros(H)),
        "b": nir.Affine(weight=w2, bias=np.full(O, 0.1)),
        "li": cuba(nir.CubaLI, O),
        "output": nir.Output(output_type=np.array([O])),
    }
    order = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)
    net = lifexport.from_nir(graph, dt=DT).double()  # parameters rounded to float32 on reading
    xs = inputs()
    spikes = run(lifexport.SequentialState(*list(net)[:2]), xs.double())
    assert 0.05 < spikes.mean() < 0.6
    np.testing.assert_allclose(
        run(net, xs.double()).numpy(), simulate_nir(graph, xs.numpy().astype(np.float64), DT),
        rtol=0, atol=1e-6,
    )


def test_nir_lif_and_li_nodes_have_no_synaptic_memory():
    """NIR LIF/LI (no synapse) read as lifexport neurons whose current lasts one step."""
    n = H
    lif = nir.LIF(tau=np.full(n, 0.01), r=np.full(n, 3.0), v_leak=np.zeros(n),
                  v_threshold=np.full(n, 0.2), v_reset=np.zeros(n))
    nodes = {"input": nir.Input(input_type=np.array([n])), "lif": lif,
             "output": nir.Output(output_type=np.array([n]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(ValueError, match="input gain"):  # r = 3 has no layer before it to go into
        lifexport.from_nir(graph, dt=DT)
    lif.r = np.ones(n)
    net = lifexport.from_nir(graph, dt=DT)
    xs = inputs((T, B, n)) * 0.5
    v, out = np.zeros((B, n)), []
    for x in xs.numpy():  # v += dt / tau * (v_leak - v + r * x); spike and reset
        v = v + DT / 0.01 * (-v + x)
        out.append((v > 0.2).astype(np.float32))
        v = np.where(out[-1] > 0, 0.0, v)
    np.testing.assert_array_equal(run(net, xs).numpy(), np.stack(out))


def test_dt_rescales_time_constants_and_keeps_the_dynamics():
    net = lifexport.SequentialState(*nets(True)["lif"])
    graph = lifexport.to_nir(net, dt=2e-3)
    np.testing.assert_allclose(graph.nodes["1"].tau_mem, 2.0 / 90.0)  # dt / (layer.dt * inv)
    np.testing.assert_allclose(graph.nodes["1"].w_in, graph.nodes["1"].tau_syn / 2e-3)
    back = lifexport.from_nir(graph, dt=2e-3)
    assert back[1].dt == 2e-3
    xs = inputs()
    torch.testing.assert_close(run(back, xs), run(net, xs), rtol=0, atol=1e-5)


def test_conv_pool_flatten_round_trip():
    torch.manual_seed(0)
    net = lifexport.SequentialState(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        lifexport.LIF(LIFParameters(v_th=0.3)),
        torch.nn.AvgPool2d(2),
        torch.nn.AvgPool2d(2, divisor_override=1),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(4 * 2 * 2, O),
        lifexport.LI(),
    ).eval()
    graph = lifexport.to_nir(net, input_shape=(2, 8, 8))
    kinds = [type(graph.nodes[k]).__name__ for k in graph.nodes]
    assert kinds == ["Input", "Conv2d", "CubaLIF", "AvgPool2d", "SumPool2d", "Flatten", "Affine",
                     "CubaLI", "Output"]
    back = lifexport.from_nir(graph)
    xs = inputs((T, B, 2, 8, 8)) * 2
    assert torch.equal(run(back, xs), run(net, xs))


@pytest.mark.parametrize("dt", [0.0, -1e-3, float("nan"), float("inf")])
def test_dt_must_be_positive_and_finite(dt):
    net = lifexport.SequentialState(*nets(True)["lif"])
    with pytest.raises(ValueError, match="dt must be a positive, finite number"):
        lifexport.to_nir(net, dt=dt)
    with pytest.raises(ValueError, match="dt must be a positive, finite number"):
        lifexport.from_nir(lifexport.to_nir(net), dt=dt)


@pytest.mark.parametrize("dt", ["1e-3", True, None])
def test_dt_must_be_a_number(dt):
    with pytest.raises(TypeError, match="dt must be a number of seconds"):
        lifexport.to_nir(lifexport.SequentialState(*nets(True)["lif"]), dt=dt)


@pytest.mark.parametrize(
    "layer, message",
    [(torch.nn.MaxPool2d(2), "MaxPool2d cannot be written to NIR: NIR has no max pooling"),
     (torch.nn.ReLU(), "ReLU cannot be written to NIR: NIR has no ReLU")],
)
def test_unsupported_layer_is_named(layer, message):
    net = lifexport.SequentialState(linear(F, H, 0), layer, lifexport.LIF())
    with pytest.raises(TypeError, match=f"layer 1 of the model: {message}"):
        lifexport.to_nir(net)


def test_input_shape_needed_for_a_first_conv():
    net = lifexport.SequentialState(torch.nn.Conv2d(2, 4, 3), lifexport.LIF())
    with pytest.raises(ValueError, match="input_shape is needed.*Conv2d"):
        lifexport.to_nir(net)
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\) does not fit layer 0"):
        lifexport.to_nir(net, input_shape=(3, 8, 8))


def chain(*named):
    nodes = {"input": nir.Input(input_type=np.array([F])), **dict(named),
             "output": nir.Output(output_type=np.array([F]))}
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), type_check=False)


@pytest.mark.parametrize(
    "node, name",
    [(nir.IF(r=np.ones(F), v_threshold=np.ones(F)), "IF"),
     (nir.Delay(delay=np.ones(F)), "Delay"),
     (nir.Threshold(threshold=np.ones(F)), "Threshold")],
)
def test_unsupported_node_is_named(node, name):
    with pytest.raises(TypeError, match=f"node 'odd' \\({name}\\) has no lifexport equivalent"):
        lifexport.from_nir(chain(("a", nir.Linear(weight=np.eye(F))), ("odd", node)))


def test_graph_that_is_not_a_chain_is_refused():
    graph = chain(("a", nir.Linear(weight=np.eye(F))), ("b", nir.Linear(weight=np.eye(F))))
    graph.edges.append(("input", "b"))  # b gets two inputs
    message = r"not a chain: node 'input' has inputs \[\] and outputs \['a', 'b'\]"
    with pytest.raises(ValueError, match=message):
        lifexport.from_nir(graph)


def test_other_subgraph_is_refused():
    sub = chain(("a", nir.Linear(weight=np.eye(F))))
    with pytest.raises(ValueError, match="subgraph 'sub' .* is not a recurrent CubaLIF layer"):
        lifexport.from_nir(chain(("sub", sub)))


def test_graph_must_be_a_nir_graph():
    with pytest.raises(TypeError, match="graph must be a nir.NIRGraph"):
        lifexport.from_nir("net.nir")


def test_missing_nir_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)  # import nir now raises ImportError
    with pytest.raises(ImportError, match="pip install nir"):
        lifexport.to_nir(lifexport.SequentialState(*nets(True)["lif"]))
