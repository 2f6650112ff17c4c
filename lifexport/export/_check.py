"""Stage 1 of :func:`~lifexport.export.to_onnx`: the request checked before any tracing (the
model's layers, the path, graph, mode, loss and target, example input, unroll, quantize and
calibration)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lifexport.errors import ExportError
from lifexport.export._domain import check_mode
from lifexport.export._rewrite import check_masks
from lifexport.graph import GRAPHS, METADATA
from lifexport.limits import LIMITS, check_elements
from lifexport.modules import neuron_layers


def exportable_layers(model: torch.nn.Module) -> list[tuple[int, Any]]:
    """The neuron layers of ``model``, or an ``ExportError`` naming what cannot be exported."""
    try:
        return neuron_layers(model)
    except (TypeError, ValueError) as error:
        raise ExportError(f"to_onnx exports lifexport models: {error}") from error


def check_path(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`: a file name (not a folder) in a folder that
    exists."""
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(
            f"path must be a str or os.PathLike of a text path (such as 'model.onnx'), got "
            f"{type(path).__name__}"
        )
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; give a file name such as model.onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"path {str(path)!r}: its folder {str(path.parent)!r} does not exist; create it first"
        )
    return path


def axes(graph: str) -> str:
    """What a ``graph`` graph's ``x`` holds, for messages."""
    return "one step (B, ...)" if graph == "step" else "a sequence (T, B, ...)"


def check_request(
    model: torch.nn.Module,
    example_input: Tensor,
    graph: str,
    mode: str,
    loss: Callable | None,
    target: Tensor | None,
    metadata: Mapping[str, str] | None,
    quantize: str | None = None,
    calibration: Tensor | None = None,
    unroll: int | None = None,
    masks: str = "arithmetic",
) -> None:
    """Stage 1: the arguments, before any tracing."""
    clash = sorted(set(metadata or {}) & {m.key for m in METADATA if m.required})
    if clash:
        raise ValueError(f"metadata: {clash} are lifexport's own keys, written by to_onnx")
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    check_mode(mode)
    if (loss is None) != (target is None):
        raise ValueError("loss and target go together: give both, or neither (sum of spikes)")
    exportable_layers(model)
    if mode == "training" and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"{type(model).__name__} has no parameter with requires_grad=True, so a training "
            "graph would have no gradient; make the weights (or v_th) nn.Parameters"
        )
    if target is not None and not isinstance(target, Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not isinstance(example_input, Tensor) or not example_input.dtype.is_floating_point:
        raise ValueError(f"example_input must be a floating-point tensor, got {example_input!r}")
    if example_input.dim() < (1 if graph == "step" else 2):
        raise ValueError(
            f"a {graph} graph takes {axes(graph)}; got example_input of shape "
            f"{tuple(example_input.shape)}"
        )
    _check_unroll(unroll, graph, example_input)
    _check_quantize(quantize, calibration, mode, graph, example_input)
    check_masks(masks, mode)


def _check_unroll(unroll: object, graph: str, example_input: Tensor) -> None:
    """``unroll``: ``None`` or an int in ``1..min(T, LIMITS.max_unroll)``; a step graph has no
    time loop, so 1 there."""
    if unroll is None:
        return
    if graph == "step":
        top, why = 1, "a step graph has no time loop"
    else:
        steps = example_input.shape[0]
        top = min(steps, LIMITS.max_unroll)
        why = f"at most T = {steps}, the example input's time steps" + (
            f", and lifexport.limits.LIMITS.max_unroll = {LIMITS.max_unroll}"
            if LIMITS.max_unroll < steps
            else ""
        )
    if isinstance(unroll, bool) or not isinstance(unroll, int) or not 1 <= unroll <= top:
        raise ValueError(
            f"unroll must be an int in 1..{top} (steps per Scan iteration: {why}), got {unroll!r}"
        )


def _check_quantize(
    quantize: str | None,
    calibration: Tensor | None,
    mode: str,
    graph: str,
    example_input: Tensor,
) -> None:
    """``quantize`` and ``calibration``: typical input the export can take, whose ranges mean
    something (finite, not constant)."""
    if quantize is None:
        if calibration is not None:
            raise ValueError("calibration is for quantize='int8'; drop it, or quantize")
        return
    if quantize != "int8":
        raise ValueError(f"quantize must be 'int8' or None, got {quantize!r}")
    if mode != "inference":
        raise ValueError("quantize='int8' needs mode='inference' (training graphs stay float)")
    if not isinstance(calibration, Tensor):
        raise ValueError(
            "quantize='int8' needs calibration=: a tensor shaped like example_input (T and B may "
            f"differ) with typical input, got {type(calibration).__name__}"
        )
    if calibration.dim() != example_input.dim() or calibration.dtype != example_input.dtype:
        raise ValueError(
            f"calibration must have example_input's rank and dtype ({example_input.dim()}, "
            f"{example_input.dtype}), got shape {tuple(calibration.shape)}, {calibration.dtype}"
        )
    shape, lead = tuple(calibration.shape), 1 if graph == "step" else 2
    features = tuple(example_input.shape[lead:])
    if shape[lead:] != features or 0 in shape[:lead]:
        raise ValueError(
            f"calibration must be shaped like example_input {tuple(example_input.shape)}: "
            f"{axes(graph)} with features {features} (T and B may differ, but not be 0), "
            f"got {shape}"
        )
    check_elements("calibration", shape)
    if not bool(torch.isfinite(calibration).all()):
        raise ValueError(
            "calibration must be finite: it holds NaN or inf, which give no input range; give "
            "typical input"
        )
    low, high = calibration.min().item(), calibration.max().item()
    if low == high:
        raise ValueError(
            f"calibration must vary: every element is {low}, which gives no input range to "
            "quantize over; give typical input"
        )
