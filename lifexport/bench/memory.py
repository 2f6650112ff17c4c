"""Peak memory of one forward+backward, above what was allocated before it (the input is
allocated before; its gradient and the spikes count): on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set of a fresh process (Linux's
VmHWM, reset through ``/proc/self/clear_refs``), where torch's CPU allocator has no counter."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from lifexport.bench.config import Config, Run, first_line, make_input
from lifexport.bench.workloads import build

CPU_MEMORY_METHOD = (
    "CPU: peak resident set (VmHWM, reset through /proc/self/clear_refs) of a fresh process "
    "over one W1 forward+backward, minus its resident set before (input allocated, graphs "
    "compiled at T=2)"
)
CUDA_MEMORY_METHOD = (
    "CUDA: torch.cuda.max_memory_allocated over one forward+backward minus "
    "torch.cuda.memory_allocated before it (input allocated, graphs compiled)"
)


def cuda_peak(run: Run, x: torch.Tensor) -> int:
    """Bytes allocated at the peak of one forward+backward above those allocated before."""
    x_grad = x.detach().clone().requires_grad_()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run(x_grad).sum().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no {key} in /proc/self/status")
    return int(match.group(1))


def peak_child(spec: str) -> None:
    """In a fresh process: print the resident bytes at the peak of one W1 forward+backward
    of ``spec``'s variant (JSON: variant, config) above the resident bytes before it."""
    spec_data = json.loads(spec)
    cfg = Config(**spec_data["config"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = build(spec_data["variant"], None, "cpu")
    small = make_input(cfg, (2, cfg.b, cfg.n)).requires_grad_()
    run(small).sum().backward()  # compiles, and makes every lazy first-call allocation
    x = make_input(cfg).requires_grad_()
    del small
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status_kb("VmRSS")
    run(x).sum().backward()
    print(json.dumps({"peak_bytes": 1024 * (_status_kb("VmHWM") - base)}))


def cpu_peak(variant: str, cfg: Config) -> int:
    """:func:`peak_child` in a subprocess: a fresh process, whose allocator holds no memory
    freed by earlier rows (which would hide new allocations from the resident set)."""
    spec = json.dumps(dict(variant=variant, config=asdict(cfg)))
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, path) if p))
    code = "import sys; from lifexport.bench.memory import peak_child; peak_child(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, spec], capture_output=True, text=True, env=env
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the measuring process failed (exit {done.returncode}): {error}")
    return int(json.loads(lines[-1])["peak_bytes"])


def memory_row(workload: str, variant: str, peak: int, x: torch.Tensor) -> dict:
    """A row of the memory table: ``peak`` bytes above the start, against the input ``x``."""
    input_bytes = x.numel() * x.element_size()
    return dict(
        workload=workload,
        variant=variant,
        peak_mb=round(peak / 1e6, 3),
        input_mb=round(input_bytes / 1e6, 3),
        x_input=round(peak / input_bytes, 2),
    )


def peak_row(
    workload: str,
    variant: str,
    measure: Callable[[], int],
    x: torch.Tensor,
    log: Callable[[str], None],
    notes: list[str],
) -> dict | None:
    """:func:`memory_row` of ``measure()``'s peak, or None with the reason in ``notes``."""
    try:
        peak = measure()
    except (OSError, RuntimeError, ValueError) as error:  # out of memory is a RuntimeError
        notes.append(f"peak memory of {variant}: not measured ({first_line(error)})")
        return None
    row = memory_row(workload, variant, peak, x)
    log(f"  mem {variant:26s} +{row['peak_mb']:.4g} MB ({row['x_input']}x the input)")
    return row


def memory_rows(
    cfg: Config, runs: dict[str, Run], x: torch.Tensor, log: Callable[[str], None], notes: list
) -> list[dict]:
    """Peak memory of one W1 forward+backward for each variant in ``runs``."""
    rows = []
    for variant, run in runs.items():

        def measure(variant=variant, run=run) -> int:
            return cuda_peak(run, x) if cfg.device == "cuda" else cpu_peak(variant, cfg)

        row = peak_row("W1", variant, measure, x, log, notes)
        if row is not None:
            rows.append(row)
    return rows
