"""Argument checks shared by the functional steps.

They run on shapes, dtypes and Python numbers only, never on tensor values, so under
``torch.compile`` they are evaluated once while tracing and cost nothing afterwards.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lifexport.functional.threshold import check_method, surrogate_alpha


def check_input(name: str, x: object, min_dim: int = 1) -> None:
    """``x`` must be a floating-point tensor of at least ``min_dim`` dimensions."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch, ...), got shape "
            f"{tuple(x.shape)}"
        )


def check_dt(dt: object) -> None:
    """``dt`` must be a finite, positive real number (seconds)."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt must be a positive number of seconds, got {type(dt).__name__}")
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a positive, finite number of seconds, got {dt}")


def check_state(name: str, t: object, shape: torch.Size, like: Tensor) -> None:
    """A state tensor must be a tensor of exactly ``shape`` (no broadcasting) on ``like``'s device."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.shape != shape:
        raise ValueError(
            f"{name} must have shape {tuple(shape)} to match the input, got {tuple(t.shape)}; "
            "pass state=None to start from rest, or a state from a step of the same shape"
        )
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {like.device}")


def check_parameters(p: NamedTuple, shape: torch.Size, prefix: str = "p") -> None:
    """Neuron parameters: known method, one-number alpha, tensors that broadcast to ``shape``.

    A per-neuron parameter may broadcast *to* the neuron shape (e.g. ``(N,)`` against
    ``(B, N)``) but never enlarge it.
    """
    for field, value in zip(p._fields, p):
        name = f"{prefix}.{field}"
        if field == "method":
            check_method(value)
        elif field == "alpha":
            surrogate_alpha(value)
        elif hasattr(value, "_fields"):
            check_parameters(value, shape, name)
        elif isinstance(value, Tensor):
            try:
                broadcast = torch.broadcast_shapes(value.shape, shape)
            except RuntimeError:
                broadcast = None
            if broadcast != shape:
                raise ValueError(
                    f"{name} of shape {tuple(value.shape)} does not broadcast to the neuron "
                    f"shape {tuple(shape)}; use a scalar or a per-neuron tensor such as shape "
                    f"{tuple(shape[1:])}"
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
