"""Speed of LIF-refrac layers: lifexport eager and compiled against Norse 1.1.0 and the floors.

    .venv/bin/python scripts/bench.py                      # T=100, B=32, N=512
    .venv/bin/python scripts/bench.py --n 4096 --t 1000    # bigger shapes
    .venv/bin/python scripts/bench.py --json out.json      # also write the rows as JSON

Workloads (time-major input of shape (T, B, N)):
    W1  neuron only:      LIFRefrac
    W2  Linear + neurons: Linear(N, N) applied to all T*B rows, then LIFRefrac
Variants: Norse 1.1.0 eager (a Python loop over its LIFRefracCell, when installed), lifexport
eager, lifexport compiled (``lifexport.compile``), each forward and forward+backward.
Floors, measured in the same run:
    copy  ``out.copy_(x)``: reads and writes T*B*N elements once, into preallocated memory
    gemm  one (T*B, N) x (N, N) product into a preallocated output
Every figure is the median of --repeats timed runs after --warmup untimed ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

import lifexport


@dataclass
class Config:
    t: int = 100  # time steps
    b: int = 32  # batch
    n: int = 512  # neurons (and Linear width)
    repeats: int = 10  # timed runs per figure (the median is reported)
    warmup: int = 3  # untimed runs first (compilation happens here)
    threads: int = 0  # torch threads; 0 keeps torch's default
    norse: bool = True  # include Norse 1.1.0 when it is installed
    json: str = ""  # also write the results to this file


def median_ms(fn: Callable[[], object], cfg: Config) -> float:
    for _ in range(cfg.warmup):
        fn()
    times = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def norse_layer(linear: torch.nn.Linear | None):
    """Norse 1.1.0's way: its LIFRefracCell in a Python loop over time."""
    from norse.torch import LIFRefracCell

    cell = LIFRefracCell()

    def run(x):
        h = x if linear is None else linear(x)
        state, spikes = None, []
        for h_t in h:
            z, state = cell(h_t, state)
            spikes.append(z)
        return torch.stack(spikes)

    return run


def lifexport_layer(linear: torch.nn.Linear | None, compiled: bool):
    layer = lifexport.LIFRefrac()
    model = layer if linear is None else lifexport.SequentialState(linear, layer)
    model = lifexport.compile(model) if compiled else model
    return lambda x: model(x)[0]


def forward_backward(run, x):
    def fn():
        out = run(x)
        out.sum().backward()

    return fn


def no_grad(run, x):
    def fn():
        with torch.no_grad():
            run(x)

    return fn


def bench(cfg: Config) -> list[dict]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    shape = (cfg.t, cfg.b, cfg.n)
    x = 3 * torch.rand(shape)
    rows = []

    def add(workload, variant, pass_, ms):
        rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=round(ms, 3)))
        print(f"  {workload:3s} {variant:20s} {pass_:8s} {ms:9.3f} ms", flush=True)

    out = torch.empty_like(x)
    add("-", "floor: copy", "forward", median_ms(lambda: out.copy_(x), cfg))
    weight = torch.randn(cfg.n, cfg.n) / cfg.n**0.5
    flat, product = x.reshape(-1, cfg.n), torch.empty(cfg.t * cfg.b, cfg.n)
    add("-", "floor: gemm", "forward", median_ms(lambda: torch.mm(flat, weight, out=product), cfg))

    try:
        import norse  # noqa: F401

        have_norse = cfg.norse
    except ImportError:
        have_norse = False

    for workload in ("W1", "W2"):
        variants = {}
        for name in ("norse eager", "lifexport eager", "lifexport compiled"):
            if name.startswith("norse") and not have_norse:
                continue
            linear = None
            if workload == "W2":
                torch.manual_seed(1)
                linear = torch.nn.Linear(cfg.n, cfg.n)
            if name.startswith("norse"):
                variants[name] = norse_layer(linear)
            else:
                variants[name] = lifexport_layer(linear, compiled=name.endswith("compiled"))
        for name, run in variants.items():
            add(workload, name, "forward", median_ms(no_grad(run, x), cfg))
            x_grad = x.clone().requires_grad_()
            add(workload, name, "fwd+bwd", median_ms(forward_backward(run, x_grad), cfg))
    return rows


def ratios(rows: list[dict]) -> dict[str, float]:
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in rows}
    copy, gemm = ms[("-", "floor: copy", "forward")], ms[("-", "floor: gemm", "forward")]
    out = {
        "W1 fwd compiled / copy floor (target <= 4)": ms[("W1", "lifexport compiled", "forward")]
        / copy,
        "W2 fwd compiled / gemm floor (target <= 1.3)": ms[("W2", "lifexport compiled", "forward")]
        / gemm,
    }
    for w, target in (("W1", 10), ("W2", 3)):
        for p in ("forward", "fwd+bwd"):
            out[f"{w} {p} lifexport eager / compiled"] = (
                ms[(w, "lifexport eager", p)] / ms[(w, "lifexport compiled", p)]
            )
            if (w, "norse eager", p) in ms:
                suffix = f" (target >= {target})" if p == "fwd+bwd" else ""
                out[f"{w} {p} norse eager / lifexport compiled{suffix}"] = (
                    ms[(w, "norse eager", p)] / ms[(w, "lifexport compiled", p)]
                )
    return {k: round(v, 2) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field, default in asdict(Config()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--no-{field}", dest=field, action="store_false")
        else:
            parser.add_argument(f"--{field}", type=type(default), default=default)
    cfg = Config(**vars(parser.parse_args()))
    print(
        f"T={cfg.t} B={cfg.b} N={cfg.n}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {cfg.repeats}"
    )
    rows = bench(cfg)
    summary = ratios(rows)
    print("ratios:")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(dict(config=asdict(cfg), rows=rows, ratios=summary), f, indent=2)


if __name__ == "__main__":
    main()
