"""Stages 2 to 7 of :func:`~lifexport.export.to_onnx`, each with its own errors: probe the
model with one eager step, build the contract, wrap the model as a graph program, trace the
training step (training mode), export, quantize (``quantize="int8"``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from lifexport._version import __version__
from lifexport.errors import ExportError
from lifexport.export._check import axes
from lifexport.export._program import export_program, kept_modes
from lifexport.export._quantize import quantize_int8
from lifexport.export._training import trace_training_step
from lifexport.graph import QUANTIZE_KEY, GraphContract, StateLayout, X, weight_types
from lifexport.modules import (
    as_sequence,
    constant_surrogates,
    neuron_layers,
    step_module,
    unrolled_time_loop,
)


@dataclass(frozen=True)
class Probe:
    """One eager step of the model on the example: the step input and the rest state."""

    x_step: Tensor
    state: Any
    layout: StateLayout


@dataclass(frozen=True)
class Program:
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


def probe_model(model: torch.nn.Module, example_input: Tensor, graph: str) -> Probe:
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
            f"({error}); a {graph} graph takes {axes(graph)}"
        ) from error
    return Probe(x_step, state, StateLayout(state))


def build_contract(
    model: torch.nn.Module,
    example_input: Tensor,
    probe: Probe,
    graph: str,
    mode: str,
    with_state: bool,
    target: Tensor | None,
) -> GraphContract:
    """Stage 3: the graph's interface; training graphs take the trainable parameters by the
    model's own ``named_parameters`` names. A graph with state inputs records the model's
    state at rest for the example (``lifexport.initial_state``)."""
    training = mode == "training"
    states = probe.layout.slots if with_state or graph == "step" else ()
    try:
        initial = probe.layout.initial_values(probe.state) if states else None
    except ValueError as error:
        raise ExportError(f"cannot record the model's state at rest: {error}") from error
    return GraphContract(
        kind=graph,
        mode=mode,
        states=states,
        example_shape=tuple(example_input.shape),
        dtype=str(example_input.dtype).removeprefix("torch."),
        parameters=tuple(n for n, p in model.named_parameters() if p.requires_grad)
        if training
        else (),
        target_rank=None if target is None else target.dim(),
        layers=_layer_metadata(model),
        version=__version__,
        initial_state=initial,
    )


def build_program(
    model: torch.nn.Module,
    example_input: Tensor,
    target: Tensor | None,
    probe: Probe,
    contract: GraphContract,
) -> Program:
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
    return Program(module, tuple(args), tuple(dims))


def trace_training(
    model: torch.nn.Module,
    program: Program,
    contract: GraphContract,
    loss: Callable[[Tensor, Tensor], Tensor] | None,
) -> Program:
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
    return Program(traced.module, tuple(traced.args), tuple(traced.dynamic_shapes))


def unrolled(unroll: int | None):
    """``unrolled_time_loop(unroll)``, or the setting around the call when ``None``."""
    return nullcontext() if unroll is None else unrolled_time_loop(unroll)


def export_graph(
    model: torch.nn.Module,
    program: Program,
    contract: GraphContract,
    metadata,
    unroll,
    masks: str = "arithmetic",
):
    """Stage 6: the program as an ONNX model under the contract's names (not yet written)."""
    with kept_modes(model), constant_surrogates(model), unrolled(unroll):
        return export_program(
            program.module,
            program.args,
            mode=contract.mode,
            dynamic_shapes=program.dims,
            input_names=contract.input_names,
            output_names=contract.output_names,
            metadata={**contract.to_metadata(), **(metadata or {})},
            masks=masks,
        )


def quantize_graph(onnx_model, contract: GraphContract, calibration: Tensor):
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
