"""``to_onnx``: a lifexport model to an ONNX file, as a streaming step or a whole sequence.

The graph's interface is a :class:`~lifexport.graph.GraphContract` (names and order of
inputs, outputs and states; see :mod:`lifexport.graph`), built here and stored in the file.
``to_onnx`` runs named stages, each with its own errors: check the request, probe the model
with one eager step, build the contract, wrap the model as a graph program, trace the training
step (training mode), export, quantize (``quantize="int8"``), write the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lifexport._version import __version__
from lifexport.errors import ExportError
from lifexport.export._domain import check_mode
from lifexport.export._files import save_model
from lifexport.export._program import export_program, kept_modes
from lifexport.export._quantize import quantize_int8
from lifexport.export._training import trace_training_step
from lifexport.graph import (
    GRAPHS,
    METADATA,
    QUANTIZE_KEY,
    GraphContract,
    GraphFile,
    StateLayout,
    X,
    weight_types,
)
from lifexport.limits import LIMITS, check_elements
from lifexport.modules import (
    as_sequence,
    constant_surrogates,
    neuron_layers,
    step_module,
    unrolled_time_loop,
)

__all__ = ["ExportedModel", "to_onnx", "state_names"]

Graph = Literal["step", "sequence"]

#: What :func:`to_onnx` returns: the file and its contract (the class ``read_graph`` returns).
ExportedModel = GraphFile


def _exportable_layers(model: torch.nn.Module) -> list[tuple[int, Any]]:
    """The neuron layers of ``model``, or an ``ExportError`` naming what cannot be exported."""
    try:
        return neuron_layers(model)
    except (TypeError, ValueError) as error:
        raise ExportError(f"to_onnx exports lifexport models: {error}") from error


def state_names(model: torch.nn.Module, x_step: Tensor) -> list[str]:
    """The names ``state.<k>.<field>`` of a model's state tensors, in the graph's order."""
    _exportable_layers(model)
    return list(StateLayout(step_module(model).initial_state(x_step)).names)


@dataclass(frozen=True)
class _Probe:
    """One eager step of the model on the example: the step input and the rest state."""

    x_step: Tensor
    state: Any
    layout: StateLayout


@dataclass(frozen=True)
class _Program:
    """What ``export_program`` traces: a module, its example arguments and dynamic shapes."""

    module: torch.nn.Module
    args: tuple[Tensor, ...]
    dims: tuple[Any, ...]


class _StepGraph(torch.nn.Module):
    """``forward(x, *state) -> (y, *next_state)``: one step with the state as flat tensors."""

    def __init__(self, model: torch.nn.Module, layout: StateLayout) -> None:
        super().__init__()
        self.model, self.layout = step_module(model), layout

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        x, *state = inputs  # one varargs signature: torch.export takes its shapes as a tuple
        y, new_state = self.model.step(x, self.layout.unflatten(state))
        return (y, *self.layout.flatten(new_state))


class _SequenceGraph(torch.nn.Module):
    """``forward(xs, *state) -> (ys, *final_state)`` (or ``ys`` alone, from rest)."""

    def __init__(self, model: torch.nn.Module, layout: StateLayout, with_state: bool) -> None:
        super().__init__()
        self.model, self.layout, self.with_state = as_sequence(model), layout, with_state

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        xs, *state = inputs
        ys, final = self.model(xs, self.layout.unflatten(state) if self.with_state else None)
        return (ys, *self.layout.flatten(final)) if self.with_state else (ys,)


class _WithTarget(torch.nn.Module):
    """``forward(x, target, *state)``: the graph module with a ``target`` input for the loss."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        x, _target, *state = inputs
        return self.inner(x, *state)


def _layer_metadata(model: torch.nn.Module) -> tuple[dict[str, Any], ...]:
    """Per neuron layer: index, type, dt, method, alpha and parameter values (as lists)."""
    return tuple(
        dict(
            index=index,
            type=type(layer).__name__,
            dt=layer.dt,
            method=layer.method,
            alpha=None if layer.alpha is None else float(layer.alpha),
            parameters={name: t.tolist() for name, t in layer.parameter_values().items()},
        )
        for index, layer in neuron_layers(model)
    )


def _check_path(path: str | os.PathLike) -> Path:
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


def _axes(graph: str) -> str:
    return "one step (B, ...)" if graph == "step" else "a sequence (T, B, ...)"


def _check_request(
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
    _exportable_layers(model)
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
            f"a {graph} graph takes {_axes(graph)}; got example_input of shape "
            f"{tuple(example_input.shape)}"
        )
    _check_unroll(unroll, graph, example_input)
    _check_quantize(quantize, calibration, mode, graph, example_input)


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
            f"{_axes(graph)} with features {features} (T and B may differ, but not be 0), "
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


