"""``to_onnx``: a lifexport model to an ONNX file, as a streaming step or a whole sequence.

Graph interface (names are stable; ``<k>`` is the layer's index in its stack, 0 for a single
layer, and ``<field>`` a state field: ``z``, ``v``, ``i``, ``rho``):

=============  ======================================  ======================================
graph          inputs                                  outputs
=============  ======================================  ======================================
``step``       ``x`` (B, ...), ``state.<k>.<field>``   ``y``, ``next_state.<k>.<field>``
``sequence``   ``x`` (T, B, ...) [, ``state.*``]       ``y`` (T, B, ...) [, ``next_state.*``]
=============  ======================================  ======================================

Training mode adds the trainable parameters as leading inputs (by their ``named_parameters``
name), an optional ``target`` after ``x``, ``loss`` as the first output and
``grad.<parameter>`` as the last ones. B (and T) are dynamic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lifexport._version import __version__
from lifexport.errors import ExportError
from lifexport.export._domain import check_mode
from lifexport.export._program import export_program, kept_modes
from lifexport.export._training import trace_training_step
from lifexport.modules import constant_surrogates
from lifexport.modules._neuron import NeuronModule
from lifexport.modules._time import flatten_state
from lifexport.modules.sequential import STATELESS_LAYERS, SequentialState, TimeLoop

__all__ = ["ExportedModel", "to_onnx", "state_names"]

GRAPHS = ("step", "sequence")
Graph = Literal["step", "sequence"]


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`to_onnx` wrote, and the names to feed and read.

    Attributes:
        path: the ``.onnx`` file.
        graph: ``"step"`` or ``"sequence"``.
        mode: ``"inference"`` or ``"training"``.
        input_names: graph inputs in order.
        output_names: graph outputs in order.
        state_names: the state inputs (``state.<k>.<field>``), in order; the matching outputs
            are ``next_`` + name.
    """

    path: Path
    graph: str
    mode: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_names: tuple[str, ...]


def _neuron_layers(model: torch.nn.Module) -> list[tuple[int, NeuronModule]]:
    """The neuron layers of a model with their index in its stack (0 for a single layer)."""
    if isinstance(model, TimeLoop):
        return _neuron_layers(model.module)
    if isinstance(model, NeuronModule):
        return [(0, model)]
    if isinstance(model, SequentialState):
        for index, layer in enumerate(model):
            if not isinstance(layer, (NeuronModule, *STATELESS_LAYERS)):
                raise ExportError(
                    f"layer {index} ({type(layer).__name__}) of the SequentialState cannot be "
                    f"exported; supported: lifexport layers and "
                    f"{', '.join(t.__name__ for t in STATELESS_LAYERS)}"
                )
        return [(i, m) for i, m in enumerate(model) if isinstance(m, NeuronModule)]
    raise ExportError(
        f"to_onnx exports lifexport layers, SequentialState and TimeLoop; got "
        f"{type(model).__name__}"
    )


def _field_names(state: Any) -> list[str]:
    """The leaf field names of a (nested) state NamedTuple, in flattening order."""
    names = []
    for field, value in zip(state._fields, state):
        names += _field_names(value) if hasattr(value, "_fields") else [field]
    return names


def _step_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose ``step`` and ``initial_state`` define one time step of ``model``."""
    return model.module if isinstance(model, TimeLoop) else model


def state_names(model: torch.nn.Module, x_step: Tensor) -> list[str]:
    """The names ``state.<k>.<field>`` of a model's state tensors, in flattening order."""
    layers = _neuron_layers(model)  # first: raises ExportError for an unsupported model
    step_model = _step_model(model)
    state = step_model.initial_state(x_step)
    per_layer = [state] if isinstance(step_model, NeuronModule) else [state[k] for k, _ in layers]
    return [
        f"state.{k}.{field}"
        for (k, _), layer_state in zip(layers, per_layer)
        for field in _field_names(layer_state)
    ]


class _StepGraph(torch.nn.Module):
    """``forward(x, *state) -> (y, *next_state)``: one step with the state as flat tensors."""

    def __init__(self, model: torch.nn.Module, example_state: Any) -> None:
        super().__init__()
        self.model = _step_model(model)
        self._unflatten = flatten_state(example_state)[1]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        x, *state = inputs  # one varargs signature: torch.export takes its shapes as a tuple
        y, new_state = self.model.step(x, self._unflatten(state))
        return (y, *flatten_state(new_state)[0])


class _SequenceGraph(torch.nn.Module):
    """``forward(xs, *state) -> (ys, *final_state)`` (or ``ys`` alone, from rest)."""

    def __init__(self, model: torch.nn.Module, example_state: Any, with_state: bool) -> None:
        super().__init__()
        self.model = model if getattr(model, "is_sequence", False) else TimeLoop(model)
        self._unflatten = flatten_state(example_state)[1]
        self.with_state = with_state

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        xs, *state = inputs
        initial = self._unflatten(state) if self.with_state else None
        ys, final = self.model(xs, initial)
        return (ys, *flatten_state(final)[0]) if self.with_state else (ys,)


class _WithTarget(torch.nn.Module):
    """``forward(x, target, *state)``: the graph module with a ``target`` input for the loss."""

    def __init__(self, graph: torch.nn.Module) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        x, _target, *state = inputs
        return self.inner(x, *state)


