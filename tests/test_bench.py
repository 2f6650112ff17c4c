"""`lifexport bench` on CPU: the rows it prints, its device and SpikingJelly checks, its
ratios and command line. Tiny shapes and no compiled rows keep it fast; no timing is asserted.
The CUDA-only rows (bfloat16, SpikingJelly's comparison) are driven here through stand-ins,
and their ratios computed from hand-made rows."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest
import torch

import lifexport
from lifexport import _bench
from lifexport.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from lifexport.kernels import triton_available
from lifexport.modules import LIF, LIFRefrac

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
    # The bfloat16 rows run on CUDA only: on CPU, a note says so and the rows are as they were.
    assert "- W1 lifexport compiled triton bf16 and floor: copy bf16: CUDA only" in out
    assert not [row for row in rows if "bf16" in " ".join(row)]


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
            ("-", "floor: copy bf16", "forward", 0.5),
            ("W1", "lifexport compiled triton bf16", "forward", 1.5),
        ]
    )
    got = _bench.ratios(rows, "cuda")
    assert got["W1 forward lifexport eager triton / copy floor (target <= 3)"] == 3.0
    assert got["W2 forward lifexport compiled triton / gemm floor (target <= 1.3)"] == 1.3
    assert got["W1 forward norse eager / lifexport eager triton (target >= 5)"] == 10.0
    assert got["W1 fwd+bwd norse eager / lifexport compiled triton (target >= 30)"] == 30.0
    key = "W1 forward onnxruntime CUDA EP / CPU EP sequence (target < 1 at (100, 32, 512))"
    assert got[key] == 0.5
    key = "W1 forward lifexport compiled triton bf16 / copy bf16 floor (target <= 3)"
    assert got[key] == 3.0
    assert not [k for k in got if "scan" in k]  # only ratios whose rows are present
    assert len(got) == 7


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


SJ = "LIF T=3 B=2 N=5"  # the SpikingJelly workload at the stand-ins' shape
SPIKINGJELLY = {p: f"spikingjelly LIFNode (triton) {p}" for p in ("float32", "bf16")}
LIFEXPORT = [
    _bench.lif_variant(layer, kind, mode, precision)
    for precision in ("float32", "bf16")
    for layer, kind in (("LIF", "eager"), ("LIF", "compiled"), ("LIFRefrac", "compiled"))
    for mode in ("store", "recompute")
]


@pytest.fixture
def standins(monkeypatch):
    """SpikingJelly 2.0's interface (LIFNode(..., step_mode, backend), functional.reset_net,
    functional.neuron_implementation) and lifexport's LIF, LIFRefrac, compile and peak memory
    as stand-ins on CPU at a tiny shape. What they saw: the nodes made, the resets, the layers
    built (name, backend, memory) and every call (who, input dtype, autocast on)."""
    seen = types.SimpleNamespace(made=[], resets=[], layers=[], calls=[], reject=())

    def spikes(who: str, x: torch.Tensor) -> torch.Tensor:
        seen.calls.append((who, x.dtype, torch.is_autocast_enabled("cpu")))
        if who == "spikingjelly" and x.dtype in seen.reject:
            raise TypeError(f"unsupported dtype {x.dtype}\nsecond line")
        return (x > 1).to(x) + 0 * x

    class LIFNode(torch.nn.Module):
        def __init__(self, tau=2.0, step_mode="s", backend="torch"):
            super().__init__()
            seen.made.append(dict(tau=tau, step_mode=step_mode, backend=backend))

        def forward(self, x):  # (T, B, N) -> spikes
            return spikes("spikingjelly", x)

    def layer(name: str) -> type:
        class Layer(torch.nn.Module):
            def __init__(self, backend="auto", memory="auto"):
                super().__init__()
                self.who = f"{name} {backend} {memory}"
                seen.layers.append(self.who)

            def forward(self, x):
                return spikes(self.who, x), None

        return Layer

    def compile_(model):
        model.who = f"compiled {model.who}"
        return model

    functional = types.SimpleNamespace(
        reset_net=seen.resets.append,
        neuron_implementation=lambda name, device: {"implementation": "triton"},
    )
    package = types.ModuleType("spikingjelly")
    based = types.ModuleType("spikingjelly.activation_based")
    based.functional, based.neuron = functional, types.SimpleNamespace(LIFNode=LIFNode)
    monkeypatch.setitem(sys.modules, "spikingjelly", package)
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based", based)
    monkeypatch.setattr(_bench, "spikingjelly_absent", lambda device: "")
    monkeypatch.setattr(_bench, "triton_available", lambda: True)
    monkeypatch.setattr(_bench, "LIF", layer("LIF"))
    monkeypatch.setattr(_bench, "LIFRefrac", layer("LIFRefrac"))
    monkeypatch.setattr(_bench, "lifexport_compile", compile_)
    monkeypatch.setattr(_bench, "_cuda_peak", lambda run, x: 10**6 * x.element_size())
    monkeypatch.setattr(_bench, "SPIKINGJELLY_SHAPE", (3, 2, 5))
    return seen


def _spikingjelly_result(**config) -> _bench.Result:
    result = _bench.Result(_bench.Config(repeats=1, warmup=0, **config))

    def add(workload, variant, pass_, ms):
        result.rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=ms))

    _bench._spikingjelly_rows(result.config, add, result, log=lambda line: None)
    return result


def test_the_spikingjelly_rows_compare_each_dtype_and_memory_mode(standins):
    result = _spikingjelly_result()
    assert result.failures == [] and result.notes == []
    assert standins.made == [dict(tau=2.0, step_mode="m", backend="triton")] * 2
    assert len(standins.resets) == 6  # per dtype: the check, one forward, one forward+backward
    variants = [  # in the order measured: per dtype, SpikingJelly's row first
        v for p in ("float32", "bf16") for v in (SPIKINGJELLY[p], *LIFEXPORT) if v.endswith(p)
    ]
    assert {(r["workload"], r["variant"], r["pass_"]) for r in result.rows} == {
        (SJ, v, p) for v in variants for p in ("forward", "fwd+bwd")
    }
    assert len(result.rows) == 2 * len(variants) == 2 * 14
    assert "lifexport LIF compiled triton store bf16" in variants
    assert "lifexport LIFRefrac compiled triton recompute float32" in variants
    # Each lifexport layer is built on the triton backend in the row's memory mode.
    assert sorted(set(standins.layers)) == [
        f"{layer} triton {mode}"
        for layer in ("LIF", "LIFRefrac")
        for mode in ("recompute", "store")
    ]
    # bf16: SpikingJelly gets the bfloat16 input as it is, lifexport under autocast.
    calls = set(standins.calls)
    assert ("spikingjelly", torch.bfloat16, False) in calls
    assert ("spikingjelly", torch.float32, False) in calls
    assert ("compiled LIF triton store", torch.bfloat16, True) in calls
    assert ("LIF triton recompute", torch.bfloat16, True) in calls
    assert ("compiled LIFRefrac triton store", torch.float32, False) in calls
    assert not [c for c in calls if (c[1] == torch.bfloat16) != c[2] and c[0] != "spikingjelly"]
    # One memory row per variant, against the input in the row's dtype.
    assert [m["variant"] for m in result.memory] == variants
    assert {m["workload"] for m in result.memory} == {SJ}
    assert {(m["peak_mb"], m["x_input"]) for m in result.memory} == {
        (4.0, round(10**6 / (3 * 2 * 5), 2)),
        (2.0, round(10**6 / (3 * 2 * 5), 2)),
    }
    ratios = result.ratios()
    key = f"{SJ} fwd+bwd lifexport LIF compiled triton store bf16 / {SPIKINGJELLY['bf16']}"
    assert key in ratios  # on CPU, without targets
    key = f"{SJ} peak memory lifexport LIF eager triton store float32 / {SPIKINGJELLY['float32']}"
    assert ratios[key] == 1.0


@pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1" or not triton_available(),
    reason="runs the fused kernels on CPU: needs Triton and its interpreter",
)
def test_the_real_layers_run_every_row_beside_spikingjelly(standins, monkeypatch):
    """lifexport's own layers and compile, in Triton's interpreter: every memory mode and dtype
    runs, eager and compiled, and the compiled rows stay within dynamo's recompile limit."""
    monkeypatch.setattr(_bench, "LIF", LIF)
    monkeypatch.setattr(_bench, "LIFRefrac", LIFRefrac)
    monkeypatch.setattr(_bench, "lifexport_compile", lifexport.compile)

    def peak(run, x):  # one forward+backward, as the CUDA measurement runs it
        run(x.detach().clone().requires_grad_()).sum().backward()
        return 10**6

    monkeypatch.setattr(_bench, "_cuda_peak", peak)
    # Dynamo's config is patched with its own context manager: monkeypatch's undo leaves
    # `recompile_limit` deleted (torch 2.13), which broke every later compile in the run.
    with torch._dynamo.config.patch(recompile_limit=8):
        result = _spikingjelly_result()
    assert result.failures == []
    assert len(result.rows) == 2 * 14 and len(result.memory) == 14