def _probe(model: torch.nn.Module, example_input: Tensor, graph: str) -> _Probe:
    """Stage 2: one eager step on the example, which runs the layers' own input checks."""
    x_step = example_input if graph == "step" else example_input[0]
    step_model = step_module(model)
    try:
        state = step_model.initial_state(x_step)
        with torch.no_grad():
            step_model.step(x_step, state)
    except (RuntimeError, ValueError) as error:  # e.g. a Linear of other in_features
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} does not fit the model "
            f"({error}); a {graph} graph takes {_axes(graph)}"
        ) from error
    return _Probe(x_step, state, StateLayout(state))


def _contract(
    model: torch.nn.Module,
    example_input: Tensor,
    probe: _Probe,
    graph: str,
    mode: str,
    with_state: bool,
    target: Tensor | None,
) -> GraphContract:
    """Stage 3: the graph's interface; training graphs take the trainable parameters by the
    model's own ``named_parameters`` names."""
    training = mode == "training"
    return GraphContract(
        kind=graph,
        mode=mode,
        states=probe.layout.slots if with_state or graph == "step" else (),
        example_shape=tuple(example_input.shape),
        dtype=str(example_input.dtype).removeprefix("torch."),
        parameters=tuple(n for n, p in model.named_parameters() if p.requires_grad)
        if training
        else (),
        target_rank=None if target is None else target.dim(),
        layers=_layer_metadata(model),
        version=__version__,
    )


def _program(
    model: torch.nn.Module,
    example_input: Tensor,
    target: Tensor | None,
    probe: _Probe,
    contract: GraphContract,
) -> _Program:
    """Stage 4: the model wrapped as ``forward(x[, target], *state)`` with dynamic B (and T)."""
    batch = torch.export.Dim("B")
    if contract.kind == "step":
        module = _StepGraph(model, probe.layout)
        x_dims = {0: batch}
    else:
        module = _SequenceGraph(model, probe.layout, with_state=bool(contract.states))
        x_dims = {0: torch.export.Dim("T"), 1: batch}
    states = probe.layout.flatten(probe.state) if contract.states else []
    args, dims = [example_input, *states], [x_dims, *({0: batch} for _ in states)]
    if target is not None:
        module = _WithTarget(module)
        args.insert(1, target)
        dims.insert(1, {0: batch})  # the target is batch-first
    return _Program(module, tuple(args), tuple(dims))


def _training_program(
    model: torch.nn.Module,
    program: _Program,
    contract: GraphContract,
    loss: Callable[[Tensor, Tensor], Tensor] | None,
) -> _Program:
    """Stage 5 (training): forward, loss and parameter gradients traced into one program whose
    inputs and outputs are the contract's."""

    def objective(outputs, x, *rest):
        return outputs[0].sum() if loss is None else loss(outputs[0], rest[0])

    trainable = [p for p in program.module.parameters() if p.requires_grad]
    if [id(p) for p in trainable] != [id(p) for p in model.parameters() if p.requires_grad]:
        raise ExportError("the graph's trainable parameters are not the model's, in order")
    try:
        with kept_modes(model), constant_surrogates(model):
            traced = trace_training_step(
                program.module, program.args, loss=objective, dynamic_shapes=program.dims
            )
    except Exception as error:
        raise ExportError(f"tracing the training graph failed: {error}") from error
    if len(traced.args) != len(contract.input_names):
        raise ExportError(
            f"the training trace takes {len(traced.args)} inputs, the contract names "
            f"{len(contract.input_names)}: {contract.input_names}"
        )
    return _Program(traced.module, tuple(traced.args), tuple(traced.dynamic_shapes))


def _unrolled(unroll: int | None):
    """``unrolled_time_loop(unroll)``, or the setting around the call when ``None``."""
    return nullcontext() if unroll is None else unrolled_time_loop(unroll)


def _export(
    model: torch.nn.Module, program: _Program, contract: GraphContract, metadata, unroll
):
    """Stage 6: the program as an ONNX model under the contract's names (not yet written)."""
    with kept_modes(model), constant_surrogates(model), _unrolled(unroll):
        return export_program(
            program.module,
            program.args,
            mode=contract.mode,
            dynamic_shapes=program.dims,
            input_names=contract.input_names,
            output_names=contract.output_names,
            metadata={**contract.to_metadata(), **(metadata or {})},
        )


def _quantize(onnx_model, contract: GraphContract, calibration: Tensor):
    """Stage 7 (``quantize="int8"``): int8 weights, calibrated on the caller's input; the
    contract records how."""
    feeds = [{X: calibration.detach().cpu().contiguous().numpy()}]
    logging.disable(logging.WARNING)  # onnxruntime's quantizer advises pre-processing, always
    try:
        quantized = quantize_int8(onnx_model, feeds)
    finally:
        logging.disable(logging.NOTSET)
    weights = weight_types(quantized)
    if not weights.int8:
        raise ValueError(
            "quantize='int8' needs a model with Linear or Conv weights to quantize; this one "
            "has none (its neuron layers stay float32 anyway): drop quantize"
        )
    if weights.float:
        raise ExportError(
            f"quantize='int8' left weights in float: {', '.join(weights.float)}; the file would "
            "claim int8 weights it does not hold"
        )
    # quantize_int8 keeps the float file's metadata (the contract) and adds how it quantized
    how = next(p.value for p in quantized.metadata_props if p.key == QUANTIZE_KEY)
    return quantized, replace(contract, quantize=how)


