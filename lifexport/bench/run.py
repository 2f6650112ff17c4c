"""One benchmark run: every row of a :class:`~lifexport.bench.config.Config`, in order (the
floors, W1 and W2 per variant with their onnxruntime rows, W1's peak memory, the bf16 W1 row,
SpikingJelly's comparison, the recurrent W3 with its floor), each measured on its own and
logged as it comes."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lifexport.bench.config import Config, Run, device_problem, make_input, time_both
from lifexport.bench.floors import floor_rows
from lifexport.bench.memory import memory_rows
from lifexport.bench.ort_rows import ort_rows
from lifexport.bench.recurrent import recurrent_rows
from lifexport.bench.report import Result, environment
from lifexport.bench.spikingjelly_rows import spikingjelly_rows
from lifexport.bench.workloads import bf16_w1_rows, build, linear, variants
from lifexport.modules import LIFRefrac, SequentialState


def bench(cfg: Config, log: Callable[[str], None] = print) -> Result:
    """Measure every row of ``cfg`` (see :mod:`lifexport.bench`), logging each as it comes.

    Raises:
        ValueError: ``cfg.device`` is not usable here (see :func:`device_problem`).
    """
    problem = device_problem(cfg.device)
    if problem:
        raise ValueError(f"Config.device {cfg.device!r} cannot run: {problem}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    result = Result(cfg)

    def add(workload, variant, pass_, ms):
        result.rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=round(ms, 4)))
        log(f"  {workload:3s} {variant:30s} {pass_:8s} {ms:9.3f} ms")

    if cfg.feedforward:
        _feedforward_rows(cfg, add, result, log)
    else:
        result.notes.append(
            "W1, W2 and their floors, onnxruntime, peak memory and bf16 rows: left out "
            "(--no-feedforward)"
        )
    if cfg.spikingjelly:
        spikingjelly_rows(cfg, add, result, log)
    else:
        result.notes.append("SpikingJelly rows: not requested (--spikingjelly adds them)")
    if cfg.recurrent:
        recurrent_rows(cfg, add, result, log)  # last: it resets compilation
    else:
        result.notes.append("W3 recurrent rows: not requested (--recurrent adds them)")
    result.environment = environment(cfg)  # last: spikingjelly is imported as its rows need
    return result


def _feedforward_rows(
    cfg: Config, add: Callable, result: Result, log: Callable[[str], None]
) -> None:
    """The floors, W1 and W2 per variant with their onnxruntime rows, W1's peak memory and
    the bf16 W1 row."""
    x = make_input(cfg)
    floor_rows(cfg, x, add)
    w1_runs: dict[str, Run] = {}
    for workload in ("W1", "W2"):
        layer = linear(cfg) if workload == "W2" else None
        for variant in variants(cfg, result.notes if workload == "W1" else []):

            def measure(variant=variant, layer=layer, workload=workload):
                run = build(variant, layer, cfg.device)
                forward, forward_backward = time_both(cfg, run, x)
                add(workload, variant, "forward", forward)
                add(workload, variant, "fwd+bwd", forward_backward)
                if workload == "W1":
                    w1_runs[variant] = run

            result.attempt(f"{workload} {variant}", measure, log)
        if cfg.onnxruntime:
            model = LIFRefrac() if layer is None else SequentialState(layer, LIFRefrac())
            result.attempt(
                f"{workload} onnxruntime export",
                lambda w=workload, m=model: ort_rows(w, m, x, cfg, add, result, log),
                log,
            )
    if not cfg.onnxruntime:
        result.notes.append("onnxruntime rows: left out (--no-onnxruntime)")
    if cfg.memory:
        result.memory += memory_rows(cfg, w1_runs, x, log, result.notes)
    else:
        result.notes.append("peak memory: left out (--no-memory)")
    bf16_w1_rows(cfg, x, add, result, log)  # after the W1 memory rows: it resets compilation
