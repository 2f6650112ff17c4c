"""One run's result: its environment, the timed rows and memory rows, the ratios the targets
are stated in, and the markdown report.

Ratios, from the rows of one run, with the targets where one is set: lifexport against the
floors (W1 forward against the copy floor, bf16 too; W2 forward against the GEMM floor) and
Norse, onnxruntime against ``lifexport.compile``; beside SpikingJelly, per dtype and mode:
lifexport LIF / SpikingJelly (forward+backward <= 0.8), LIFRefrac / LIF (forward+backward
<= 1.2), peak memory of ``store`` / SpikingJelly's (<= 1) and of ``recompute`` / the input
(<= 3); the recurrent W3's (see :mod:`lifexport.bench.recurrent`). The floors are copies
into preallocated buffers and the GEMMs into preallocated outputs (see
:mod:`lifexport.bench.floors`), on the thread count the report states.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lifexport.bench.config import MEMORY_MODES, Config, first_line, have
from lifexport.bench.floors import describe as describe_floors
from lifexport.bench.memory import CPU_MEMORY_METHOD, CUDA_MEMORY_METHOD
from lifexport.bench.recurrent import recurrent_ratios
from lifexport.bench.workloads import BF16_W1, VARIANTS, lif_variant


def _version(module: str) -> str:
    if not have(module):
        return "not installed"
    try:
        return str(getattr(__import__(module), "__version__", "?"))
    except Exception as error:  # reported, not fatal: the rows say what ran
        return f"does not import ({type(error).__name__})"


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        name = found.group(1).strip() if found else name
    return f"{name}, {os.cpu_count()} cores"


def command_line(cfg: Config) -> str:
    """The ``lifexport bench`` command that repeats this run."""
    words = ["lifexport", "bench"]
    always = ("t", "b", "n", "device")  # the shape and the device, even at their defaults
    for name, default in asdict(Config()).items():
        value = getattr(cfg, name)
        if isinstance(default, bool) and value != default:
            words.append(f"--{name}" if value else f"--no-{name}")
        elif not isinstance(default, bool) and (value != default or name in always):
            words += [f"--{name}", str(value)]
    return " ".join(words)


def environment(cfg: Config) -> dict[str, str]:
    """What the figures depend on: device, threads, floors, library versions, precision, the
    command."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    threads = torch.get_num_threads()
    return {
        "command": command_line(cfg),
        "device": _device_name(cfg.device),
        "threads": (
            f"torch {threads}; onnxruntime CPU EP {cfg.threads or threads} (sequence), "
            "1 (step graph)"
        ),
        "floors": describe_floors(threads),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "triton": _version("triton"),
        "norse": _version("norse"),
        "spikingjelly": _version("spikingjelly"),
        "float32 matmul": "TF32" if tf32 else "strict float32 (TF32 off; also on the CUDA EP)",
    }


