"""Sequence graphs in onnxruntime with K time steps per Scan iteration, K side by side.

Exports each workload once per K with ``lifexport.modules.unrolled_time_loop(K)``, checks that
every K gives K=1's outputs bit for bit, and prints the median latency of one run of the whole
sequence graph as a markdown table.

    .venv/bin/python scripts/bench_scan_unroll.py                        # CPU EP, both shapes
    .venv/bin/python scripts/bench_scan_unroll.py --shapes 100,32,512    # one shape
    .venv/bin/python scripts/bench_scan_unroll.py --provider CUDAExecutionProvider  # IO binding

Workloads: W1 = LIFRefrac; W2 = Linear(N, N) over all T*B rows, then LIFRefrac. On the CUDA EP
the input and outputs stay on the GPU (IO binding); ``run`` returns once the GPU is done.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import lifexport
from lifexport.modules import LIFRefrac, SequentialState, unrolled_time_loop
from lifexport.validation import make_session


@dataclass
class Config:
    ks: tuple[int, ...] = (1, 2, 4, 8)  # time steps per Scan iteration
    shapes: tuple[tuple[int, int, int], ...] = ((100, 32, 512), (500, 256, 1024))  # (T, B, N)
    workloads: tuple[str, ...] = ("W1", "W2")  # W1 LIFRefrac, W2 Linear + LIFRefrac
    provider: str = "CPUExecutionProvider"  # or CUDAExecutionProvider (IO binding)
    repeats: int = 20  # timed runs per cell at the small shape
    big_repeats: int = 5  # timed runs per cell at shapes with T * B * N > 10M
    warmup: int = 3  # untimed runs first (1 at the big shapes)
    threads: int = field(default_factory=torch.get_num_threads)  # CPU EP intra-op threads
    tf32: bool = False  # CUDA EP: TF32 matrix products (W2's Linear); off = float32 as torch


def model(workload: str, n: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if workload == "W1":
        return LIFRefrac().eval()
    return SequentialState(torch.nn.Linear(n, n), LIFRefrac()).eval()


def session(path: Path, cfg: Config) -> ort.InferenceSession:
    options = {} if cfg.provider == "CPUExecutionProvider" else {"use_tf32": str(int(cfg.tf32))}
    return make_session(path, cfg.provider, threads=cfg.threads, options=options)


def runner(sess: ort.InferenceSession, x: np.ndarray, cfg: Config) -> Callable[[], np.ndarray]:
    """``run() -> y`` as a host array; on the CUDA EP, a timed call keeps y on the GPU."""
    if cfg.provider == "CPUExecutionProvider":
        return lambda fetch=True: sess.run(None, {"x": x})[0]
    binding = sess.io_binding()
    x_device = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
    binding.bind_ortvalue_input("x", x_device)
    for output in sess.get_outputs():
        binding.bind_output(output.name, "cuda", 0)

    def run(fetch: bool = True):
        sess.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy() if fetch else None

    return run


def bench_cell(workload: str, shape: tuple[int, int, int], cfg: Config, folder: Path) -> dict:
    """Median ms per K for one workload and shape, the K runs interleaved (so load on a shared
    machine hits every K alike); raises if a K's output differs from the first K's."""
    t, b, n = shape
    net = model(workload, n)
    x = torch.rand(t, b, n, generator=torch.Generator().manual_seed(1)) * 2.0
    big = t * b * n > 10_000_000
    repeats, warmup = (cfg.big_repeats, 1) if big else (cfg.repeats, cfg.warmup)
    runs = {}
    for k in cfg.ks:
        path = folder / f"{workload}_k{k}.onnx"
        with unrolled_time_loop(k):
            lifexport.to_onnx(net, x[:2, :2], path, with_state=False)
        runs[k] = runner(session(path, cfg), x.numpy(), cfg)
        if not np.array_equal(runs[k](), runs[cfg.ks[0]]()):
            raise AssertionError(f"{workload} {shape}: K={k} output differs from K={cfg.ks[0]}")
    times: dict[int, list[float]] = {k: [] for k in cfg.ks}
    for repeat in range(warmup + repeats):
        for k, run in runs.items():
            start = time.perf_counter()
            run(fetch=False)
            if repeat >= warmup:
                times[k].append(1e3 * (time.perf_counter() - start))
    return dict(
        workload=workload,
        shape=shape,
        repeats=repeats,
        times={k: statistics.median(v) for k, v in times.items()},
    )


def table(rows: list[dict], cfg: Config) -> str:
    k0 = cfg.ks[0]
    head = ["workload", "(T, B, N)", "runs", *(f"K={k} ms" for k in cfg.ks)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        base = row["times"][k0]
        cells = [
            f"{row['times'][k]:.2f}" + ("" if k == k0 else f" ({base / row['times'][k]:.2f}x)")
            for k in cfg.ks
        ]
        head = f"| {row['workload']} | {row['shape']} | {row['repeats']} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=Config.provider)
    parser.add_argument("--ks", default="1,2,4,8", help="comma-separated K values")
    parser.add_argument("--shapes", nargs="+", help="T,B,N triples (default: both)")
    parser.add_argument("--workloads", default="W1,W2")
    parser.add_argument("--repeats", type=int, default=Config.repeats)
    parser.add_argument("--big-repeats", type=int, default=Config.big_repeats)
    parser.add_argument("--tf32", action="store_true", help="CUDA EP: allow TF32 (W2's Linear)")
    args = parser.parse_args(argv)
    cfg = Config(
        ks=tuple(int(k) for k in args.ks.split(",")),
        workloads=tuple(args.workloads.split(",")),
        provider=args.provider,
        repeats=args.repeats,
        big_repeats=args.big_repeats,
        tf32=args.tf32,
    )
    if args.shapes:
        cfg.shapes = tuple(tuple(int(v) for v in s.split(",")) for s in args.shapes)
    if cfg.provider not in ort.get_available_providers():
        parser.error(f"{cfg.provider} is not available here: {ort.get_available_providers()}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    cfg = parse(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for shape in cfg.shapes:
            for workload in cfg.workloads:
                rows.append(bench_cell(workload, shape, cfg, Path(folder)))
                print(f"  {workload} {shape}: {rows[-1]['times']}", flush=True)
    on_gpu = cfg.provider != "CPUExecutionProvider" and torch.cuda.is_available()
    device = torch.cuda.get_device_name() if on_gpu else "CPU"
    print(
        f"\n{cfg.provider} on {device}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
        f"intra-op threads {cfg.threads}"
        + ("" if cfg.provider == "CPUExecutionProvider" else f", TF32 {cfg.tf32}")
        + "; median ms per run of the sequence graph, speed-up over K=1 in brackets; every K's "
        "output equals K=1's bit for bit\n"
    )
    print(table(rows, cfg))


if __name__ == "__main__":
    main()