def test_a_spikingjelly_that_rejects_bfloat16_is_reported_and_the_rest_still_run(standins):
    standins.reject = (torch.bfloat16,)
    result = _spikingjelly_result(memory=False)
    assert result.failures == [
        "spikingjelly LIFNode bf16: TypeError: unsupported dtype torch.bfloat16"
    ]
    variants = {r["variant"] for r in result.rows}
    assert variants == {SPIKINGJELLY["float32"], *LIFEXPORT}
    assert result.memory == []


def test_without_triton_only_spikingjelly_runs_and_a_note_says_why(standins, monkeypatch):
    monkeypatch.setattr(_bench, "triton_available", lambda: False)
    result = _spikingjelly_result()
    assert result.failures == [] and standins.layers == []
    assert {r["variant"] for r in result.rows} == set(SPIKINGJELLY.values())
    assert result.notes == ["lifexport LIF rows beside SpikingJelly: Triton is not installed"]


W = "LIF T=32 B=64 N=65536"


def test_ratios_beside_spikingjelly_are_lifexport_over_it_per_dtype_and_mode():
    rows = _rows(
        [
            (W, SPIKINGJELLY["float32"], "forward", 1.0),
            (W, SPIKINGJELLY["float32"], "fwd+bwd", 2.0),
            (W, SPIKINGJELLY["bf16"], "fwd+bwd", 1.0),
            (W, "lifexport LIF eager triton store float32", "forward", 0.5),
            (W, "lifexport LIF eager triton store float32", "fwd+bwd", 1.6),
            (W, "lifexport LIF compiled triton recompute float32", "fwd+bwd", 3.0),
            (W, "lifexport LIF compiled triton store bf16", "fwd+bwd", 0.75),
            (W, "lifexport LIFRefrac compiled triton store bf16", "fwd+bwd", 0.9),
            (W, "lifexport LIFRefrac compiled triton store bf16", "forward", 0.9),
            (W, "lifexport LIFRefrac compiled triton recompute float32", "fwd+bwd", 3.3),
        ]
    )
    f32, bf16 = SPIKINGJELLY["float32"], SPIKINGJELLY["bf16"]
    # The targets: forward+backward only; none across dtypes, none without both rows.
    assert _bench.ratios(rows, "cuda") == {
        f"{W} forward lifexport LIF eager triton store float32 / {f32}": 0.5,
        f"{W} fwd+bwd lifexport LIF eager triton store float32 / {f32} (target <= 0.8)": 0.8,
        f"{W} fwd+bwd lifexport LIF compiled triton recompute float32 / {f32} (target <= 0.8)": 1.5,
        f"{W} fwd+bwd lifexport LIF compiled triton store bf16 / {bf16} (target <= 0.8)": 0.75,
        f"{W} fwd+bwd lifexport LIFRefrac compiled triton store bf16 / "
        "lifexport LIF compiled triton store bf16 (target <= 1.2)": 1.2,
        f"{W} fwd+bwd lifexport LIFRefrac compiled triton recompute float32 / "
        "lifexport LIF compiled triton recompute float32 (target <= 1.2)": 1.1,
    }
    assert not [k for k in _bench.ratios(rows, "cpu") if "target" in k]  # GPU targets


