"""Stage 1 of :func:`~lifexport.validation.validate`: the arguments that need no file."""

from __future__ import annotations

import math

import torch

from lifexport.limits import LIMITS
from lifexport.validation._precision import PRECISIONS


def check_arguments(model: object, steps: object, **tolerances: object) -> None:
    """``model`` is a torch module, ``steps`` ``None`` or within the limits, each tolerance
    ``None`` or a finite number ``>= 0``.

    Raises:
        TypeError: ``model`` is not a ``torch.nn.Module``.
        ValueError: ``steps`` or a tolerance out of range (the message names it).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be the torch.nn.Module that was exported, got {type(model)}")
    top = LIMITS.max_steps
    bad = isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= top
    if steps is not None and bad:
        raise ValueError(
            f"steps must be None or an int in 1..{LIMITS.max_steps} "
            f"(lifexport.limits.LIMITS.max_steps), got {steps!r}"
        )
    for name, value in tolerances.items():
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")


def check_precision(precision: object, flip_budget: object) -> None:
    """``precision`` is ``None`` or one of :data:`PRECISIONS`, ``flip_budget`` in ``[0, 1]``.

    Raises:
        ValueError: either is not (the message names it).
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(flip_budget, bool) or not isinstance(flip_budget, (int, float)):
        raise ValueError(f"flip_budget must be a number in [0, 1], got {flip_budget!r}")
    if not 0 <= flip_budget <= 1:
        raise ValueError(f"flip_budget must be a number in [0, 1], got {flip_budget!r}")
