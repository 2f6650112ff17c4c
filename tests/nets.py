"""Small building blocks the tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def altered_nir(source: Path, tmp_path: Path, key: str, **dataset) -> Path:
    """A copy of the NIR file ``source`` whose dataset ``/node/<key>`` is replaced by one made
    with the h5py keywords ``dataset`` (e.g. a huge compressed shape, never written)."""
    import h5py  # the NIR tests' dependency, not every test's

    path = tmp_path / "altered.nir"
    shutil.copy(source, path)
    with h5py.File(path, "a") as f:
        del f[f"node/{key}"]
        f["node"].create_dataset(key, **dataset)
    return path
