"""The drive an exported file expects: the caller's checked, or a seeded one."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifexport.graph import METADATA, GraphFile
from lifexport.limits import LIMITS, check_elements

#: The metadata key of the example shape, which sizes a synthesized drive.
_EXAMPLE_KEY = next(m.key for m in METADATA if m.field == "example_shape")


def _pattern(info: GraphFile) -> str:
    return f"(T, B{''.join(f', {d}' for d in info.feature_shape)})"


def check_inputs(info: GraphFile, inputs: Any, steps: int | None) -> Tensor:
    """The caller's drive as a ``(T, B, ...)`` tensor of the graph's dtype.

    Raises:
        TypeError: not a tensor (or array).
        ValueError: a rank or feature shape other than the exported example's, an empty time
            or batch axis, more time steps than :attr:`lifexport.limits.Limits.max_steps`, a
            dtype other than the graph's, or ``steps`` other than its T.
    """
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor {_pattern(info)}, got {type(inputs)}")
    shape = tuple(inputs.shape)
    expected = len(info.feature_shape) + 2
    if inputs.dim() != expected or shape[2:] != info.feature_shape:
        hint = (
            "; a step graph is driven with a whole sequence, one step at a time: add the time "
            "dimension"
            if info.graph == "step" and inputs.dim() == expected - 1
            else ""
        )
        raise ValueError(
            f"inputs must have shape {_pattern(info)} for this {info.graph} graph (exported "
            f"with example shape {info.example_shape}; T and B may differ), got {shape}{hint}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"inputs must have at least one time step and one sample, got {shape}")
    if shape[0] > LIMITS.max_steps:
        raise ValueError(
            f"inputs has {shape[0]} time steps, over the limit of {LIMITS.max_steps} "
            "(lifexport.limits.LIMITS.max_steps; raise it if a real use needs more)"
        )
    if inputs.dtype != info.dtype:
        raise ValueError(
            f"inputs must have the graph's dtype {info.dtype}, got {inputs.dtype}; convert it"
        )
    if steps is not None and steps != shape[0]:
        raise ValueError(f"steps={steps} but inputs has {shape[0]} time steps; give one of them")
    return inputs


def synthesize_inputs(
    info: GraphFile, steps: int | None, seed: int, batch: int | None = None
) -> Tensor:
    """A seeded drive ``(T, B, ...)``: uniform currents in ``[0, 3)``, which make LIF-refrac
    neurons at their default parameters spike often but not always; B is ``batch``, else the
    example's (from the file's metadata, so its size is checked before anything is allocated).

    Raises:
        ValueError: ``steps`` over :attr:`lifexport.limits.Limits.max_steps`, or a drive over
            :attr:`lifexport.limits.Limits.max_elements`.
    """
    steps = 200 if steps is None else steps
    if steps > LIMITS.max_steps:
        raise ValueError(
            f"steps={steps} is over the limit of {LIMITS.max_steps} time steps "
            "(lifexport.limits.LIMITS.max_steps; raise it if a real use needs more)"
        )
    from_file = batch is None
    shape = (steps, info.contract.batch if from_file else batch, *info.feature_shape)
    source = "B and features" if from_file else "features"
    check_elements(
        f"the drive of {steps} steps, its {source} from metadata {_EXAMPLE_KEY} "
        f"{list(info.example_shape)},",
        shape,
    )
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=info.dtype) * 3.0
