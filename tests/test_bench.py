"""The benchmark package, :mod:`lifexport.bench`, on CPU: the rows it reports, its floors
(copies and a GEMM into buffers allocated once), its device and SpikingJelly checks, its
ratios and command line, and the light timer the demo imports alone. Tiny shapes and no
compiled rows keep it fast; no timing is asserted. The CUDA-only rows (bfloat16,
SpikingJelly's comparison) are driven here through stand-ins, and their ratios computed from
hand-made rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import lifexport
from lifexport import bench as benchmod
from lifexport.bench import floors, run, spikingjelly_rows, workloads
from lifexport.bench.config import make_input
from lifexport.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from lifexport.kernels import triton_available
from lifexport.modules import LIF, LIFRefrac

REPO = Path(__file__).resolve().parents[1]
TINY = ["--t", "3", "--b", "2", "--n", "8", "--repeats", "1", "--warmup", "0"]
TINY_CONFIG = dict(t=3, b=2, n=8, repeats=1, warmup=0)


def _table_rows(out: str) -> set[tuple[str, ...]]:
    return {tuple(cell.strip() for cell in line.split("|")[1:4]) for line in out.splitlines()}


def test_cpu_bench_reports_every_row_as_markdown():
    log: list[str] = []
    result = benchmod.bench(benchmod.Config(**TINY_CONFIG, compiled=False), log=log.append)
    out = result.format()
    assert result.failures == []
    assert out.startswith("`lifexport bench --t 3 --b 2 --n 8 --repeats 1 --warmup 0 --device cpu")
    assert f"- torch: {torch.__version__}" in out
    assert "- device: " in out and "- onnxruntime: " in out
    threads = torch.get_num_threads()
    assert f"- threads: torch {threads}; onnxruntime CPU EP {threads} (sequence)" in out
    assert "- floors: copies into preallocated buffers (out.copy_(x))" in out
    assert f"on {threads} torch thread(s)" in out
    assert "| workload | variant | pass | ms (median) |" in out
    rows = _table_rows(out)
    for row in [("-", "floor: copy", "forward"), ("-", "floor: gemm", "forward")]:
        assert row in rows
    for workload in ("W1", "W2"):
        for pass_ in ("forward", "fwd+bwd"):
            assert (workload, "lifexport eager scan", pass_) in rows
        assert (workload, "onnxruntime CPU EP sequence", "forward") in rows
        assert (workload, "onnxruntime CPU EP step B=1", "per step") in rows
    assert "| W1 forward lifexport eager scan / copy floor |" in out
    assert "| W2 forward lifexport eager scan / gemm floor |" in out
    assert "| peak memory, one W1 forward+backward | MB | x input size |" in out
    assert "| lifexport eager scan | +" in out and "VmHWM" in out  # the method is named
    # What is absent says why.
    assert "- lifexport eager triton: CUDA only" in out
    assert "- lifexport compiled scan: left out (--no-compiled)" in out
    assert "- SpikingJelly rows: not requested (--spikingjelly adds them)" in out
    assert any(line.startswith("  W1  lifexport eager scan") for line in log)  # row by row
    # The bfloat16 rows run on CUDA only: on CPU, a note says so and the rows are as they were.
    assert "- W1 lifexport compiled triton bf16 and floor: copy bf16: CUDA only" in out
    assert not [row for row in rows if "bf16" in " ".join(row)]
    # The ratios against the floors are those of the rows, as reported.
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in result.rows}
    copy = ms["-", "floor: copy", "forward"]
    expected = round(ms["W1", "lifexport eager scan", "forward"] / copy, 2)
    assert result.ratios()["W1 forward lifexport eager scan / copy floor"] == expected


def test_bench_json_has_rows_ratios_memory_environment_and_notes(capsys):
    argv = ["bench", *TINY, "--no-compiled", "--no-memory", "--no-norse", "--json"]
    assert main(argv) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["device"] == "cpu" and data["memory"] == []
    assert {r["variant"] for r in data["rows"]} >= {"floor: copy", "lifexport eager scan"}
    assert data["environment"]["torch"] == torch.__version__
    assert data["environment"]["command"].startswith("lifexport bench ")
    assert data["environment"]["threads"].startswith(f"torch {torch.get_num_threads()};")
    assert "W1 forward lifexport eager scan / copy floor" in data["ratios"]
    assert "peak memory: left out (--no-memory)" in data["notes"]
    assert "norse eager: left out (--no-norse)" in data["notes"]


# -- floors ----------------------------------------------------------------------------------


def _allocated_bytes(fn) -> int:
    """Bytes the CPU allocator hands out while ``fn`` runs (torch's profiler counts them)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(event.cpu_memory_usage for event in prof.events() if event.cpu_memory_usage > 0)


def test_the_floors_write_into_buffers_allocated_once_and_compute_the_real_thing():
    cfg = benchmod.Config(t=5, b=3, n=16)
    x = make_input(cfg)  # the run's own input
    runs = floors.floor_runs(cfg, x)
    assert list(runs) == ["floor: copy", "floor: gemm"]  # CPU: no bf16 row
    first = {name: floor() for name, floor in runs.items()}
    for name, floor in runs.items():
        again = floor()
        assert again.data_ptr() == first[name].data_ptr(), name  # the same buffer every call
        assert again.data_ptr() != x.data_ptr(), name  # a copy, not the input itself
        assert _allocated_bytes(floor) == 0, name  # nothing allocated while timed
    assert torch.equal(first["floor: copy"], x)
    # The GEMM floor is W2's product with the same weights, against numpy in float64.
    torch.manual_seed(1)
    weight = torch.nn.Linear(16, 16).weight.detach().numpy().astype(np.float64)  # (N, N)
    expected = x.reshape(-1, 16).numpy().astype(np.float64) @ weight.T  # (T*B, N)
    assert first["floor: gemm"].shape == (15, 16)
    np.testing.assert_allclose(first["floor: gemm"].numpy(), expected, rtol=1e-5, atol=1e-5)
    # The check above sees an allocation where there is one: the old floor, x.clone(), has.
    assert _allocated_bytes(lambda: x.clone()) >= x.numel() * x.element_size()


def test_the_floors_refuse_an_input_of_another_shape():
    cfg = benchmod.Config(t=5, b=3, n=16)
    with pytest.raises(ValueError, match=r"x must have shape \(5, 3, 16\) on 'cpu', got \(5, 3"):
        floors.floor_runs(cfg, torch.zeros(5, 3, 8))


def test_the_floor_rows_are_timed_on_the_floors(monkeypatch):
    calls = []
    cfg = benchmod.Config(t=2, b=1, n=4, repeats=2, warmup=1)
    x = torch.rand(2, 1, 4)  # (T, B, N)
    fake = {"floor: copy": lambda: calls.append("copy"), "floor: gemm": lambda: calls.append("g")}
    monkeypatch.setattr(floors, "floor_runs", lambda cfg_, x_: fake if x_ is x else {})
    rows = []
    floors.floor_rows(cfg, x, lambda *row: rows.append(row[:3]))
    assert rows == [("-", "floor: copy", "forward"), ("-", "floor: gemm", "forward")]
    assert calls == ["copy"] * 3 + ["g"] * 3  # warm-up and repeats of each


def test_the_floors_state_their_thread_count():
    assert floors.describe(3).endswith("on 3 torch thread(s)")
    env = benchmod.environment(benchmod.Config())
    assert env["floors"] == floors.describe(torch.get_num_threads())
    assert env["threads"].startswith(f"torch {torch.get_num_threads()};")


# -- the timer, alone ------------------------------------------------------------------------


def test_importing_the_demo_loads_the_timer_and_no_heavy_bench_module():
    code = (
        "import json, sys\n"
        "import lifexport._demo\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('lifexport.bench'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == ["lifexport.bench", "lifexport.bench.timing"]
    for heavy in ("ort_rows", "spikingjelly_rows", "memory", "report", "run", "floors"):
        assert f"lifexport.bench.{heavy}" not in loaded


def test_the_package_names_resolve_to_their_modules():
    from lifexport.bench import config, report, timing

    assert benchmod.median_ms is timing.median_ms
    assert benchmod.Config is config.Config and benchmod.Result is report.Result
    assert benchmod.bench is run.bench
    assert benchmod.spikingjelly_absent is spikingjelly_rows.spikingjelly_absent
    assert set(benchmod.__all__) <= set(dir(benchmod))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        benchmod.nothing  # noqa: B018


def test_synchronised_timing_waits_after_each_timed_call():
    calls = []
    ms = benchmod.median_ms(lambda: calls.append("run"), 3, 1, sync=lambda: calls.append("sync"))
    assert ms >= 0
    assert calls == ["run", "sync"] + ["run", "sync"] * 3


@pytest.mark.parametrize(
    "repeats, warmup, word",
    [(0, 1, "repeats must be an int >= 1"), (1, -1, "warmup"), (True, 0, "repeats")],
)
def test_the_timer_refuses_bad_counts(repeats, warmup, word):
    with pytest.raises(ValueError, match=word):
        benchmod.median_ms(lambda: None, repeats, warmup)


# -- devices, variants, the command line -----------------------------------------------------


def test_an_unknown_device_is_a_usage_error_in_one_line(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(benchmod, "bench", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as info:
        main(["bench", "--device", "tpu"])
    assert info.value.code == EXIT_USAGE and ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--device" in err and "'tpu'" in err and "'cpu'" in err and "'cuda'" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_usage_error_in_one_line(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(benchmod, "bench", lambda *a, **k: ran.append(a))
    assert main(["bench", "--device", "cuda"]) == EXIT_USAGE
    assert ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("lifexport bench: error: argument --device: expected a device")
    assert "'cuda'" in err and "torch.cuda.is_available() is False" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_itself_refuses_a_device_torch_cannot_use():
    with pytest.raises(ValueError, match="Config.device 'cuda' cannot run"):
        benchmod.bench(benchmod.Config(device="cuda"))
    with pytest.raises(ValueError, match="Config.device must be one of"):
        benchmod.Config(device="tpu")
    assert benchmod.device_problem("tpu") == "unknown device 'tpu'; expected one of ('cpu', 'cuda')"
    assert benchmod.device_problem("cpu") == ""


def test_the_spikingjelly_rows_say_why_they_are_absent():
    leave_out = dict(compiled=False, memory=False, norse=False, onnxruntime=False)
    cfg = benchmod.Config(**TINY_CONFIG, **leave_out, spikingjelly=True)
    out = benchmod.bench(cfg, log=lambda line: None).format()
    assert "- SpikingJelly rows: absent: " in out
    assert "its Triton LIF runs on CUDA only (use --device cuda)" in out
    assert "spikingjelly LIFNode" not in out


def test_spikingjelly_absent_names_each_reason(monkeypatch):
    monkeypatch.setattr(spikingjelly_rows, "have", lambda module: module != "spikingjelly")
    assert "spikingjelly is not installed" in benchmod.spikingjelly_absent("cuda")
    assert "CUDA only" not in benchmod.spikingjelly_absent("cuda")
    monkeypatch.setattr(spikingjelly_rows, "have", lambda module: True)
    assert benchmod.spikingjelly_absent("cuda") == ""
    only_cuda = "its Triton LIF runs on CUDA only (use --device cuda)"
    assert benchmod.spikingjelly_absent("cpu") == only_cuda


def test_cpu_runs_no_triton_rows_and_say_why():
    notes = []
    chosen = benchmod.variants(benchmod.Config(), notes)
    assert "lifexport eager scan" in chosen and "lifexport compiled scan" in chosen
    assert not [v for v in chosen if v.endswith("triton")]
    assert len([n for n in notes if "TRITON_INTERPRET=1" in n]) == 2


def test_the_command_line_repeats_the_run():
    cfg = benchmod.Config(t=7, n=16, device="cpu", norse=False, spikingjelly=True)
    words = benchmod.command_line(cfg).split()
    assert words[:2] == ["lifexport", "bench"]
    args = build_parser().parse_args(words[1:])
    assert benchmod.Config(**{name: getattr(args, name) for name in vars(cfg)}) == cfg


# -- ratios ----------------------------------------------------------------------------------


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
    got = benchmod.ratios(rows, "cuda")
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
            ("-", "floor: copy", "forward", 0.1),
            ("-", "floor: gemm", "forward", 16.0),
            ("W1", "norse eager", "fwd+bwd", 40.0),
            ("W1", "lifexport eager scan", "fwd+bwd", 50.0),
            ("W1", "lifexport compiled scan", "forward", 2.0),
            ("W1", "lifexport compiled scan", "fwd+bwd", 4.0),
            ("W2", "lifexport compiled scan", "forward", 20.0),
        ]
    )
    got = benchmod.ratios(rows, "cpu")
    assert got["W1 fwd+bwd norse eager / lifexport compiled scan (target >= 10)"] == 10.0
    assert got["W1 fwd+bwd norse eager / lifexport eager scan"] == 0.8
    assert got["W1 forward lifexport compiled scan / copy floor (target <= 4)"] == 20.0
    assert got["W2 forward lifexport compiled scan / gemm floor (target <= 1.3)"] == 1.25
    assert len(got) == 4


def test_a_failing_measurement_is_reported_and_the_others_still_run(monkeypatch):
    real = workloads.build

    def build(variant, linear, device):
        if linear is not None:
            raise RuntimeError("W2 broke\nsecond line")
        return real(variant, linear, device)

    monkeypatch.setattr(run, "build", build)
    leave_out = dict(compiled=False, memory=False, norse=False, onnxruntime=False)
    cfg = benchmod.Config(**TINY_CONFIG, **leave_out)
    log: list[str] = []
    result = benchmod.bench(cfg, log=log.append)
    out = result.format()
    assert result.failures == ["W2 lifexport eager scan: RuntimeError: W2 broke"]
    assert "| W1 | lifexport eager scan | fwd+bwd |" in out
    assert "FAILED:\n- W2 lifexport eager scan: RuntimeError: W2 broke" in out
    assert "  FAILED W2 lifexport eager scan: RuntimeError: W2 broke" in log


def test_a_failing_measurement_fails_the_command(capsys, monkeypatch):
    def build(variant, linear, device):
        raise RuntimeError("broke")

    monkeypatch.setattr(run, "build", build)
    argv = ["bench", *TINY, "--no-compiled", "--no-memory", "--no-norse", "--no-onnxruntime"]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert "| - | floor: copy | forward |" in out  # the rows that ran are printed
    assert err.splitlines()[-1].startswith("lifexport bench: 2 measurement(s) failed: W1 ")


# -- beside SpikingJelly, through stand-ins --------------------------------------------------

SJ = "LIF T=3 B=2 N=5"  # the SpikingJelly workload at the stand-ins' shape
SPIKINGJELLY = {p: f"spikingjelly LIFNode (triton) {p}" for p in ("float32", "bf16")}
LIFEXPORT = [
    benchmod.lif_variant(layer, kind, mode, precision)
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
    monkeypatch.setattr(spikingjelly_rows, "spikingjelly_absent", lambda device: "")
    monkeypatch.setattr(spikingjelly_rows, "triton_available", lambda: True)
    monkeypatch.setattr(spikingjelly_rows, "LIF", layer("LIF"))
    monkeypatch.setattr(spikingjelly_rows, "LIFRefrac", layer("LIFRefrac"))
    monkeypatch.setattr(spikingjelly_rows, "lifexport_compile", compile_)
    monkeypatch.setattr(spikingjelly_rows, "cuda_peak", lambda run, x: 10**6 * x.element_size())
    monkeypatch.setattr(spikingjelly_rows, "SPIKINGJELLY_SHAPE", (3, 2, 5))
    return seen


def _spikingjelly_result(**config) -> benchmod.Result:
    result = benchmod.Result(benchmod.Config(repeats=1, warmup=0, **config))

    def add(workload, variant, pass_, ms):
        result.rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=ms))

    spikingjelly_rows.spikingjelly_rows(result.config, add, result, log=lambda line: None)
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
    monkeypatch.setattr(spikingjelly_rows, "LIF", LIF)
    monkeypatch.setattr(spikingjelly_rows, "LIFRefrac", LIFRefrac)
    monkeypatch.setattr(spikingjelly_rows, "lifexport_compile", lifexport.compile)

    def peak(run, x):  # one forward+backward, as the CUDA measurement runs it
        run(x.detach().clone().requires_grad_()).sum().backward()
        return 10**6

    monkeypatch.setattr(spikingjelly_rows, "cuda_peak", peak)
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
    monkeypatch.setattr(spikingjelly_rows, "triton_available", lambda: False)
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
    assert benchmod.ratios(rows, "cuda") == {
        f"{W} forward lifexport LIF eager triton store float32 / {f32}": 0.5,
        f"{W} fwd+bwd lifexport LIF eager triton store float32 / {f32} (target <= 0.8)": 0.8,
        f"{W} fwd+bwd lifexport LIF compiled triton recompute float32 / {f32} (target <= 0.8)": 1.5,
        f"{W} fwd+bwd lifexport LIF compiled triton store bf16 / {bf16} (target <= 0.8)": 0.75,
        f"{W} fwd+bwd lifexport LIFRefrac compiled triton store bf16 / "
        "lifexport LIF compiled triton store bf16 (target <= 1.2)": 1.2,
        f"{W} fwd+bwd lifexport LIFRefrac compiled triton recompute float32 / "
        "lifexport LIF compiled triton recompute float32 (target <= 1.2)": 1.1,
    }
    assert not [k for k in benchmod.ratios(rows, "cpu") if "target" in k]  # GPU targets


def _sj_memory() -> list[dict]:
    """Hand-made memory rows at SpikingJelly's shape (meta tensors: no memory taken)."""
    x32 = torch.empty(32, 64, 65536, device="meta")  # (T, B, N)
    x16 = x32.to(torch.bfloat16)
    b32, b16 = 4 * x32.numel(), 2 * x16.numel()
    row = benchmod.memory_row
    return [
        row("W1", "lifexport eager triton", 10**6, x32),
        row(W, SPIKINGJELLY["float32"], 2 * b32, x32),
        row(W, "lifexport LIF eager triton store float32", 2 * b32, x32),
        row(W, "lifexport LIF compiled triton recompute float32", 3 * b32, x32),
        row(W, SPIKINGJELLY["bf16"], 4 * b16, x16),
        row(W, "lifexport LIF compiled triton store bf16", 2 * b16, x16),
        row(W, "lifexport LIFRefrac compiled triton recompute bf16", 5 * b16, x16),
    ]


def test_memory_ratios_hold_store_to_spikingjelly_and_recompute_to_the_input():
    memory = _sj_memory()
    assert memory[1] == dict(
        workload=W, variant=SPIKINGJELLY["float32"], peak_mb=1073.742, input_mb=536.871, x_input=2.0
    )
    assert memory[4]["input_mb"] == 268.435  # against the bfloat16 input
    f32, bf16 = SPIKINGJELLY["float32"], SPIKINGJELLY["bf16"]
    assert benchmod.ratios([], "cuda", memory) == {
        f"{W} peak memory lifexport LIF eager triton store float32 / {f32} (target <= 1)": 1.0,
        f"{W} peak memory lifexport LIF compiled triton store bf16 / {bf16} (target <= 1)": 0.5,
        f"{W} peak memory lifexport LIF compiled triton recompute float32 / input "
        "(target <= 3)": 3.0,
        f"{W} peak memory lifexport LIFRefrac compiled triton recompute bf16 / input "
        "(target <= 3)": 5.0,
    }


def test_the_memory_tables_keep_w1_and_add_one_at_spikingjelly_shape():
    result = benchmod.Result(benchmod.Config(device="cuda"), memory=_sj_memory())
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
    alone = benchmod.Result(benchmod.Config(device="cuda"), memory=_sj_memory()[1:]).format()
    assert "W1 forward+backward" not in alone and alone.endswith(f"{benchmod.CUDA_MEMORY_METHOD}.")


# -- bfloat16 --------------------------------------------------------------------------------


def test_bf16_absent_names_each_reason(monkeypatch):
    assert benchmod.bf16_absent(benchmod.Config()).startswith("CUDA only: ")
    monkeypatch.setattr(workloads, "triton_available", lambda: True)
    assert benchmod.bf16_absent(benchmod.Config(device="cuda")) == ""
    no_compiled = benchmod.Config(device="cuda", compiled=False)
    assert benchmod.bf16_absent(no_compiled) == "left out (--no-compiled)"
    monkeypatch.setattr(workloads, "triton_available", lambda: False)
    assert benchmod.bf16_absent(benchmod.Config(device="cuda")) == "Triton is not installed"


def test_the_bf16_w1_row_runs_the_compiled_triton_layer_under_autocast(monkeypatch):
    calls = []

    def build(variant, linear, device):
        def run(x):
            calls.append((variant, linear, x.dtype, torch.is_autocast_enabled(device)))
            return x * 1

        return run

    monkeypatch.setattr(workloads, "bf16_absent", lambda cfg: "")
    monkeypatch.setattr(workloads, "build", build)
    result = benchmod.Result(benchmod.Config(repeats=1, warmup=0))

    def add(workload, variant, pass_, ms):
        result.rows.append((workload, variant, pass_))

    x = torch.rand(3, 2, 4)  # (T, B, N), float32 as every workload's input
    workloads.bf16_w1_rows(result.config, x, add, result, log=lambda line: None)
    assert result.failures == [] and result.notes == []
    bf16 = benchmod.BF16_W1
    assert result.rows == [("W1", bf16, "forward"), ("W1", bf16, "fwd+bwd")]
    assert set(calls) == {("lifexport compiled triton", None, torch.bfloat16, True)}


def test_in_precision_runs_bf16_under_autocast_and_float32_as_it_is():
    def seen(x):
        return x.dtype, torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    x = torch.zeros(2, 1, 3, dtype=torch.bfloat16)
    assert benchmod.in_precision(seen, "float32", "cpu") is seen
    assert benchmod.in_precision(seen, "bf16", "cpu")(x) == (torch.bfloat16, True, torch.bfloat16)
    assert not torch.is_autocast_enabled("cpu")
