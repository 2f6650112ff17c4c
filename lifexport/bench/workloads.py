"""The timed variants of W1 (``LIFRefrac``) and W2 (``Linear(N, N)`` then ``LIFRefrac``): which
run on this configuration, each built as a function from input to spikes, and W1 on a bfloat16
input under autocast (CUDA only)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from lifexport.bench.config import PRECISIONS, Config, Run, have, time_both
from lifexport.kernels import triton_available
from lifexport.modules import LIFRefrac, SequentialState
from lifexport.modules import compile as lifexport_compile

if TYPE_CHECKING:
    from lifexport.bench.report import Result

VARIANTS = (
    "norse eager",
    "lifexport eager scan",
    "lifexport eager triton",
    "lifexport compiled scan",
    "lifexport compiled triton",
)
BF16_W1 = "lifexport compiled triton bf16"  # W1 on a bfloat16 input under autocast (CUDA)


def linear(cfg: Config) -> torch.nn.Linear:
    """W2's Linear layer: the same weights for every variant (and the GEMM floor)."""
    torch.manual_seed(1)
    return torch.nn.Linear(cfg.n, cfg.n)


def _norse(linear: torch.nn.Linear | None, device: str) -> Run:
    """Norse 1.1.0's way: its LIFRefracCell in a Python loop over time."""
    from norse.torch import LIFRefracCell

    cell = LIFRefracCell().to(device)

    def run(x):
        h = x if linear is None else linear(x)
        state, spikes = None, []
        for h_t in h:
            z, state = cell(h_t, state)
            spikes.append(z)
        return torch.stack(spikes)

    return run


def build(variant: str, linear: torch.nn.Linear | None, device: str) -> Run:
    """The variant's model on ``device`` as a function from input to spikes; W2 with
    ``linear``, W1 without."""
    if linear is not None:
        linear = copy.deepcopy(linear).to(device)
    if variant == "norse eager":
        return _norse(linear, device)
    backend = variant.rsplit(" ", 1)[-1]
    neurons = LIFRefrac(backend=backend)
    model = (neurons if linear is None else SequentialState(linear, neurons)).to(device)
    if " compiled " in variant:
        model = lifexport_compile(model)
    return lambda x: model(x)[0]


def in_precision(run: Run, precision: str, device: str) -> Run:
    """``run`` as lifexport's layers are called in ``precision`` (a :data:`PRECISIONS` key):
    ``"float32"`` as it is; ``"bf16"`` under ``torch.autocast(device, dtype=torch.bfloat16)``,
    where a float32 layer takes the bfloat16 input, computes in float32 and returns bfloat16
    spikes. The backward runs outside autocast, as torch recommends."""
    if precision == "float32":
        return run

    def autocast(x):
        with torch.autocast(device, dtype=PRECISIONS[precision]):
            return run(x)

    return autocast


def lif_variant(layer: str, kind: str, mode: str, precision: str) -> str:
    """The name of a lifexport row beside SpikingJelly's: ``layer`` (``"LIF"`` or
    ``"LIFRefrac"``), ``kind`` (``"eager"`` or ``"compiled"``), the memory ``mode`` and the
    ``precision`` (a :data:`PRECISIONS` key), e.g. ``lifexport LIF compiled triton store bf16``."""
    return f"lifexport {layer} {kind} triton {mode} {precision}"


def variants(cfg: Config, notes: list[str]) -> list[str]:
    """The variants this run measures; why any other is left out goes to ``notes``."""
    chosen = []
    for variant in VARIANTS:
        why = ""
        if variant == "norse eager" and not cfg.norse:
            why = "left out (--no-norse)"
        elif variant == "norse eager" and not have("norse"):
            why = "Norse is not installed (pip install norse==1.1.0)"
        elif " compiled " in variant and not cfg.compiled:
            why = "left out (--no-compiled)"
        elif variant.endswith("triton") and cfg.device == "cpu":
            why = (
                "CUDA only: on CPU the kernels run only in Triton's interpreter "
                "(TRITON_INTERPRET=1), a correctness tool, not a speed measure"
            )
        elif variant.endswith("triton") and not triton_available():
            why = "Triton is not installed"
        if why:
            notes.append(f"{variant}: {why}")
        else:
            chosen.append(variant)
    return chosen


def bf16_absent(cfg: Config) -> str:
    """Why :data:`BF16_W1` is not measured in this run ("" when it is)."""
    if cfg.device != "cuda":
        return (
            "CUDA only: the row measures the fused kernel reading and writing bfloat16 under "
            "torch.autocast, and the kernel runs on CUDA only (on CPU the layers upcast to "
            "float32 and run the scan path, as the float32 rows do)"
        )
    if not cfg.compiled:
        return "left out (--no-compiled)"
    if not triton_available():
        return "Triton is not installed"
    return ""


def bf16_w1_rows(
    cfg: Config, x: torch.Tensor, add: Callable, result: Result, log: Callable[[str], None]
) -> None:
    """W1 through ``lifexport.compile`` of the triton layer on ``x`` in bfloat16, under
    autocast (:data:`BF16_W1`), or the reason it is absent in ``result.notes``."""
    absent = bf16_absent(cfg)
    if absent:
        floor = " and floor: copy bf16" if cfg.device != "cuda" else ""
        result.notes.append(f"W1 {BF16_W1}{floor}: {absent}")
        return

    def measure() -> None:
        # A fresh compile cache: every variant before compiled the same forward function, and
        # dynamo's recompile limit (8 graphs per function) would be close.
        torch.compiler.reset()
        run = build("lifexport compiled triton", None, cfg.device)
        run = in_precision(run, "bf16", cfg.device)
        forward, forward_backward = time_both(cfg, run, x.to(torch.bfloat16))
        add("W1", BF16_W1, "forward", forward)
        add("W1", BF16_W1, "fwd+bwd", forward_backward)

    result.attempt(f"W1 {BF16_W1}", measure, log)
