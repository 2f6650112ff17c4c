"""``unrolled_time_loop(k)``: exported time loops that run k steps per scan iteration give
eager's values bit for bit, for every T; eager and compiled runs are unaffected."""

from __future__ import annotations

import pytest
import torch
from torch._higher_order_ops.scan import scan

import lifexport
from lifexport.modules import _time, flatten_state, unrolled_time_loop

B = 3


def layers() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "LIFRefrac": lifexport.LIFRefrac(),
        "LIFRefracRecurrent": lifexport.LIFRefracRecurrent(4, 5),
        "LI": lifexport.LI(),
        "TimeLoop(Linear, LIFRefracCell)": lifexport.TimeLoop(
            lifexport.SequentialState(torch.nn.Linear(4, 5), lifexport.LIFRefracCell())
        ),
    }


def drive(t: int, seed: int) -> torch.Tensor:
    return 40.0 * torch.rand(t, B, 4, generator=torch.Generator().manual_seed(seed))


class FromState(torch.nn.Module):
    """``(xs, *state) -> (ys, *final state)``: a sequence model with its state as flat tensors."""

    def __init__(self, model: torch.nn.Module, example_state) -> None:
        super().__init__()
        self.model = model
        self.unflatten = flatten_state(example_state)[1]

    def forward(self, xs, *state):
        ys, final = self.model(xs, self.unflatten(list(state)))
        return ys, *flatten_state(final)[0]


def export(model: torch.nn.Module, k: int) -> tuple[torch.export.ExportedProgram, FromState]:
    state = model(drive(7, seed=1))[1]  # a state away from rest
    graph = FromState(model, state).eval()
    args = (drive(5, seed=2), *flatten_state(state)[0])
    t, b = torch.export.Dim("T"), torch.export.Dim("B")
    dims = ({0: t, 1: b}, tuple({0: b} for _ in args[1:]))  # xs, *state
    with unrolled_time_loop(k), torch.no_grad():
        program = torch.export.export(graph, args, dynamic_shapes=dims)
    return program, graph


@pytest.mark.parametrize("name", list(layers()))
@pytest.mark.parametrize("k", [2, 4])
def test_export_equals_eager_for_every_t(name, k):
    program, graph = export(layers()[name], k)
    state = flatten_state(graph.model(drive(3, seed=3))[1])[0]
    # T >= 2: torch.export's Dim range (onnxruntime runs T = 1 too, see
    # tests/export/test_unrolled_sequence.py)
    for t in sorted({2, k - 1, k, k + 1, 3 * k + 1} - {0, 1}):
        xs = drive(t, seed=10 + t)
        with torch.no_grad():
            expected = graph(xs, *state)
            got = program.module()(xs, *state)
        for e, g in zip(expected, got, strict=True):
            assert torch.equal(e, g), (name, k, t)
    spikes = expected[0]
    assert name == "LI" or 0 < spikes.mean() < 1  # the layers spike, not always


@pytest.mark.parametrize("k", [1, 3])
def test_one_scan_with_k_steps_and_exact_masks(k):
    program, _ = export(layers()["LIFRefrac"], k)
    scans = program.graph.find_nodes(op="call_function", target=torch.ops.higher_order.scan)
    assert len(scans) == 1
    body = getattr(program.graph_module, scans[0].args[0].target).graph
    targets = [n.target for n in body.nodes if n.op == "call_function"]
    where = [t for t in targets if t == torch.ops.aten.where.self]
    assert len(where) == (k - 1) * 3  # v, i, rho of every step but a block's first
    assert len(scans[0].args[2]) == (1 if k == 1 else 2 * k - 1)  # k inputs, k - 1 masks


def test_setting_is_scoped_and_checked():
    assert _time._unroll == 1
    with unrolled_time_loop(4):
        assert _time._unroll == 4
        with unrolled_time_loop(2):
            assert _time._unroll == 2
        assert _time._unroll == 4
    assert _time._unroll == 1
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="positive int"):
            with unrolled_time_loop(bad):
                pass
    assert _time._unroll == 1


def test_eager_and_compile_ignore_the_setting():
    model = lifexport.LIFRefrac()
    xs = drive(6, seed=4)
    expected = model(xs)
    with unrolled_time_loop(4):
        eager = model(xs)
        compiled = torch.compile(model, fullgraph=True, dynamic=True)(xs)
    for got in (eager, compiled):
        assert torch.equal(got[0], expected[0])
        for e, g in zip(flatten_state(expected[1])[0], flatten_state(got[1])[0]):
            torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_pinned_torch_2_13_scan_of_a_length_that_may_be_0_does_not_export():
    """torch 2.13: exporting a scan over ``T // 2`` blocks (0 for T = 1) fails with T dynamic
    (the length > 0 guards), which is why the unrolled loop gathers ceil(T / k) >= 1 blocks."""

    class Blocks(torch.nn.Module):
        def forward(self, xs):
            n = xs.shape[0] // 2
            blocks = xs[: 2 * n].unflatten(0, (n, 2))  # (T // 2, 2, ...)
            return scan(lambda c, x: (c + x.sum(0), c.clone()), xs[0] * 0, blocks)

    try:
        with pytest.raises(Exception, match="Constraints violated"):
            dims = ({0: torch.export.Dim("T")},)
            torch.export.export(Blocks(), (torch.rand(6, 3),), dynamic_shapes=dims)
    finally:
        # torch 2.13: the failed export leaves dynamo state behind that makes later exports
        # in the process fail their own dynamic-dimension constraints.
        torch._dynamo.reset()


def test_setting_is_bounded_by_the_unroll_limit(monkeypatch):
    from lifexport.limits import LIMITS

    with pytest.raises(ValueError, match=r"at most 32 \(lifexport.limits.LIMITS.max_unroll"):
        with unrolled_time_loop(10**9):
            pass
    with unrolled_time_loop(32):
        assert _time._unroll == 32
    monkeypatch.setattr(LIMITS, "max_unroll", 64)  # a raised limit is honoured
    with unrolled_time_loop(64):
        assert _time._unroll == 64
    assert _time._unroll == 1
