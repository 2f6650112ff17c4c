"""``lifexport bench``: the speed tables of :mod:`lifexport.bench`, one option per
:class:`~lifexport.bench.Config` field."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from lifexport.cli._arguments import command, count, positive_int
from lifexport.cli._common import EXIT_MISMATCH, EXIT_OK, UsageError, emit, one_line


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure and print the markdown tables (``--json``: one document); progress on stderr.
    Exit 1 when a measurement raised (the others are still printed)."""
    from lifexport import bench as benchmod

    cfg = benchmod.Config(**{f.name: getattr(args, f.name) for f in fields(benchmod.Config)})
    problem = benchmod.device_problem(cfg.device)
    if problem:  # before any work: `--device cuda` where torch sees no GPU
        raise UsageError(
            f"argument --device: expected a device torch can use here, got {cfg.device!r}: "
            f"{problem}"
        )
    result = benchmod.bench(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    emit(args, result.to_dict(), result.format())
    if result.failures:  # the other rows are printed; the run as a whole did not succeed
        print(
            f"lifexport bench: {len(result.failures)} measurement(s) failed: "
            f"{one_line('; '.join(result.failures))}",
            file=sys.stderr,
        )
        return EXIT_MISMATCH
    return EXIT_OK


def add_bench(commands) -> None:
    from lifexport import bench as benchmod

    bench = command(
        commands, "bench", "speed: eager, compiled, onnxruntime, Norse, floors", cmd_bench
    )
    default = benchmod.Config()
    for name, kind, help in (  # one option per Config field
        ("t", positive_int, "time steps"),
        ("b", positive_int, "batch"),
        ("n", positive_int, "neurons (and Linear width)"),
        ("repeats", positive_int, "timed runs per figure (the median is reported)"),
        ("warmup", count, "untimed runs first"),
        ("threads", count, "torch and onnxruntime threads; 0 keeps torch's default"),
    ):
        bench.add_argument(
            f"--{name}",
            type=kind,
            default=getattr(default, name),
            help=f"{help} (default {getattr(default, name)})",
        )
    bench.add_argument(
        "--device",
        choices=benchmod.DEVICES,
        default=default.device,
        help=f"where torch runs, and onnxruntime's CUDA EP with cuda (default {default.device})",
    )
    for name, help in (
        ("norse", "include Norse 1.1.0 when it is installed"),
        ("onnxruntime", "include the onnxruntime rows"),
        ("compiled", "include the lifexport.compile rows (each graph compiles first)"),
        ("memory", "measure the peak memory of one W1 forward+backward per variant"),
        ("spikingjelly", "add SpikingJelly's Triton LIF vs lifexport LIF at T=32 B=64 N=65536"),
        ("recurrent", "add W3, LIFRefracRecurrent(N, N) at (T, B, N), and its GEMM floor"),
        ("feedforward", "measure W1 and W2 (with their floors, onnxruntime, memory, bf16 rows)"),
    ):
        bench.add_argument(
            f"--{name}",
            action=argparse.BooleanOptionalAction,
            default=getattr(default, name),
            help=f"{help} (default: {'yes' if getattr(default, name) else 'no'})",
        )
