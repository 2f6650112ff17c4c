"""The recurrent workload of the benchmark, W3 (``lifexport bench --recurrent``), on CPU: its
rows at a tiny shape (Norse, eager and compiled scan, the GEMM floor), its floor's products,
its ratios with the GPU targets from hand-made rows, and the command line. No timing is
asserted; the triton rows run on CUDA only."""

from __future__ import annotations

import math

import pytest
import torch

from lifexport import bench as benchmod
from lifexport.bench import recurrent
from lifexport.bench.config import make_input
from lifexport.cli import build_parser

TINY_CONFIG = dict(t=3, b=2, n=8, repeats=1, warmup=0)


def test_the_recurrent_rows_run_at_a_tiny_shape_with_their_floor():
    cfg = benchmod.Config(**TINY_CONFIG, recurrent=True, feedforward=False)
    result = benchmod.bench(cfg, log=lambda line: None)
    assert result.failures == []
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in result.rows}
    expected = [("-", recurrent.FLOOR, "forward")]
    for variant in ("norse eager", "lifexport eager scan", "lifexport compiled scan"):
        expected += [("W3", variant, "forward"), ("W3", variant, "fwd+bwd")]
    assert sorted(ms) == sorted(expected)  # no W1/W2 row, no floor of theirs
    assert all(math.isfinite(t) and t > 0 for t in ms.values())
    out = result.format()
    assert "| - | floor: gemm recurrent | forward |" in out
    assert "| W3 forward lifexport compiled scan / gemm recurrent floor |" in out
    assert "| W3 fwd+bwd norse eager / lifexport compiled scan |" in out
    assert "triton" not in " ".join(result.ratios())  # no triton row on CPU: no such ratio
    notes = "\n".join(result.notes)
    assert "lifexport eager triton: CUDA only" in notes
    assert "left out (--no-feedforward)" in notes


def test_every_variant_computes_the_same_spikes_from_the_same_weights():
    cfg = benchmod.Config(t=20, b=2, n=16)
    x, w = make_input(cfg), recurrent.weights(cfg)
    norse = recurrent.build("norse eager", w, cfg.n, "cpu")(x)
    ours = recurrent.build("lifexport eager scan", w, cfg.n, "cpu")(x)
    assert norse.shape == (20, 2, 16) and norse.sum() > 0
    assert torch.equal(norse, ours)


def test_the_floor_writes_the_real_products_into_buffers_allocated_once():
    cfg = benchmod.Config(t=4, b=3, n=5)
    x, (w_in, w_rec) = make_input(cfg), recurrent.weights(cfg)
    floor = recurrent.floor(cfg, x, (w_in, w_rec))
    first = floor()
    pointer = first.data_ptr()
    assert floor().data_ptr() == pointer
    torch.testing.assert_close(first, recurrent.step_spikes(cfg) @ w_rec.t())
    with pytest.raises(ValueError, match=r"shape \(4, 3, 5\)"):
        recurrent.floor(cfg, x[:2], (w_in, w_rec))


def _rows(rows):
    return [dict(workload=w, variant=v, pass_=p, ms=ms) for w, v, p, ms in rows]


def test_the_ratios_hold_the_triton_rows_to_the_gpu_targets():
    rows = _rows(
        [
            ("-", "floor: gemm recurrent", "forward", 2.0),
            ("W3", "norse eager", "forward", 300.0),
            ("W3", "norse eager", "fwd+bwd", 900.0),
            ("W3", "lifexport compiled scan", "forward", 40.0),
            ("W3", "lifexport compiled scan", "fwd+bwd", 200.0),
            ("W3", "lifexport compiled triton", "forward", 5.0),
            ("W3", "lifexport compiled triton", "fwd+bwd", 10.0),
        ]
    )
    got = benchmod.ratios(rows, "cuda")
    assert (
        got["W3 fwd+bwd lifexport compiled scan / lifexport compiled triton (target >= 10)"] == 20
    )
    assert got["W3 fwd+bwd norse eager / lifexport compiled triton (target >= 30)"] == 90
    assert got["W3 forward lifexport compiled triton / gemm recurrent floor (target <= 3)"] == 2.5
    assert got["W3 forward norse eager / lifexport compiled triton"] == 60
    assert got["W3 forward lifexport compiled scan / gemm recurrent floor"] == 20  # no target
    cpu = benchmod.ratios([r for r in rows if "triton" not in r["variant"]], "cpu")
    assert sorted(cpu) == [
        "W3 forward lifexport compiled scan / gemm recurrent floor",
        "W3 forward norse eager / lifexport compiled scan",
        "W3 fwd+bwd norse eager / lifexport compiled scan",
    ]


def test_the_command_line_repeats_a_recurrent_run():
    cfg = benchmod.Config(t=500, b=64, n=512, device="cpu", recurrent=True, feedforward=False)
    words = benchmod.command_line(cfg).split()
    assert words[-2:] == ["--recurrent", "--no-feedforward"]
    args = build_parser().parse_args(words[1:])
    assert benchmod.Config(**{name: getattr(args, name) for name in vars(cfg)}) == cfg
