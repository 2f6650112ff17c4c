"""What one benchmark run measures (:class:`Config`), whether its device can run, and the
helpers every row shares: the input, the timing of a forward and a forward+backward."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lifexport.bench.timing import median_ms

DEVICES = ("cpu", "cuda")
PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16}  # variant suffix: input dtype
MEMORY_MODES = ("store", "recompute")  # the fused backward's modes compared with SpikingJelly
Run = Callable[[torch.Tensor], torch.Tensor]  # input (T, B, N) -> spikes (T, B, N)


@dataclass
class Config:
    t: int = 100  # time steps
    b: int = 32  # batch
    n: int = 512  # neurons (and Linear width)
    repeats: int = 10  # timed runs per figure (the median is reported)
    warmup: int = 3  # untimed runs first (compilation happens here)
    threads: int = 0  # torch and onnxruntime threads; 0 keeps torch's default
    device: str = "cpu"  # "cpu" or "cuda"; on CUDA every timed run is synchronised
    norse: bool = True  # include Norse 1.1.0 when it is installed
    onnxruntime: bool = True  # include the onnxruntime rows
    compiled: bool = True  # include the lifexport.compile rows (each graph compiles first)
    memory: bool = True  # peak memory of one forward+backward per W1 (and SpikingJelly) variant
    spikingjelly: bool = False  # SpikingJelly's Triton LIF vs lifexport LIF, float32 and bf16
    recurrent: bool = False  # W3: LIFRefracRecurrent(N, N) at (T, B, N), with its GEMM floor
    feedforward: bool = True  # W1 and W2 with their floors, onnxruntime, memory and bf16 rows

    def __post_init__(self) -> None:
        lows = dict(t=1, b=1, n=1, repeats=1, warmup=0, threads=0)
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Config.{name} must be an int >= {low}, got {value!r}")
        if self.device not in DEVICES:
            raise ValueError(f"Config.device must be one of {DEVICES}, got {self.device!r}")

    def timed(self, fn: Callable[[], object]) -> float:
        """:func:`median_ms` with this run's repeats, warm-up and device synchronisation."""
        sync = torch.cuda.synchronize if self.device == "cuda" else None
        return median_ms(fn, self.repeats, self.warmup, sync=sync)


def device_problem(device: str) -> str:
    """Why torch cannot run the benchmark on ``device`` ("" when it can)."""
    if device not in DEVICES:
        return f"unknown device {device!r}; expected one of {DEVICES}"
    if device == "cuda" and not torch.cuda.is_available():
        return (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); run on a machine with a CUDA GPU, or use --device cpu"
        )
    return ""


def have(module: str) -> bool:
    """Whether ``module`` is installed (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module object without a spec, as in some test set-ups
        return module in sys.modules


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def make_input(cfg: Config, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """The run's input: uniform in [0, 3), seeded, of ``shape`` (default (T, B, N))."""
    torch.manual_seed(0)
    return 3 * torch.rand(shape or (cfg.t, cfg.b, cfg.n), device=cfg.device)  # (T, B, N)


def time_both(cfg: Config, run: Run, x: torch.Tensor) -> tuple[float, float]:
    """Median ms of ``run`` forward (no grad) and forward+backward (w.r.t. the input)."""
    x_grad = x.detach().clone().requires_grad_()

    def forward():
        with torch.no_grad():
            run(x)

    def forward_backward():
        x_grad.grad = None
        run(x_grad).sum().backward()

    return cfg.timed(forward), cfg.timed(forward_backward)
