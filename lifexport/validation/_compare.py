"""Comparing onnxruntime's values with torch's: differences, and the first mismatch.

Spikes are compared exactly, everything else with ``|onnx - torch| <= atol + rtol |torch|``.
The first mismatch is the earliest time step at which anything disagrees; within one step the
lowest layer of the stack comes first (a flip there causes the differences above it in the same
step), and a layer's spikes before its other states. Values a sequence graph only returns at
the end (final states, loss, gradients) come after every step. Its margin is the torch run's
``|v - v_th|`` for that neuron at that step; a mismatch is *numerical* when that margin is at
most ``numerical_margin``: ``v`` sat on the threshold, so a last-bit difference flipped it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping

import numpy as np
import torch

from lifexport.validation._report import Mismatch

#: Order of values compared only at the end, by kind: states, y, gradients, the loss.
_FINAL_ORDER = ("state", "y", "gradient", "loss")


#: ``(rtol, atol, numerical_margin)`` of a float32 graph: about 840, 84 and 84 ulps of 1.
FLOAT32_TOLERANCES = (1e-4, 1e-5, 1e-5)


def default_tolerances(dtype: torch.dtype) -> tuple[float, float, float]:
    """``(rtol, atol, numerical_margin)`` for a graph of ``dtype``: float32's scaled by
    ``eps(dtype) / eps(float32)``, the same number of ulps (float16: 8192 times float32's,
    so one rounding of a float16 ``v`` near ``v_th`` is a numerical flip, not a real one).

    Finer types keep float32's: the exporter writes Python float constants (``dt``, and what
    it folds with them) as float32 values, so a float64 graph is only float32-accurate there
    (torch 2.13, pinned in ``tests/export/test_exporter_quirks.py``).

    Examples:
        >>> default_tolerances(torch.float32)
        (0.0001, 1e-05, 1e-05)
        >>> [round(t, 6) for t in default_tolerances(torch.float16)]
        [0.8192, 0.08192, 0.08192]
    """
    scale = max(1.0, torch.finfo(dtype).eps / torch.finfo(torch.float32).eps)
    rtol, atol, margin = FLOAT32_TOLERANCES
    return rtol * scale, atol * scale, margin * scale


def differences(torch_value: np.ndarray, onnx_value: np.ndarray) -> tuple[float, float]:
    """``(max |onnx - torch|, max |onnx - torch| / |torch|)``, the latter over the elements
    where torch's value is not zero; NaN in both places counts as equal, in one as ``inf``."""
    a = np.asarray(torch_value, dtype=np.float64)
    b = np.asarray(onnx_value, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf, math.inf
    if a.size == 0:
        return 0.0, 0.0
    diff = np.abs(a - b)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    nonzero = (a != 0) & ~np.isnan(a)
    rel = diff[nonzero] / np.abs(a[nonzero])
    return float(diff.max()), float(rel.max()) if rel.size else 0.0


def disagreeing(
    torch_value: np.ndarray, onnx_value: np.ndarray, exact: bool, rtol: float, atol: float
) -> np.ndarray:
    """A boolean mask of the elements that disagree (same shapes assumed)."""
    if exact:
        return np.asarray(torch_value != onnx_value)
    return ~np.isclose(onnx_value, torch_value, rtol=rtol, atol=atol, equal_nan=True)


def margin_at(
    membrane: np.ndarray | None, step: int | None, index: tuple[int, ...]
) -> float | None:
    """``|v - v_th|`` at ``index`` of ``step`` in a ``(T, B, ...)`` record (its minimum over
    all steps when ``step`` is ``None``); ``None`` when the record does not cover it."""
    if membrane is None or membrane.ndim != len(index) + 1:
        return None
    if any(i >= n for i, n in zip(index, membrane.shape[1:])):
        return None
    if step is None:
        return float(np.abs(membrane[(slice(None), *index)]).min())
    if step >= membrane.shape[0]:
        return None
    return float(abs(membrane[(step, *index)]))


def is_numerical(margin: float | None, numerical_margin: float) -> bool:
    """A flip is numerical when torch's ``v`` was within ``numerical_margin`` of ``v_th``."""
    return margin is not None and margin <= numerical_margin


def first_mismatch(
    torch_values: Mapping[str, np.ndarray],
    onnx_values: Mapping[str, np.ndarray],
    *,
    stepped: Collection[str],
    spike_names: Collection[str],
    owners: Mapping[str, int | None],
    membrane: Mapping[int, np.ndarray],
    kinds: Mapping[str, str],
    rtol: float,
    atol: float,
    numerical_margin: float,
) -> Mismatch | None:
    """The first disagreement (see the module docstring for the order), or ``None``.

    Args:
        torch_values, onnx_values: output name -> value; only names in both are compared.
        stepped: names whose first axis is the time step.
        spike_names: names compared exactly.
        owners: name -> the stack index of the neuron layer that produces it.
        membrane: layer index -> torch's ``v - v_th`` at every step, ``(T, B, ...)``.
        kinds: name -> what it holds (``GraphContract.output_kind``), for the final order.
        rtol, atol: tolerance of the other values.
        numerical_margin: the largest margin at which a mismatch counts as numerical.
    """
    best: tuple[tuple, Mismatch] | None = None
    for order, name in enumerate(torch_values):
        if name not in onnx_values:
            continue
        a, b = np.asarray(torch_values[name]), np.asarray(onnx_values[name])
        layer = owners.get(name)
        rank = math.inf if layer is None else layer
        spike = name in spike_names
        if a.shape != b.shape:
            found = Mismatch(name, None, layer, (), math.nan, math.nan, None, False, "shape")
            key: tuple = (-1, 0, 0, 0, order)
        else:
            fail = disagreeing(a, b, spike, rtol, atol)
            if not fail.any():
                continue
            index = tuple(int(i) for i in np.argwhere(fail)[0])
            torch_value, onnx_value = float(a[index]), float(b[index])
            if name in stepped:
                step, index = index[0], index[1:]
                key = (0, step, rank, 0 if spike else 1, order)
            else:
                step = None
                final = _FINAL_ORDER.index(kinds[name])
                key = (1, 0, final, rank, order)
            margin = None if layer is None else margin_at(membrane.get(layer), step, index)
            found = Mismatch(
                name,
                step,
                layer,
                index,
                torch_value,
                onnx_value,
                margin,
                is_numerical(margin, numerical_margin),
                "spike" if spike else "value",
            )
        if best is None or key < best[0]:
            best = (key, found)
    return None if best is None else best[1]


def summarize(
    torch_values: Mapping[str, np.ndarray],
    onnx_values: Mapping[str, np.ndarray],
    names: Iterable[str],
    spike_names: Collection[str],
    rtol: float,
    atol: float,
) -> tuple[dict[str, float], dict[str, float], int, tuple[str, ...]]:
    """``(max_abs, max_rel, flips, failed)`` over ``names``: the largest differences per name,
    the number of differing spike elements, and the names that disagree anywhere."""
    max_abs, max_rel, flips, failed = {}, {}, 0, []
    for name in names:
        a, b = np.asarray(torch_values[name]), np.asarray(onnx_values[name])
        max_abs[name], max_rel[name] = differences(a, b)
        if a.shape != b.shape:
            failed.append(name)
            continue
        fail = disagreeing(a, b, name in spike_names, rtol, atol)
        if fail.any():
            failed.append(name)
        if name in spike_names:
            flips += int(fail.sum())
    return max_abs, max_rel, flips, tuple(failed)
