"""W3, the recurrent workload: ``LIFRefracRecurrent(N, N)`` on the run's (T, B, N) input
(``input_size = hidden_size = N``), forward and forward+backward, every variant with the same
weights, beside its GEMM floor, measured in the same run (``--recurrent``):

    norse eager               Norse 1.1.0's ``LIFRefracRecurrentCell(N, N)`` in a Python loop
    lifexport eager scan      ``LIFRefracRecurrent(N, N, backend="scan")``
    lifexport eager triton    ``backend="triton"`` (CUDA only)
    lifexport compiled scan   ``lifexport.compile`` of the scan layer
    lifexport compiled triton ``lifexport.compile`` of the triton layer (CUDA only)
    floor: gemm recurrent     the forward's matrix products alone, each into an output
                              allocated once: ``x.reshape(T*B, N) @ W_in.T``, then T products
                              of one step's spikes ``z (B, N) @ W_rec.T``

Ratios: the triton rows' forward+backward against the compiled scan (target >= 10) and Norse
eager (target >= 30), their forward against the floor (target <= 3); the scan rows against
Norse and the floor, without a target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from lifexport.bench.config import Config, Run, make_input, time_both
from lifexport.bench.workloads import variants
from lifexport.modules import LIFRefracRecurrent
from lifexport.modules import compile as lifexport_compile

if TYPE_CHECKING:
    from lifexport.bench.report import Result

RECURRENT = "W3"  # the workload column of the recurrent rows
FLOOR = "floor: gemm recurrent"
Weights = tuple[torch.Tensor, torch.Tensor]  # input_weights, recurrent_weights: (N, N) each


def weights(cfg: Config) -> Weights:
    """The weights every variant (and the floor) uses: a seeded ``LIFRefracRecurrent(N, N)``'s
    (Norse's initialisation, the diagonal of the recurrent weights zeroed), on the device."""
    torch.manual_seed(2)
    layer = LIFRefracRecurrent(cfg.n, cfg.n)
    w_in, w_rec = (w.detach().to(cfg.device) for w in layer.weights())
    return w_in, w_rec


def _norse(w: Weights, n: int, device: str) -> Run:
    """Norse 1.1.0's way: its LIFRefracRecurrentCell in a Python loop over time."""
    from norse.torch import LIFRefracRecurrentCell

    w_in, w_rec = (torch.nn.Parameter(t.clone()) for t in w)
    cell = LIFRefracRecurrentCell(n, n, input_weights=w_in, recurrent_weights=w_rec).to(device)

    def run(x):
        state, spikes = None, []
        for x_t in x:
            z, state = cell(x_t, state)
            spikes.append(z)
        return torch.stack(spikes)

    return run


def _lifexport(variant: str, w: Weights, n: int, device: str) -> Run:
    """The lifexport variant (``"lifexport {eager|compiled} {scan|triton}"``) as a function
    from input to spikes."""
    backend = variant.rsplit(" ", 1)[-1]
    w_in, w_rec = w
    model = LIFRefracRecurrent(n, n, input_weights=w_in, recurrent_weights=w_rec, backend=backend)
    model = model.to(device)
    if " compiled " in variant:
        # Every sequence layer compiles the same forward function: a fresh cache keeps dynamo's
        # recompile limit (8 graphs per function) from stopping this one.
        torch.compiler.reset()
        model = lifexport_compile(model)
    return lambda x: model(x)[0]


def build(variant: str, w: Weights, n: int, device: str) -> Run:
    """The variant's ``LIFRefracRecurrent(n, n)`` (or Norse's cell) with weights ``w`` on
    ``device``, as a function from input (T, B, n) to spikes (T, B, n)."""
    if variant == "norse eager":
        return _norse(w, n, device)
    return _lifexport(variant, w, n, device)


def step_spikes(cfg: Config) -> torch.Tensor:
    """The floor's one step of spikes ``z``: (B, N), seeded, 10% of them ones, in float32."""
    torch.manual_seed(3)
    return (torch.rand(cfg.b, cfg.n, device=cfg.device) < 0.1).float()


def floor(cfg: Config, x: torch.Tensor, w: Weights) -> Callable[[], torch.Tensor]:
    """The forward's GEMM floor for ``x`` (T, B, N) and weights ``w``: a call that writes
    ``x.reshape(T*B, N) @ W_in.T`` and T products ``z @ W_rec.T`` of one step's spikes
    ``z`` (B, N) (:func:`step_spikes`) into outputs allocated here, once, and returns the
    last.

    Raises:
        ValueError: ``x`` is not of shape (cfg.t, cfg.b, cfg.n) on ``cfg.device``.
    """
    expected = (cfg.t, cfg.b, cfg.n)
    if tuple(x.shape) != expected or x.device.type != cfg.device:
        raise ValueError(
            f"recurrent floor: x must have shape {expected} on {cfg.device!r}, got "
            f"{tuple(x.shape)} on {x.device.type!r}"
        )
    w_in_t, w_rec_t = (t.t() for t in w)  # (N, N) views: x @ W.T as the layer computes it
    rows = x.reshape(-1, cfg.n)  # (T*B, N), a view
    input_out = torch.empty_like(rows)  # (T*B, N)
    z = step_spikes(cfg)  # (B, N)
    step_outs = torch.empty_like(x).unbind(0)  # T views (B, N), made once

    def run() -> torch.Tensor:
        torch.matmul(rows, w_in_t, out=input_out)
        for out in step_outs:
            torch.matmul(z, w_rec_t, out=out)
        return step_outs[-1]

    return run


def recurrent_rows(cfg: Config, add: Callable, result: Result, log: Callable[[str], None]) -> None:
    """The floor, then every variant of :func:`variants` on W3, forward and forward+backward,
    each measured on its own; why a variant is absent goes to the notes when W1 has not said
    it already (``--no-feedforward``)."""
    x = make_input(cfg)  # (T, B, N)
    w = weights(cfg)

    def measure_floor() -> None:
        add("-", FLOOR, "forward", cfg.timed(floor(cfg, x, w)))

    result.attempt(f"{RECURRENT} {FLOOR}", measure_floor, log)
    for variant in variants(cfg, [] if cfg.feedforward else result.notes):

        def measure(variant: str = variant) -> None:
            forward, forward_backward = time_both(cfg, build(variant, w, cfg.n, cfg.device), x)
            add(RECURRENT, variant, "forward", forward)
            add(RECURRENT, variant, "fwd+bwd", forward_backward)

        result.attempt(f"{RECURRENT} {variant}", measure, log)


def _target(variant: str, bound: str) -> str:
    """`` (target BOUND)`` for a triton row, "" for the others (no target set)."""
    return f" (target {bound})" if variant.endswith(" triton") else ""


def recurrent_ratios(ms: dict[tuple[str, str, str], float]) -> dict[str, float]:
    """W3's ratios from the rows ``ms`` ((workload, variant, pass): ms) of one run, those
    present: each lifexport variant's forward against the floor, Norse eager against it, and,
    forward+backward, the compiled scan against each triton variant, with the targets of the
    triton rows."""
    w = RECURRENT
    ours = [v for (workload, v, _) in ms if workload == w and v.startswith("lifexport")]
    out: dict[str, float] = {}

    def put(key: str, top: tuple[str, str, str], bottom: tuple[str, str, str]) -> None:
        if top in ms and bottom in ms and ms[bottom] > 0:
            out[key] = ms[top] / ms[bottom]

    for v in dict.fromkeys(ours):
        floor_key = f"{w} forward {v} / gemm recurrent floor{_target(v, '<= 3')}"
        put(floor_key, (w, v, "forward"), ("-", FLOOR, "forward"))
        for p in ("forward", "fwd+bwd"):
            bound = _target(v, ">= 30") if p == "fwd+bwd" else ""
            put(f"{w} {p} norse eager / {v}{bound}", (w, "norse eager", p), (w, v, p))
        if v.endswith(" triton"):
            scan = "lifexport compiled scan"
            key = f"{w} fwd+bwd {scan} / {v}{_target(v, '>= 10')}"
            put(key, (w, scan, "fwd+bwd"), (w, v, "fwd+bwd"))
    return out
