"""Speed of LIF-refrac layers: lifexport eager, compiled and in onnxruntime, against Norse
1.1.0 and the hardware floors. Run it with ``scripts/bench.py`` or ``lifexport bench``.

Workloads (time-major input of shape (T, B, N)):
    W1  neuron only:      LIFRefrac
    W2  Linear + neurons: Linear(N, N) applied to all T*B rows, then LIFRefrac
Variants: Norse 1.1.0 eager (a Python loop over its LIFRefracCell, when installed), lifexport
eager, lifexport compiled (``lifexport.compile``), each forward and forward+backward; and
onnxruntime (CPU provider): the sequence graph (forward), and the step graph driven once per
step at B=1 (reported per step).
Floors, measured in the same run:
    copy  ``out.copy_(x)``: reads and writes T*B*N elements once, into preallocated memory
    gemm  one (T*B, N) x (N, N) product into a preallocated output
Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from lifexport.export import to_onnx
from lifexport.modules import LIFRefrac, SequentialState, flatten_state
from lifexport.modules import compile as lifexport_compile
from lifexport.validation import make_session


@dataclass
class Config:
    t: int = 100  # time steps
    b: int = 32  # batch
    n: int = 512  # neurons (and Linear width)
    repeats: int = 10  # timed runs per figure (the median is reported)
    warmup: int = 3  # untimed runs first (compilation happens here)
    threads: int = 0  # torch and onnxruntime threads; 0 keeps torch's default
    norse: bool = True  # include Norse 1.1.0 when it is installed
    onnxruntime: bool = True  # include the onnxruntime rows

    def __post_init__(self) -> None:
        lows = dict(t=1, b=1, n=1, repeats=1, warmup=0, threads=0)
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Config.{name} must be an int >= {low}, got {value!r}")

    def timed(self, fn: Callable[[], object]) -> float:
        """:func:`median_ms` with this run's repeats and warm-up."""
        return median_ms(fn, self.repeats, self.warmup)


def median_ms(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """The median wall time of ``repeats`` calls after ``warmup`` untimed ones, in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _linear(cfg: Config) -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(cfg.n, cfg.n)


def _norse(linear: torch.nn.Linear | None):
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


def _model(linear: torch.nn.Linear | None) -> torch.nn.Module:
    return LIFRefrac() if linear is None else SequentialState(linear, LIFRefrac())


def _have_norse() -> bool:
    try:
        import norse.torch  # noqa: F401
    except ImportError:
        return False
    return True


def _ort_rows(workload: str, model: torch.nn.Module, x: torch.Tensor, cfg: Config, add) -> None:
    """The sequence graph over the whole input, and the step graph at B=1, per step."""
    with tempfile.TemporaryDirectory() as folder:
        seq = to_onnx(model, x[:2], Path(folder) / "seq.onnx", with_state=False)
        session = make_session(seq.path, threads=torch.get_num_threads())
        feeds = {"x": x.numpy()}
        add(
            workload,
            "onnxruntime sequence",
            "forward",
            cfg.timed(lambda: session.run(None, feeds)),
        )

        step = to_onnx(model, x[0, :1], Path(folder) / "step.onnx", graph="step")
        session = make_session(step.path, threads=1)
        x1 = x[:, :1].numpy()  # (T, 1, N)
        state = {name: t.numpy() for name, t in zip(step.state_names, _rest_state(model, x[0, :1]))}
        names = [f"next_{n}" for n in step.state_names]

        def stream():
            s = dict(state)
            for x_t in x1:
                out = session.run(names, {"x": x_t, **s})
                s = dict(zip(step.state_names, out))

        add(
            workload,
            "onnxruntime step B=1",
            "per step",
            cfg.timed(stream) / cfg.t,
        )


def _rest_state(model, x_step):
    return flatten_state(model.initial_state(x_step))[0]


def bench(cfg: Config, log: Callable[[str], None] = print) -> list[dict]:
    """Measure every row; returns them as dicts (workload, variant, pass_, ms)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    x = 3 * torch.rand(cfg.t, cfg.b, cfg.n)
    rows = []

    def add(workload, variant, pass_, ms):
        rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=round(ms, 4)))
        log(f"  {workload:3s} {variant:22s} {pass_:8s} {ms:9.3f} ms")

    out = torch.empty_like(x)
    add("-", "floor: copy", "forward", cfg.timed(lambda: out.copy_(x)))
    weight = torch.randn(cfg.n, cfg.n) / cfg.n**0.5
    flat, product = x.reshape(-1, cfg.n), torch.empty(cfg.t * cfg.b, cfg.n)
    add(
        "-",
        "floor: gemm",
        "forward",
        cfg.timed(lambda: torch.mm(flat, weight, out=product)),
    )

    with_norse = cfg.norse and _have_norse()
    for workload in ("W1", "W2"):
        variants = {}
        if with_norse:
            variants["norse eager"] = _norse(_linear(cfg) if workload == "W2" else None)
        eager = _model(_linear(cfg) if workload == "W2" else None)
        variants["lifexport eager"] = lambda x, m=eager: m(x)[0]
        compiled = lifexport_compile(_model(_linear(cfg) if workload == "W2" else None))
        variants["lifexport compiled"] = lambda x, m=compiled: m(x)[0]
        for name, run in variants.items():

            def forward(run=run):
                with torch.no_grad():
                    run(x)

            x_grad = x.clone().requires_grad_()

            def forward_backward(run=run, x_grad=x_grad):
                run(x_grad).sum().backward()

            add(workload, name, "forward", cfg.timed(forward))
            add(workload, name, "fwd+bwd", cfg.timed(forward_backward))
        if cfg.onnxruntime:
            _ort_rows(workload, eager, x, cfg, add)
    return rows


def ratios(rows: list[dict]) -> dict[str, float]:
    """The ratios the targets are stated in, from rows of one run."""
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in rows}
    copy, gemm = ms[("-", "floor: copy", "forward")], ms[("-", "floor: gemm", "forward")]

    def compiled(w, p):
        return ms[(w, "lifexport compiled", p)]

    out = {
        "W1 fwd compiled / copy floor (target <= 4)": compiled("W1", "forward") / copy,
        "W2 fwd compiled / gemm floor (target <= 1.3)": compiled("W2", "forward") / gemm,
    }
    for w, target in (("W1", 10), ("W2", 3)):
        for p in ("forward", "fwd+bwd"):
            out[f"{w} {p} lifexport eager / compiled"] = ms[(w, "lifexport eager", p)] / compiled(
                w, p
            )
            if (w, "norse eager", p) in ms:
                suffix = f" (target >= {target})" if p == "fwd+bwd" else ""
                out[f"{w} {p} norse eager / lifexport compiled{suffix}"] = ms[
                    (w, "norse eager", p)
                ] / compiled(w, p)
        if (w, "onnxruntime sequence", "forward") in ms:
            target = " (target <= 1.2)" if w == "W2" else ""
            out[f"{w} onnxruntime sequence / lifexport compiled, forward{target}"] = ms[
                (w, "onnxruntime sequence", "forward")
            ] / compiled(w, "forward")
    return {k: round(v, 2) for k, v in out.items()}