def _sj_memory() -> list[dict]:
    """Hand-made memory rows at SpikingJelly's shape (meta tensors: no memory taken)."""
    x32 = torch.empty(32, 64, 65536, device="meta")  # (T, B, N)
    x16 = x32.to(torch.bfloat16)
    b32, b16 = 4 * x32.numel(), 2 * x16.numel()
    return [
        _bench.memory_row("W1", "lifexport eager triton", 10**6, x32),
        _bench.memory_row(W, SPIKINGJELLY["float32"], 2 * b32, x32),
        _bench.memory_row(W, "lifexport LIF eager triton store float32", 2 * b32, x32),
        _bench.memory_row(W, "lifexport LIF compiled triton recompute float32", 3 * b32, x32),
        _bench.memory_row(W, SPIKINGJELLY["bf16"], 4 * b16, x16),
        _bench.memory_row(W, "lifexport LIF compiled triton store bf16", 2 * b16, x16),
        _bench.memory_row(W, "lifexport LIFRefrac compiled triton recompute bf16", 5 * b16, x16),
    ]


def test_memory_ratios_hold_store_to_spikingjelly_and_recompute_to_the_input():
    memory = _sj_memory()
    assert memory[1] == dict(
        workload=W, variant=SPIKINGJELLY["float32"], peak_mb=1073.742, input_mb=536.871, x_input=2.0
    )
    assert memory[4]["input_mb"] == 268.435  # against the bfloat16 input
    f32, bf16 = SPIKINGJELLY["float32"], SPIKINGJELLY["bf16"]
    assert _bench.ratios([], "cuda", memory) == {
        f"{W} peak memory lifexport LIF eager triton store float32 / {f32} (target <= 1)": 1.0,
        f"{W} peak memory lifexport LIF compiled triton store bf16 / {bf16} (target <= 1)": 0.5,
        f"{W} peak memory lifexport LIF compiled triton recompute float32 / input "
        "(target <= 3)": 3.0,
        f"{W} peak memory lifexport LIFRefrac compiled triton recompute bf16 / input "
        "(target <= 3)": 5.0,
    }


