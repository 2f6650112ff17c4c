"""One call from a torch program to a checked ONNX model: export, functions, checks, file."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import onnx
import torch

from lifexport.errors import ExportError
from lifexport.export import _quirks
from lifexport.export._domain import (
    OPSET,
    Mode,
    attach_functions,
    check_mode,
    check_op_set,
    translation_table,
)
from lifexport.export._files import save_model
from lifexport.export._graph import strip_node_metadata
from lifexport.export._rewrite import check_masks, lean_graph


class _Function(torch.nn.Module):
    """A plain function (or a traced graph) as a module, which is what the exporter takes."""

    def __init__(self, fn: Callable) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def as_module(fn_or_module: Callable) -> torch.nn.Module:
    """``fn_or_module`` itself if it is a module, else a module whose forward calls it."""
    if isinstance(fn_or_module, torch.nn.Module):
        return fn_or_module
    if not callable(fn_or_module):
        raise TypeError(f"expected a torch.nn.Module or a function, got {type(fn_or_module)}")
    return _Function(fn_or_module)


@contextmanager
def kept_modes(module: torch.nn.Module) -> Iterator[None]:
    """Give every submodule of ``module`` back its own ``training`` flag on the way out.

    ``module.train(flag)`` would set one flag on all of them, which turns an eval-mode
    model's Dropout back on, or a mix (a frozen BatchNorm in a training model) into one mode.
    """
    flags = [(m, m.training) for m in module.modules()]
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def takes_varargs(module: torch.nn.Module) -> bool:
    kinds = [p.kind for p in inspect.signature(module.forward).parameters.values()]
    return kinds == [inspect.Parameter.VAR_POSITIONAL]


def export_program(
    fn_or_module: Callable,
    args: tuple[Any, ...],
    path: str | os.PathLike | None = None,
    *,
    mode: Mode,
    dynamic_shapes: Mapping[str, Any] | Sequence[Any] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    masks: str = "arithmetic",
) -> onnx.ModelProto:
    """Export a torch program to a checked ONNX model, and save it if ``path`` is given.

    The program runs in eval mode (every submodule's own mode is restored afterwards, also
    when the export fails) and without autograd: a training graph's gradients come from
    :func:`trace_training_step`.

    Args:
        fn_or_module: a module, or a function of tensors (for a function, or a module whose
            forward takes ``*args``, ``dynamic_shapes`` is a tuple, one entry per argument).
        args: example arguments.
        path: where to write the ``.onnx`` file (atomically); ``None`` writes nothing.
        mode: ``"inference"`` (standard ONNX ops only) or ``"training"`` (spikes and their
            gradients as ``lifexport`` ops, with their functions attached).
        dynamic_shapes: as for :func:`torch.export.export`, with :class:`torch.export.Dim`.
        input_names: names of the graph inputs, in order.
        output_names: names of the graph outputs, in order.
        metadata: added to the model's ``metadata_props``.
        masks: inference only: ``"select"`` also turns 0/1 mask blends into ``Where``
            (:func:`~lifexport.export._rewrite.lean_graph`'s ``select``).

    Returns:
        The model, without the exporter's per-node debug metadata (stack traces, local
        paths); it passed ``onnx.checker.check_model(full_check=True)`` and
        :func:`check_op_set`. An inference model has repeated nodes merged and each spike
        compare ``v`` with ``v_th`` directly (:func:`~lifexport.export._rewrite.lean_graph`):
        fewer nodes per time step, the same bits.

    Raises:
        ExportError: the exporter failed, or the model failed a check.
        ValueError: an unknown ``mode`` or ``masks``, or ``masks="select"`` for training.
        TypeError: ``fn_or_module`` is not callable, or a function's ``dynamic_shapes`` is
            a dict.

    Examples:
        >>> import lifexport.functional as lx
        >>> from lifexport.export import op_types
        >>> spike = lambda x: lx.threshold(x, "super", 2.0)
        >>> sorted(op_types(export_program(spike, (torch.rand(3),), mode="inference")))
        [('', 'Cast'), ('', 'Greater')]
        >>> model = export_program(spike, (torch.rand(3),), mode="training")
        >>> sorted(op_types(model)), [f.name for f in model.functions]
        ([('lifexport', 'SuperSpike')], ['SuperSpike'])
    """
    check_mode(mode)
    check_masks(masks, mode)
    module = as_module(fn_or_module)
    if dynamic_shapes is not None and takes_varargs(module):
        if isinstance(dynamic_shapes, Mapping):
            raise TypeError(
                "dynamic_shapes of a function (or a forward(*args)) must be a tuple, one entry "
                "per argument"
            )
        dynamic_shapes = (tuple(dynamic_shapes),)  # torch.export sees *args as one argument
    try:
        with kept_modes(module), _quirks.exporter_context(), _quirks.distinct_outputs_of(module):
            module.eval()
            program = torch.onnx.export(
                module,
                tuple(args),
                dynamo=True,
                opset_version=OPSET,
                custom_translation_table=translation_table(mode),
                dynamic_shapes=dynamic_shapes,
                input_names=input_names,
                output_names=output_names,
                verbose=False,
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed in {mode} mode: {e}") from e
    model = program.model_proto
    if mode == "inference":  # a training graph's gradients need the arithmetic form
        model = lean_graph(model, select=masks == "select")
    model = strip_node_metadata(model)
    if mode == "training":
        attach_functions(model)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    check_op_set(model, mode)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported {mode} model fails the ONNX checker: {e}") from e
    if path is not None:
        save_model(model, path)
    return model