def to_onnx(
    model: torch.nn.Module,
    example_input: Tensor,
    path: str | os.PathLike,
    *,
    graph: Graph = "sequence",
    mode: Literal["inference", "training"] = "inference",
    with_state: bool = True,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    target: Tensor | None = None,
    metadata: Mapping[str, str] | None = None,
    quantize: Literal["int8"] | None = None,
    calibration: Tensor | None = None,
    unroll: int | None = None,
) -> GraphFile:
    """Export a lifexport model to ONNX, checked and written atomically.

    Args:
        model: a lifexport layer (cell or sequence layer), a ``SequentialState`` or a
            ``TimeLoop``. Cells and stacks of cells export as a sequence through a time loop.
        example_input: what the graph's ``x`` takes: one step ``(B, ...)`` for
            ``graph="step"``, a sequence ``(T, B, ...)`` for ``graph="sequence"``. B and T stay
            dynamic; the values do not matter.
        path: the ``.onnx`` file to write (its folder must exist).
        graph: ``"step"`` (one time step, state in and out, for streaming) or ``"sequence"``
            (the whole time loop as ONNX ``Scan``; one per sequence layer of a stack).
        mode: ``"inference"`` (standard ONNX ops only) or ``"training"`` (spikes as
            ``lifexport`` ops with their ONNX functions, and a gradient graph).
        with_state: for ``graph="sequence"``: initial-state inputs and final-state outputs;
            without, the sequence starts from rest.
        loss: training mode: ``loss(y, target) -> scalar``; the sum of ``y`` (the output
            spikes) when ``None``.
        target: training mode, with ``loss``: an example target, batch first (its first
            dimension is B); it becomes input ``target``.
        metadata: more ``metadata_props`` to store, beside lifexport's own.
        quantize: ``"int8"``: Linear/Conv weights as int8 (QDQ, per channel, standard ops);
            spikes stay 0/1 and neuron state float32. Inference graphs of models with at
            least one Linear/Conv weight only. The file records it (``lifexport.quantize``),
            and :func:`lifexport.graph.read_graph` holds that claim to the graph's
            ``DequantizeLinear`` nodes.
        calibration: with ``quantize``: typical input, shaped like ``example_input`` (T and
            B may differ, the feature dimensions not), from which the layer input ranges are
            taken: finite, and not constant (all zeros gives no range).
        unroll: time steps per ``Scan`` iteration, an int in ``1..min(T, max_unroll)``: T of
            ``example_input`` (a longer block only pads) and
            :attr:`lifexport.limits.Limits.max_unroll` (tracing writes each step out); 1 for
            a step graph, which has no loop. The values do not change, only the number of
            iterations (measured slower on the CPU execution provider). ``None``: as
            :func:`lifexport.modules.unrolled_time_loop` around the call sets it, else 1.

    Returns:
        The file's path and its contract: input, output and state names, in order.

    Raises:
        ExportError: an unsupported model or layer (named), or an export that failed.
        ValueError: an unknown ``graph`` or ``mode``, a ``loss`` without ``target``, an
            ``example_input`` that does not fit the model, ``mode="training"`` for a model
            without trainable parameter, an ``unroll`` outside its range, a ``calibration``
            that is not finite, constant, of another shape or over
            :attr:`lifexport.limits.Limits.max_elements`, ``quantize`` of a model without
            weights; ``path`` is a folder.
        TypeError: ``path`` is not a ``str`` or ``os.PathLike`` of a text path.
        FileNotFoundError: ``path``'s folder does not exist.

    Examples:
        >>> import lifexport
        >>> net = lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIFRefrac())
        >>> out = to_onnx(net, torch.rand(10, 2, 4), "/tmp/net.onnx")
        >>> out.input_names
        ('x', 'state.1.v', 'state.1.i', 'state.1.rho')
        >>> out.output_names[:2]
        ('y', 'next_state.1.v')
    """
    path = _check_path(path)
    _check_request(
        model, example_input, graph, mode, loss, target, metadata, quantize, calibration, unroll
    )
    # Strides are traced as they are: a view such as xs[:, :2] of a (T, 360, F) tensor keeps a
    # stride of 360 * F, which fails the training trace ("Constraints violated (B)", torch 2.13).
    example_input = example_input.contiguous()
    target = None if target is None else target.contiguous()
    probe = _probe(model, example_input, graph)
    contract = _contract(model, example_input, probe, graph, mode, with_state, target)
    program = _program(model, example_input, target, probe, contract)
    if contract.training:
        with _unrolled(unroll):
            program = _training_program(model, program, contract, loss)
    onnx_model = _export(model, program, contract, metadata, unroll)
    if quantize is not None:
        onnx_model, contract = _quantize(onnx_model, contract, calibration)
    save_model(onnx_model, path)
    return GraphFile(path, contract)
