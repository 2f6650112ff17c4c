"""Small building blocks the tests share."""

from __future__ import annotations

import torch


def seeded_linear(
    n_in: int,
    n_out: int,
    seed: int,
    weights: tuple[float, float],
    bias: tuple[float, float] | None = None,
) -> torch.nn.Linear:
    """A ``Linear`` seeded with ``seed``, weights uniform in ``weights`` (mostly positive, so the
    next layer spikes) and, when given, the bias uniform in ``bias``."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.uniform_(*weights)
        if bias is not None:
            layer.bias.uniform_(*bias)
    return layer