def test_the_memory_tables_keep_w1_and_add_one_at_spikingjelly_shape():
    result = _bench.Result(_bench.Config(device="cuda"), memory=_sj_memory())
    out = result.format()
    w1 = (
        "| peak memory, one W1 forward+backward | MB | x input size |\n|---|---:|---:|\n"
        "| lifexport eager triton | +1 | 0.0 |\n\nInput: 536.9 MB. CUDA: "
    )
    assert w1 in out
    sj = (
        f"| peak memory, one forward+backward at {W} | MB | input MB | x input size |\n"
        "|---|---:|---:|---:|\n"
        f"| {SPIKINGJELLY['float32']} | +1074 | 536.9 | 2.0 |\n"
    )
    assert sj in out and out.index(w1) < out.index(sj)
    assert f"| {W} peak memory lifexport LIF compiled triton store bf16 / " in out
    alone = _bench.Result(_bench.Config(device="cuda"), memory=_sj_memory()[1:]).format()
    assert "W1 forward+backward" not in alone and alone.endswith(f"{_bench.CUDA_MEMORY_METHOD}.")


def test_bf16_absent_names_each_reason(monkeypatch):
    assert _bench.bf16_absent(_bench.Config()).startswith("CUDA only: ")
    monkeypatch.setattr(_bench, "triton_available", lambda: True)
    assert _bench.bf16_absent(_bench.Config(device="cuda")) == ""
    no_compiled = _bench.Config(device="cuda", compiled=False)
    assert _bench.bf16_absent(no_compiled) == "left out (--no-compiled)"
    monkeypatch.setattr(_bench, "triton_available", lambda: False)
    assert _bench.bf16_absent(_bench.Config(device="cuda")) == "Triton is not installed"


def test_the_bf16_w1_row_runs_the_compiled_triton_layer_under_autocast(monkeypatch):
    calls = []

    def build(variant, linear, device):
        def run(x):
            calls.append((variant, linear, x.dtype, torch.is_autocast_enabled(device)))
            return x * 1

        return run

    monkeypatch.setattr(_bench, "bf16_absent", lambda cfg: "")
    monkeypatch.setattr(_bench, "build", build)
    result = _bench.Result(_bench.Config(repeats=1, warmup=0))

    def add(workload, variant, pass_, ms):
        result.rows.append((workload, variant, pass_))

    x = torch.rand(3, 2, 4)  # (T, B, N), float32 as every workload's input
    _bench._bf16_w1_rows(result.config, x, add, result, log=lambda line: None)
    assert result.failures == [] and result.notes == []
    assert result.rows == [("W1", _bench.BF16_W1, "forward"), ("W1", _bench.BF16_W1, "fwd+bwd")]
    assert set(calls) == {("lifexport compiled triton", None, torch.bfloat16, True)}


def test_in_precision_runs_bf16_under_autocast_and_float32_as_it_is():
    def seen(x):
        return x.dtype, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    x = torch.zeros(2, 1, 3, dtype=torch.bfloat16)
    assert _bench.in_precision(seen, "float32", "cpu") is seen
    assert _bench.in_precision(seen, "bf16", "cpu")(x) == (torch.bfloat16, True, torch.bfloat16)
    assert not torch.is_autocast_enabled("cpu")
