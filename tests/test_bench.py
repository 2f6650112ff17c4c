"""`lifexport bench` on CPU: the rows it prints, its device and SpikingJelly checks, its
ratios and command line. Tiny shapes and no compiled rows keep it fast; no timing is asserted."""

from __future__ import annotations

import json

import pytest
import torch

from lifexport import _bench
from lifexport.cli import EXIT_OK, EXIT_USAGE, build_parser, main

TINY = ["--t", "3", "--b", "2", "--n", "8", "--repeats", "1", "--warmup", "0"]


def test_cpu_bench_prints_every_row_as_markdown(capsys):
    assert main(["bench", "--device", "cpu", *TINY, "--no-compiled"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.startswith("`lifexport bench --t 3 --b 2 --n 8 --repeats 1 --warmup 0 --device cpu")
    assert f"- torch: {torch.__version__}" in out
    assert "- device: " in out and "- onnxruntime: " in out
    assert "| workload | variant | pass | ms (median) |" in out
    rows = {tuple(cell.strip() for cell in line.split("|")[1:4]) for line in out.splitlines()}
    for row in [("-", "floor: copy", "forward"), ("-", "floor: gemm", "forward")]:
        assert row in rows
    for workload in ("W1", "W2"):
        for pass_ in ("forward", "fwd+bwd"):
            assert (workload, "lifexport eager scan", pass_) in rows
        assert (workload, "onnxruntime CPU EP sequence", "forward") in rows
        assert (workload, "onnxruntime CPU EP step B=1", "per step") in rows
    assert "| W1 forward lifexport eager scan / copy floor |" in out
    assert "| peak memory, one W1 forward+backward | MB | x input size |" in out
    assert "| lifexport eager scan | +" in out and "VmHWM" in out  # the method is named
    # What is absent says why.
    assert "- lifexport eager triton: CUDA only" in out
    assert "- lifexport compiled scan: left out (--no-compiled)" in out
    assert "- SpikingJelly rows: not requested (--spikingjelly adds them)" in out
    assert "W1  lifexport eager scan" in err  # progress, row by row, on stderr


def test_bench_json_has_rows_ratios_memory_environment_and_notes(capsys):
    argv = ["bench", *TINY, "--no-compiled", "--no-memory", "--no-norse", "--json"]
    assert main(argv) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["device"] == "cpu" and data["memory"] == []
    assert {r["variant"] for r in data["rows"]} >= {"floor: copy", "lifexport eager scan"}
    assert data["environment"]["torch"] == torch.__version__
    assert data["environment"]["command"].startswith("lifexport bench ")
    assert "W1 forward lifexport eager scan / copy floor" in data["ratios"]
    assert "peak memory: left out (--no-memory)" in data["notes"]
    assert "norse eager: left out (--no-norse)" in data["notes"]


def test_an_unknown_device_is_a_usage_error_in_one_line(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(_bench, "bench", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as info:
        main(["bench", "--device", "tpu"])
    assert info.value.code == EXIT_USAGE and ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--device" in err and "'tpu'" in err and "'cpu'" in err and "'cuda'" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error_in_one_line(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(_bench, "bench", lambda *a, **k: ran.append(a))
    assert main(["bench", "--device", "cuda"]) == EXIT_USAGE
    assert ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("lifexport bench: error: argument --device: expected a device")
    assert "'cuda'" in err and "torch.cuda.is_available() is False" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_itself_refuses_a_device_torch_cannot_use():
    with pytest.raises(ValueError, match="Config.device 'cuda' cannot run"):
        _bench.bench(_bench.Config(device="cuda"))
    with pytest.raises(ValueError, match="Config.device must be one of"):
        _bench.Config(device="tpu")


def test_the_spikingjelly_rows_say_why_they_are_absent(capsys):
    argv = ["bench", *TINY, "--no-compiled", "--no-memory", "--no-norse", "--no-onnxruntime"]
    assert main([*argv, "--spikingjelly"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "- SpikingJelly rows: absent: " in out
    assert "its Triton LIF runs on CUDA only (use --device cuda)" in out
    assert "spikingjelly LIFNode" not in out


def test_spikingjelly_absent_names_each_reason(monkeypatch):
    monkeypatch.setattr(_bench, "_have", lambda module: module != "spikingjelly")
    assert "spikingjelly is not installed" in _bench.spikingjelly_absent("cuda")
    assert "CUDA only" not in _bench.spikingjelly_absent("cuda")
    monkeypatch.setattr(_bench, "_have", lambda module: True)
    assert _bench.spikingjelly_absent("cuda") == ""
    only_cuda = "its Triton LIF runs on CUDA only (use --device cuda)"
    assert _bench.spikingjelly_absent("cpu") == only_cuda


def test_cpu_runs_no_triton_rows_and_say_why():
    notes = []
    chosen = _bench.variants(_bench.Config(), notes)
    assert "lifexport eager scan" in chosen and "lifexport compiled scan" in chosen
    assert not [v for v in chosen if v.endswith("triton")]
    assert len([n for n in notes if "TRITON_INTERPRET=1" in n]) == 2


def test_the_command_line_repeats_the_run():
    cfg = _bench.Config(t=7, n=16, device="cpu", norse=False, spikingjelly=True)
    words = _bench.command_line(cfg).split()
    assert words[:2] == ["lifexport", "bench"]
    args = build_parser().parse_args(words[1:])
    assert _bench.Config(**{name: getattr(args, name) for name in vars(cfg)}) == cfg


def test_synchronised_timing_waits_after_each_timed_call():
    calls = []
    ms = _bench.median_ms(lambda: calls.append("run"), 3, 1, sync=lambda: calls.append("sync"))
    assert ms >= 0
    assert calls == ["run", "sync"] + ["run", "sync"] * 3


def _rows(device_rows):
    return [dict(workload=w, variant=v, pass_=p, ms=ms) for w, v, p, ms in device_rows]


def test_ratios_against_floors_norse_and_onnxruntime_with_the_gpu_targets():
    rows = _rows(
        [
            ("-", "floor: copy", "forward", 1.0),
            ("-", "floor: gemm", "forward", 2.0),
            ("W1", "norse eager", "forward", 30.0),
            ("W1", "norse eager", "fwd+bwd", 90.0),
            ("W1", "lifexport eager triton", "forward", 3.0),
            ("W1", "lifexport eager triton", "fwd+bwd", 6.0),
            ("W1", "lifexport compiled triton", "fwd+bwd", 3.0),
            ("W1", "onnxruntime CUDA EP sequence", "forward", 4.0),
            ("W1", "onnxruntime CPU EP sequence", "forward", 8.0),
            ("W2", "lifexport compiled triton", "forward", 2.6),
            ("LIF", "spikingjelly LIFNode (triton)", "fwd+bwd", 1.5),
            ("LIF", "lifexport LIF compiled triton", "fwd+bwd", 1.0),
        ]
    )
    got = _bench.ratios(rows, "cuda")
    assert got["W1 forward lifexport eager triton / copy floor (target <= 3)"] == 3.0
    assert got["W2 forward lifexport compiled triton / gemm floor (target <= 1.3)"] == 1.3
    assert got["W1 forward norse eager / lifexport eager triton (target >= 5)"] == 10.0
    assert got["W1 fwd+bwd norse eager / lifexport compiled triton (target >= 30)"] == 30.0
    key = "W1 forward onnxruntime CUDA EP / CPU EP sequence (target < 1 at (100, 32, 512))"
    assert got[key] == 0.5
    key = "LIF fwd+bwd spikingjelly LIFNode (triton) / lifexport LIF compiled triton (target >= 1)"
    assert got[key] == 1.5
    assert not [k for k in got if "scan" in k]  # only ratios whose rows are present


def test_cpu_ratios_hold_the_compiled_scan_path_to_the_cpu_targets():
    rows = _rows(
        [
            ("-", "floor: copy", "forward", 1.0),
            ("W1", "norse eager", "fwd+bwd", 40.0),
            ("W1", "lifexport eager scan", "fwd+bwd", 50.0),
            ("W1", "lifexport compiled scan", "fwd+bwd", 4.0),
        ]
    )
    got = _bench.ratios(rows, "cpu")
    assert got["W1 fwd+bwd norse eager / lifexport compiled scan (target >= 10)"] == 10.0
    assert got["W1 fwd+bwd norse eager / lifexport eager scan"] == 0.8


def test_a_failing_measurement_is_reported_and_the_others_still_run(capsys, monkeypatch):
    real = _bench.build

    def build(variant, linear, device):
        if linear is not None:
            raise RuntimeError("W2 broke\nsecond line")
        return real(variant, linear, device)

    monkeypatch.setattr(_bench, "build", build)
    argv = ["bench", *TINY, "--no-compiled", "--no-memory", "--no-norse", "--no-onnxruntime"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "| W1 | lifexport eager scan | fwd+bwd |" in out
    assert "FAILED:\n- W2 lifexport eager scan: RuntimeError: W2 broke" in out
    assert err.splitlines()[-1].startswith("lifexport bench: 1 measurement(s) failed: W2 ")


def test_the_spikingjelly_rows_drive_its_multi_step_lif_node(monkeypatch):
    """A stand-in with SpikingJelly 2.0's interface (LIFNode(..., step_mode, backend),
    functional.reset_net, functional.neuron_implementation), run on CPU."""
    import sys
    import types

    made, resets = [], []

    class LIFNode(torch.nn.Module):
        def __init__(self, tau=2.0, step_mode="s", backend="torch"):
            super().__init__()
            made.append(dict(tau=tau, step_mode=step_mode, backend=backend))

        def forward(self, x):  # (T, B, N) -> spikes
            return (x > 1).to(x) + 0 * x

    functional = types.SimpleNamespace(
        reset_net=resets.append,
        neuron_implementation=lambda name, device: {"implementation": "triton"},
    )
    package = types.ModuleType("spikingjelly")
    based = types.ModuleType("spikingjelly.activation_based")
    based.functional, based.neuron = functional, types.SimpleNamespace(LIFNode=LIFNode)
    monkeypatch.setitem(sys.modules, "spikingjelly", package)
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based", based)
    monkeypatch.setattr(_bench, "spikingjelly_absent", lambda device: "")
    monkeypatch.setattr(_bench, "triton_available", lambda: False)
    monkeypatch.setattr(_bench, "SPIKINGJELLY_SHAPE", (3, 2, 5))
    result = _bench.Result(_bench.Config(repeats=1, warmup=0))

    def add(workload, variant, pass_, ms):
        result.rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=ms))

    _bench._spikingjelly_rows(result.config, add, result, log=lambda line: None)
    assert result.failures == []
    assert made == [dict(tau=2.0, step_mode="m", backend="triton")]
    assert {(r["variant"], r["pass_"]) for r in result.rows} == {
        ("spikingjelly LIFNode (triton)", "forward"),
        ("spikingjelly LIFNode (triton)", "fwd+bwd"),
    }
    assert len(resets) == 3  # before each run: the check, one forward, one forward+backward
    assert "lifexport LIF rows beside SpikingJelly: Triton is not installed" in result.notes
