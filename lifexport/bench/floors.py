"""The hardware floors a run's rows are held to, measured in the same run: what moving the
input once, or W2's matrix product alone, costs on this device with this many threads.

A floor writes into an output allocated once, before timing: a fresh result per call would
add the allocator's work to the floor (on CPU, page faults whenever the allocator maps new
memory, which can cost more than the copy itself) and so flatter every ratio against it.

``floor: copy``       ``out.copy_(x)``: reads and writes the (T, B, N) input once
``floor: copy bf16``  the same of the input in bfloat16 (CUDA only: the bf16 W1 row's floor)
``floor: gemm``       ``torch.matmul(x, W, out=out)``: the (T*B, N) x (N, N) product with W2's
                      Linear weight, as the Linear computes it (its bias left out)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lifexport.bench.config import Config
from lifexport.bench.workloads import linear

Floor = Callable[[], torch.Tensor]  # writes into its preallocated output and returns it


def describe(threads: int | None = None) -> str:
    """What the floors are, with the torch thread count they run on (default: the current)."""
    threads = torch.get_num_threads() if threads is None else threads
    return (
        "copies into preallocated buffers (out.copy_(x)) and the GEMM into a preallocated "
        f"output (torch.matmul(x, W, out=out)), on {threads} torch thread(s)"
    )


def floor_runs(cfg: Config, x: torch.Tensor) -> dict[str, Floor]:
    """Each floor of this run (name: a call that writes into an output allocated here, once,
    and returns it), for the input ``x`` of shape (T, B, N).

    Raises:
        ValueError: ``x`` is not of shape (cfg.t, cfg.b, cfg.n) on ``cfg.device``.
    """
    expected = (cfg.t, cfg.b, cfg.n)
    if tuple(x.shape) != expected or x.device.type != cfg.device:
        raise ValueError(
            f"floor_runs: x must have shape {expected} on {cfg.device!r}, got "
            f"{tuple(x.shape)} on {x.device.type!r}"
        )
    copy_out = torch.empty_like(x)
    floors: dict[str, Floor] = {"floor: copy": lambda: copy_out.copy_(x)}
    if cfg.device == "cuda":  # the floor of the bf16 W1 row, which runs on CUDA only
        x_bf16 = x.to(torch.bfloat16)  # (T, B, N)
        bf16_out = torch.empty_like(x_bf16)
        floors["floor: copy bf16"] = lambda: bf16_out.copy_(x_bf16)
    weight = linear(cfg).weight.detach().to(cfg.device).t()  # (N, N): x @ W as Linear does
    rows = x.reshape(-1, cfg.n)  # (T*B, N), a view
    gemm_out = torch.empty(rows.shape[0], cfg.n, device=x.device, dtype=x.dtype)
    floors["floor: gemm"] = lambda: torch.matmul(rows, weight, out=gemm_out)
    return floors


def floor_rows(cfg: Config, x: torch.Tensor, add: Callable) -> None:
    """Time every floor of :func:`floor_runs` and ``add`` its row."""
    for name, run in floor_runs(cfg, x).items():
        add("-", name, "forward", cfg.timed(run))
