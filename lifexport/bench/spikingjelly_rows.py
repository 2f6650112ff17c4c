"""SpikingJelly's Triton LIF beside lifexport's ``LIF`` and ``LIFRefrac`` (CUDA only), at
:data:`SPIKINGJELLY_SHAPE`, SpikingJelly's Triton LIF tutorial's shape, forward and
forward+backward, each variant with the input in float32 and in bfloat16 (its name ends in
`` float32`` or `` bf16``):

    spikingjelly LIFNode (triton)           SpikingJelly 2.0's multi-step LIFNode on its Triton
                                            implementation; bf16: the bfloat16 input as it is
                                            (its fused paths take it, with a float32 state)
    lifexport LIF eager triton MODE         ``LIF(backend="triton", memory=MODE)``; bf16: the
                                            bfloat16 input under ``torch.autocast``
    lifexport LIF compiled triton MODE      ``lifexport.compile`` of the same
    lifexport LIFRefrac compiled triton MODE  the same for ``LIFRefrac``, for its cost over LIF

MODE is what the fused kernel's backward works from: ``store`` (every step's state, kept by
the forward) or ``recompute`` (a checkpoint every 32 steps, the rest recomputed). Each
variant's peak memory of one forward+backward is measured too, against its input's size.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from lifexport.bench.config import (
    MEMORY_MODES,
    PRECISIONS,
    Config,
    Run,
    have,
    make_input,
    time_both,
)
from lifexport.bench.memory import cuda_peak, peak_row
from lifexport.bench.workloads import in_precision, lif_variant
from lifexport.kernels import triton_available
from lifexport.modules import LIF, LIFRefrac
from lifexport.modules import compile as lifexport_compile

if TYPE_CHECKING:
    from lifexport.bench.report import Result

SPIKINGJELLY_SHAPE = (32, 64, 65536)  # (T, B, N) of SpikingJelly's Triton LIF tutorial
BESIDE_SPIKINGJELLY = (("LIF", "eager"), ("LIF", "compiled"), ("LIFRefrac", "compiled"))


def spikingjelly_absent(device: str) -> str:
    """Why the SpikingJelly comparison cannot run ("" when it can)."""
    reasons = []
    if not have("spikingjelly"):
        reasons.append(
            "spikingjelly is not installed (not a lifexport dependency; pip install "
            "spikingjelly for the comparison)"
        )
    if device != "cuda":
        reasons.append("its Triton LIF runs on CUDA only (use --device cuda)")
    return "; ".join(reasons)


def _spikingjelly_node(device: str) -> tuple[Any, Any]:
    """SpikingJelly's multi-step LIFNode (tau=2) on its Triton implementation, and its
    ``functional`` module."""
    # Releases without a ``backend`` argument pick the CUDA implementation from this variable.
    os.environ.setdefault("SJ_LIF_CUDA_IMPLEMENTATION", "triton")
    from spikingjelly.activation_based import functional, neuron

    kwargs: dict[str, Any] = dict(tau=2.0, step_mode="m")
    if "backend" in inspect.signature(neuron.LIFNode).parameters:
        kwargs["backend"] = "triton"
    return neuron.LIFNode(**kwargs).to(device), functional


def _spikingjelly_implementation(node: Any, functional: Any, device: str) -> str:
    """The implementation SpikingJelly ran (its own report where it has one)."""
    if hasattr(functional, "neuron_implementation"):  # chosen on the first CUDA call
        chosen = functional.neuron_implementation("lif", torch.device(device))
        return str(chosen.get("implementation", chosen) if isinstance(chosen, dict) else chosen)
    return f"backend={getattr(node, 'backend', '?')}"


def _beside_spikingjelly(layer: type, kind: str, mode: str, precision: str, device: str) -> Run:
    """lifexport's ``layer`` on the triton backend with memory ``mode``, eager or compiled
    (``kind``), called in ``precision`` (see :func:`in_precision`)."""
    model = layer(backend="triton", memory=mode).to(device)
    if kind == "compiled":
        # These layers all compile one forward function: a fresh cache for each keeps dynamo's
        # recompile limit (8 graphs per function) from stopping the later ones.
        torch.compiler.reset()
        model = lifexport_compile(model)
    return in_precision(lambda x: model(x)[0], precision, device)


def spikingjelly_rows(
    cfg: Config, add: Callable, result: Result, log: Callable[[str], None]
) -> None:
    """SpikingJelly's Triton LIF, lifexport's ``LIF`` (eager and compiled) and ``LIFRefrac``
    (compiled), triton backend, in each of :data:`MEMORY_MODES`, at :data:`SPIKINGJELLY_SHAPE`
    with the input in each of :data:`PRECISIONS`: forward and forward+backward, and the peak
    memory of one forward+backward, each measured on its own."""
    absent = spikingjelly_absent(cfg.device)
    if absent:
        result.notes.append(f"SpikingJelly rows: absent: {absent}")
        return
    workload = "LIF T={} B={} N={}".format(*SPIKINGJELLY_SHAPE)
    layers = {"LIF": LIF, "LIFRefrac": LIFRefrac}
    ours = triton_available()
    if not ours:
        result.notes.append("lifexport LIF rows beside SpikingJelly: Triton is not installed")
    for precision, dtype in PRECISIONS.items():
        x = make_input(cfg, SPIKINGJELLY_SHAPE).to(dtype)  # (T, B, N)

        def measure(name: str, run: Run, x: torch.Tensor = x) -> None:
            forward, forward_backward = time_both(cfg, run, x)
            add(workload, name, "forward", forward)
            add(workload, name, "fwd+bwd", forward_backward)
            if cfg.memory:
                peak = peak_row(workload, name, lambda: cuda_peak(run, x), x, log, result.notes)
                result.memory += [] if peak is None else [peak]

        def spikingjelly(precision: str = precision, measure=measure, x=x) -> None:
            node, functional = _spikingjelly_node(cfg.device)

            def run(x):  # a bfloat16 x as it is: SpikingJelly's fused paths take it
                functional.reset_net(node)  # a fresh state each run, as its tutorial does
                return node(x)

            run(x[:1])
            implementation = _spikingjelly_implementation(node, functional, cfg.device)
            measure(f"spikingjelly LIFNode ({implementation}) {precision}", run)

        result.attempt(f"spikingjelly LIFNode {precision}", spikingjelly, log)
        for layer, kind in BESIDE_SPIKINGJELLY if ours else ():
            for mode in MEMORY_MODES:
                name = lif_variant(layer, kind, mode, precision)

                def lifexport(name=name, how=(layers[layer], kind, mode, precision), m=measure):
                    m(name, _beside_spikingjelly(*how, cfg.device))

                result.attempt(name, lifexport, log)
