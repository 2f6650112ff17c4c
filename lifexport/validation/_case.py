"""Stage 4 of :func:`~lifexport.validation.validate`: the torch reference of each drive and
the feeds every provider gets (a :class:`Case`)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifexport.graph import TARGET, GraphFile, StateLayout
from lifexport.modules import step_module
from lifexport.validation._drive import synthesize_inputs
from lifexport.validation._model import device
from lifexport.validation._precision import Tolerances, strict_float32
from lifexport.validation._reference import Reference, run_torch, to_numpy, warm_state
from lifexport.validation._report import REST, WARM

#: Steps of the warm-up drive, and of the run from the state it leaves (at most the drive's T).
WARM_STEPS = 20


@dataclass(frozen=True)
class Case:
    """Everything one provider's run is compared against: the file, the torch reference and
    the numpy feeds (parameters and batch-first target as constants, the initial state:
    rest, or the warm state of the ``"warm"`` drive)."""

    drive: str
    info: GraphFile
    reference: Reference
    xs: np.ndarray
    constants: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    target: np.ndarray | None
    tolerances: Tolerances
    flip_budget: float | None


def reference_cases(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    parameters: dict[str, torch.nn.Parameter],
    target: Tensor | None,
    loss: Callable | None,
    tolerances: Tolerances,
    flip_budget: float | None,
    seed: int,
) -> tuple[Case, Case | None]:
    """The case from rest, and for a graph with state inputs (right from rest is not enough)
    the case from the state torch reaches over a warm-up drive of ``WARM_STEPS`` steps (or T
    if fewer) seeded with ``seed``, over the drive's first as many steps; else ``None``."""
    args = (parameters, target, loss, tolerances, flip_budget)
    rest = reference_case(model, info, xs, *args)
    if not info.state_names:
        return rest, None
    n = min(WARM_STEPS, xs.shape[0])
    warmup = synthesize_inputs(info, n, seed, batch=xs.shape[1])
    head = _first_steps(info, target, n)
    warm = reference_case(
        model, info, xs[:n], parameters, head, loss, tolerances, flip_budget, warmup=warmup
    )
    return rest, warm


def reference_case(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    parameters: dict[str, torch.nn.Parameter],
    target: Tensor | None,
    loss: Callable | None,
    tolerances: Tolerances,
    flip_budget: float | None,
    warmup: Tensor | None = None,
) -> Case:
    """Eager torch over the drive, in strict float32 (a float32 copy of a half precision
    model when validating a deployment), and the feeds every provider gets. From rest, or
    with ``warmup``: from the state torch reaches over it (rounded to the graph's dtype, the
    values the graph gets), the ``"warm"`` drive."""
    where = device(model)
    reference_model, drive = model, xs
    if flip_budget is not None and xs.dtype in (torch.float16, torch.bfloat16):
        reference_model, drive = copy.deepcopy(model).float(), xs.float()
        warmup = None if warmup is None else warmup.float()
    with torch.no_grad():
        layout = StateLayout(step_module(model).initial_state(xs[0].to(where)))
    found = dict(reference_model.named_parameters())
    reference_parameters = {name: found[name] for name in parameters}
    with _trainable(reference_parameters.values()), strict_float32():
        start = None
        if warmup is not None:
            start = _rounded(layout, warm_state(reference_model, warmup.to(where)), info.dtype)
        reference = run_torch(
            reference_model,
            info,
            drive.to(where),
            parameters=reference_parameters,
            target=None if target is None else target.to(where),
            loss=loss,
            initial=start,
        )
    if start is None:
        with torch.no_grad():
            start = step_module(model).initial_state(xs[0].to(where))
    initial = [t.to(info.dtype) for t in layout.flatten(start)]
    constants = {name: to_numpy(p) for name, p in parameters.items()}
    target_np = None if target is None else to_numpy(target)
    if target_np is not None and info.graph == "sequence":
        constants[TARGET] = target_np
    return Case(
        drive=REST if warmup is None else WARM,
        info=info,
        reference=reference,
        xs=to_numpy(xs),
        constants=constants,
        initial={slot.name: to_numpy(t) for slot, t in zip(info.contract.states, initial)},
        target=target_np,
        tolerances=tolerances,
        flip_budget=flip_budget,
    )


def _first_steps(info: GraphFile, target: Tensor | None, n: int) -> Tensor | None:
    """The target of the first ``n`` steps: a step graph's per-step target cut, else as is."""
    per_step = (
        target is not None
        and info.graph == "step"
        and target.dim() == info.contract.target_rank + 1
    )
    return target[:n] if per_step else target


def _rounded(layout: StateLayout, state: Any, dtype: torch.dtype) -> Any:
    """``state`` with every tensor rounded to ``dtype`` and back: what the graph is fed."""
    return layout.unflatten([t.to(dtype).to(t.dtype) for t in layout.flatten(state)])


@contextmanager
def _trainable(parameters: Iterable[torch.nn.Parameter]):
    """Parameters that are graph inputs require grad for the reference run, then as before."""
    saved = [(p, p.requires_grad) for p in parameters]
    for p, _ in saved:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)
