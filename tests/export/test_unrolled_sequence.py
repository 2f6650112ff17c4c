"""Sequence graphs exported inside ``unrolled_time_loop(k)``: onnxruntime (CPU EP) runs one
file for every T (1, T < k, T = k, T = k * n + r) and gives eager torch's spikes exactly, its
states within float32 tolerance, and the k = 1 graph's outputs bit for bit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch

import lifexport
from lifexport.export import op_types, to_onnx
from lifexport.export._graph import iter_nodes
from lifexport.modules import flatten_state, unrolled_time_loop

K, B, F = 4, 3, 4
TS = (1, 3, K, 2 * K + 1)  # T = 1, T < K, T = K, T = K * n + r


def models() -> dict[str, Callable[[], torch.nn.Module]]:
    return {
        "LIFRefrac": lambda: lifexport.LIFRefrac(),
        "LIF": lambda: lifexport.LIF(),
        "LI": lambda: lifexport.LI(),
        "LIFRefracRecurrent": lambda: lifexport.LIFRefracRecurrent(F, 5),
        "Linear+LIFRefrac": lambda: lifexport.SequentialState(
            torch.nn.Linear(F, 5), lifexport.LIFRefrac()
        ),
    }


def drive(t: int, seed: int) -> torch.Tensor:
    return 3.0 * torch.rand(t, B, F, generator=torch.Generator().manual_seed(seed))


def export(name: str, k: int, folder) -> tuple[torch.nn.Module, lifexport.ExportedModel]:
    torch.manual_seed(0)
    model = models()[name]().eval()
    with unrolled_time_loop(k):
        out = to_onnx(model, drive(5, seed=0)[:, :2], folder / f"{name}_k{k}.onnx")
    return model, out


@pytest.mark.parametrize("name", list(models()))
def test_every_t_equals_eager_and_k1(name, tmp_path, ort_session):
    model, unrolled = export(name, K, tmp_path)
    _, plain = export(name, 1, tmp_path)
    assert [n.op_type for n in onnx.load(unrolled.path).graph.node].count("Scan") == 1
    assert all(domain == "" for domain, _ in op_types(onnx.load(unrolled.path)))
    run, run_plain = ort_session(unrolled.path), ort_session(plain.path)
    with torch.no_grad():
        state = flatten_state(model(drive(6, seed=1))[1])[0]  # away from rest
    spiked = 0.0
    for t in TS:
        xs = drive(t, seed=10 + t)
        with torch.no_grad():
            ys, final = model(xs, model(drive(6, seed=1))[1])
        expected = [ys, *flatten_state(final)[0]]
        feeds = {"x": xs.numpy(), **{n: s.numpy() for n, s in zip(unrolled.state_names, state)}}
        got, got_plain = run(feeds), run_plain(feeds)
        for out_name, e in zip(unrolled.output_names, expected, strict=True):
            assert np.array_equal(got[out_name], got_plain[out_name]), (name, t, out_name)
            if out_name == "y" and name != "LI":
                assert np.array_equal(got[out_name], e.numpy()), (name, t)
            else:
                np.testing.assert_allclose(got[out_name], e.numpy(), rtol=1e-5, atol=1e-5)
        spiked += float(ys.mean())
    assert name == "LI" or 0 < spiked < len(TS)  # spikes happen, not everywhere


def test_training_graph_equals_k1(tmp_path, ort_session):
    """The setting applies to training graphs too (torch.export traces their forward). Their
    T is the example's (as with k = 1): one export at T = k + 1."""
    t, graphs = K + 1, {}
    for k in (1, K):
        torch.manual_seed(0)
        model = lifexport.SequentialState(torch.nn.Linear(F, 5), lifexport.LIFRefrac())
        with unrolled_time_loop(k):
            graphs[k] = to_onnx(model, drive(t, seed=0), tmp_path / f"k{k}.onnx", mode="training")
    where = {
        k: [n.op_type for n in iter_nodes(onnx.load(g.path).graph)].count("Where")
        for k, g in graphs.items()
    }
    assert where[K] >= where[1] + (K - 1) * 3  # the forward's state masks
    feeds = {
        "0.weight": model[0].weight.detach().numpy(),
        "0.bias": model[0].bias.detach().numpy(),
        "x": 10.0 * drive(t, seed=20).numpy(),  # spikes within K + 1 steps from rest
        **{n: np.zeros((B, 5), np.float32) for n in graphs[K].state_names},
    }
    got, plain = ort_session(graphs[K].path)(feeds), ort_session(graphs[1].path)(feeds)
    assert np.array_equal(got["y"], plain["y"]) and 0 < got["y"].mean() < 1
    for out_name in graphs[K].output_names:
        np.testing.assert_allclose(got[out_name], plain[out_name], rtol=1e-6, atol=1e-6)