def _user_names(model: torch.nn.Module, wrapper: torch.nn.Module) -> dict[str, str]:
    """``wrapper``'s parameter names -> ``model``'s (``model.0.weight`` -> ``0.weight``).

    Matched by identity, not by stripping prefixes: the wrappers hold ``model`` itself, its
    step module (a ``TimeLoop``'s ``module``) or a ``TimeLoop`` around it, so the attribute
    paths differ by wrapper, while the user feeds parameters by ``model.named_parameters()``.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    return {n: names[id(p)] for n, p in wrapper.named_parameters() if id(p) in names}


def _layer_metadata(model: torch.nn.Module) -> list[dict[str, Any]]:
    layers = []
    for index, layer in _neuron_layers(model):
        parameters = {
            name: t.tolist() for name, t in layer.parameter_values().items()
        }  # scalars as numbers, per-neuron tensors as lists
        layers.append(
            dict(
                index=index,
                type=type(layer).__name__,
                dt=layer.dt,
                method=layer.method,
                alpha=None if layer.alpha is None else float(layer.alpha),
                parameters=parameters,
            )
        )
    return layers


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; give a file name such as model.onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"path {str(path)!r}: its folder {str(path.parent)!r} does not exist; create it first"
        )
    return path


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
) -> ExportedModel:
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

    Returns:
        The file's path and its input, output and state names.

    Raises:
        ExportError: an unsupported model or layer (named), or an export that failed.
        ValueError: an unknown ``graph`` or ``mode``, a ``loss`` without ``target``, an
            ``example_input`` that does not fit the model, or ``mode="training"`` for a model
            without trainable parameter.
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
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    check_mode(mode)
    if (loss is None) != (target is None):
        raise ValueError("loss and target go together: give both, or neither (sum of spikes)")
    path = _check_path(path)
    _neuron_layers(model)  # raises ExportError naming an unsupported model or layer
    if mode == "training" and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"{type(model).__name__} has no parameter with requires_grad=True, so a training "
            "graph would have no gradient; make the weights (or v_th) nn.Parameters"
        )
    if not isinstance(example_input, Tensor) or not example_input.dtype.is_floating_point:
        raise ValueError(f"example_input must be a floating-point tensor, got {example_input!r}")
    axes = "one step (B, ...)" if graph == "step" else "a sequence (T, B, ...)"
    if example_input.dim() < (1 if graph == "step" else 2):
        raise ValueError(
            f"a {graph} graph takes {axes}; got example_input of shape {tuple(example_input.shape)}"
        )
    # Strides are traced as they are: a view such as xs[:, :2] of a (T, 360, F) tensor keeps a
    # stride of 360 * F, which fails the training trace ("Constraints violated (B)", torch 2.13).
    example_input = example_input.contiguous()
    if isinstance(target, Tensor):
        target = target.contiguous()
    x_step = example_input if graph == "step" else example_input[0]
    step_model = _step_model(model)
    try:
        example_state = step_model.initial_state(x_step)
        with torch.no_grad():  # one eager step: the layers' own checks of their input
            step_model.step(x_step, example_state)
    except (RuntimeError, ValueError) as error:  # e.g. a Linear of other in_features
        raise ValueError(
            f"example_input of shape {tuple(example_input.shape)} does not fit the model "
            f"({error}); a {graph} graph takes {axes}"
        ) from error
    names = state_names(model, x_step)
    states, _ = flatten_state(example_state)

    batch = torch.export.Dim("B")
    if graph == "step":
        module = _StepGraph(model, example_state)
        x_dims = {0: batch}
        with_state = True
    else:
        module = _SequenceGraph(model, example_state, with_state)
        x_dims = {0: torch.export.Dim("T"), 1: batch}
    state_inputs = names if with_state else []
    args = [example_input, *(states if with_state else [])]
    dims = [x_dims, *({0: batch} for _ in state_inputs)]
    input_names = ["x", *state_inputs]
    output_names = ["y", *(f"next_{n}" for n in state_inputs)]

    metadata = {
        "lifexport.version": __version__,
        "lifexport.graph": graph,
        "lifexport.mode": mode,
        "lifexport.state_names": json.dumps(state_inputs),
        "lifexport.layers": json.dumps(_layer_metadata(model)),
        "lifexport.example_shape": json.dumps(list(example_input.shape)),
        **(metadata or {}),
    }
    if mode == "training":
        if target is not None:
            module = _WithTarget(module)
            args.insert(1, target)
            dims.insert(1, {0: batch})  # the target is batch-first
            input_names.insert(1, "target")

            def loss_fn(outputs, x, target_, *state):
                return loss(outputs[0], target_)
        else:

            def loss_fn(outputs, *inputs):
                return outputs[0].sum()

        try:
            with kept_modes(model), constant_surrogates(model):
                traced = trace_training_step(
                    module,
                    tuple(args),
                    loss=loss_fn,
                    dynamic_shapes=tuple(dims),
                    input_names=input_names,
                    output_names=output_names,
                )
        except Exception as error:
            raise ExportError(f"tracing the training graph failed: {error}") from error
        # parameters by the user's names, not the wrappers' attribute paths
        user = _user_names(model, module)
        module, args, dims = traced.module, list(traced.args), list(traced.dynamic_shapes)
        input_names = [user.get(n, n) for n in traced.input_names]
        output_names = [
            f"grad.{user[n[5:]]}" if n.startswith("grad.") and n[5:] in user else n
            for n in traced.output_names
        ]
    metadata["lifexport.inputs"] = json.dumps(input_names)
    metadata["lifexport.outputs"] = json.dumps(output_names)
    with kept_modes(model), constant_surrogates(model):
        export_program(
            module,
            tuple(args),
            path,
            mode=mode,
            dynamic_shapes=tuple(dims),
            input_names=input_names,
            output_names=output_names,
            metadata=metadata,
        )
    return ExportedModel(
        path, graph, mode, tuple(input_names), tuple(output_names), tuple(state_inputs)
    )