@dataclass
class Result:
    """One run: its configuration, environment, timed rows, memory rows, and notes on what
    was left out and why."""

    config: Config
    rows: list[dict] = field(default_factory=list)  # workload, variant, pass_, ms
    memory: list[dict] = field(default_factory=list)  # workload, variant, peak_mb, input_mb,
    # x_input (see memory.memory_row)
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    failures: list[str] = field(default_factory=list)  # what raised while measuring
    environment: dict[str, str] = field(default_factory=dict)

    def attempt(self, what: str, fn: Callable[[], object], log: Callable[[str], None]) -> None:
        """Run one measurement; if it raises, record the failure and go on with the next."""
        try:
            fn()
        except Exception as error:  # reported in the output and the exit status
            message = f"{what}: {type(error).__name__}: {first_line(error)}"
            self.failures.append(message)
            log(f"  FAILED {message}")

    def ratios(self) -> dict[str, float]:
        """:func:`ratios` of this run's rows and memory rows."""
        return ratios(self.rows, self.config.device, self.memory)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready, with the ratios and how memory was measured."""
        data = asdict(self)
        data["ratios"] = self.ratios()
        data["memory_method"] = self.memory_method
        return data

    @property
    def memory_method(self) -> str:
        """How the peak memory was measured on this run's device."""
        return CUDA_MEMORY_METHOD if self.config.device == "cuda" else CPU_MEMORY_METHOD

    def _memory_lines(self) -> list[str]:
        """The memory tables: W1's at the run's shape, then one per other workload, whose
        rows differ in their input's dtype and so in its size."""
        workloads: dict[str, list[dict]] = {}
        for m in self.memory:
            workloads.setdefault(m["workload"], []).append(m)
        w1 = workloads.pop("W1", [])
        lines = []
        if w1:
            lines += ["", "| peak memory, one W1 forward+backward | MB | x input size |"]
            lines += ["|---|---:|---:|"]
            lines += [f"| {m['variant']} | +{m['peak_mb']:.4g} | {m['x_input']} |" for m in w1]
            lines += ["", f"Input: {w1[0]['input_mb']:.4g} MB. {self.memory_method}."]
        for workload, rows in workloads.items():
            header = f"peak memory, one forward+backward at {workload}"
            lines += ["", f"| {header} | MB | input MB | x input size |", "|---|---:|---:|---:|"]
            lines += [
                f"| {m['variant']} | +{m['peak_mb']:.4g} | {m['input_mb']:.4g} | {m['x_input']} |"
                for m in rows
            ]
        if workloads and not w1:
            lines += ["", f"{self.memory_method}."]
        return lines

    def format(self) -> str:
        """Markdown: the environment, the timings, the ratios, peak memory, the notes."""
        cfg = self.config
        lines = [f"`{self.environment.get('command', command_line(cfg))}`", ""]
        lines += [f"- {k}: {v}" for k, v in self.environment.items() if k != "command"]
        synchronised = "; CUDA-synchronised" if cfg.device == "cuda" else ""
        lines += [
            f"- input: (T, B, N) = ({cfg.t}, {cfg.b}, {cfg.n}) float32; medians of "
            f"{cfg.repeats} runs after {cfg.warmup} warm-up runs{synchronised}",
            "",
            "| workload | variant | pass | ms (median) |",
            "|---|---|---|---:|",
        ]
        lines += [
            f"| {r['workload']} | {r['variant']} | {r['pass_']} | {r['ms']:.3f} |"
            for r in self.rows
        ]
        summary = self.ratios()
        if summary:
            lines += ["", "| ratio (same run) | value |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in summary.items()]
        lines += self._memory_lines()
        if self.failures:
            lines += ["", "FAILED:"] + [f"- {failure}" for failure in self.failures]
        if self.notes:
            lines += ["", "Not measured:"] + [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def _target(device: str, kind: str, workload: str, variant: str, pass_: str) -> str:
    """The bound set for a ratio, as " (target ...)", or ""."""
    eager, compiled = " eager " in variant, variant == "lifexport compiled scan"
    w1_training = (workload, pass_) == ("W1", "fwd+bwd")
    training = pass_ == "fwd+bwd"
    if device == "cuda":
        bound = {
            "copy": "<= 3",
            "gemm": "<= 1.3",
            "norse": ">= 5" if eager else (">= 30" if w1_training else ""),
            "CUDA EP": "<= 1.5 at (500, 256, 1024)",
            "EP": "< 1 at (100, 32, 512)",
            "spikingjelly": "<= 0.8" if training else "",
            "LIFRefrac": "<= 1.2" if training else "",
            "memory spikingjelly": "<= 1",
            "memory input": "<= 3",
        }.get(kind, "")
    else:  # the CPU targets, which the compiled scan path is held to
        bound = {
            "copy": "<= 4",
            "gemm": "<= 1.3",
            "norse": {"W1": ">= 10", "W2": ">= 3"}.get(workload, "") if pass_ == "fwd+bwd" else "",
            "CPU EP": "<= 1.2" if workload == "W2" else "",
        }.get(kind, "")
        bound = bound if compiled else ""
    return f" (target {bound})" if bound else ""


def ratios(
    rows: list[dict], device: str = "cpu", memory: list[dict] | None = None
) -> dict[str, float]:
    """The ratios the targets are stated in, from the rows and memory rows of one run (those
    present): lifexport against the floors and against Norse (W3's too), onnxruntime against
    ``lifexport.compile`` and its CUDA EP against its CPU EP; beside SpikingJelly, per input
    dtype and memory mode, lifexport's LIF against SpikingJelly's (time and peak memory),
    LIFRefrac against LIF, and the ``recompute`` mode's peak memory against the input."""
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in rows}
    out: dict[str, float] = {}

    def put(kind: str, w: str, p: str, num: str, den: str, text: str = "") -> None:
        top, bottom = (w, num, p), ("-" if den.startswith("floor") else w, den, p)
        if top in ms and bottom in ms and ms[bottom] > 0:
            variant = den if den.startswith("lifexport") else num
            target = _target(device, kind, w, variant, p)
            out[f"{w} {p} {text or f'{num} / {den}'}{target}"] = ms[top] / ms[bottom]

    ours = [v for v in VARIANTS if v.startswith("lifexport")]
    for w, floor in (("W1", "copy"), ("W2", "gemm")):
        for v in ours:
            put(floor, w, "forward", v, f"floor: {floor}", f"{v} / {floor} floor")
        if w == "W1":
            put(floor, w, "forward", BF16_W1, "floor: copy bf16", f"{BF16_W1} / copy bf16 floor")
        for p in ("forward", "fwd+bwd"):
            for v in ours:
                put("norse", w, p, "norse eager", v)
        for ep in ("CUDA EP", "CPU EP"):
            for v in ("lifexport compiled scan", "lifexport compiled triton"):
                put(ep, w, "forward", f"onnxruntime {ep} sequence", v)
        cuda, cpu = (f"onnxruntime {ep} sequence" for ep in ("CUDA EP", "CPU EP"))
        put("EP", w, "forward", cuda, cpu, "onnxruntime CUDA EP / CPU EP sequence")
    for w, variant, p in list(ms):
        if variant.startswith("spikingjelly"):
            precision = variant.rsplit(" ", 1)[-1]
            for kind in ("eager", "compiled"):
                for mode in MEMORY_MODES:
                    put("spikingjelly", w, p, lif_variant("LIF", kind, mode, precision), variant)
    for w, variant, p in list(ms):
        if variant.startswith("lifexport LIFRefrac "):
            put("LIFRefrac", w, p, variant, variant.replace(" LIFRefrac ", " LIF ", 1))
    out.update(recurrent_ratios(ms))
    out.update(_memory_ratios(memory or [], device))
    return {k: round(v, 2) for k, v in out.items()}


def _memory_ratios(memory: list[dict], device: str) -> dict[str, float]:
    """Beside SpikingJelly: the ``store`` mode's peak memory against SpikingJelly's in the
    same dtype, and the ``recompute`` mode's against the input."""
    peak = {(m["workload"], m["variant"]): m for m in memory}
    out: dict[str, float] = {}
    for (w, variant), m in peak.items():
        if variant.startswith("spikingjelly") and m["peak_mb"] > 0:
            precision = variant.rsplit(" ", 1)[-1]
            for kind in ("eager", "compiled"):
                store = lif_variant("LIF", kind, "store", precision)
                if (w, store) in peak:
                    target = _target(device, "memory spikingjelly", w, store, "")
                    text = f"{w} peak memory {store} / {variant}{target}"
                    out[text] = peak[w, store]["peak_mb"] / m["peak_mb"]
    for (w, variant), m in peak.items():
        if variant.startswith("lifexport ") and " recompute " in variant:
            target = _target(device, "memory input", w, variant, "")
            out[f"{w} peak memory {variant} / input{target}"] = m["x_input"]
    return out
