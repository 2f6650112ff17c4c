"""Training graphs: forward, loss and parameter gradients traced into one program.

``torch.export`` cannot trace a function that calls ``torch.autograd.grad``, and
``torch.export.experimental._export_forward_backward`` fails on a ``scan`` ("Trying to
backward through lifexport.super_spike_grad.default but no autograd formula was registered":
it re-traces the backward scan with grad enabled; torch 2.13). So the step is traced in two
passes:

1. ``torch.export`` the forward alone, with its dynamic shapes. A time loop written with
   ``scan`` becomes a ``scan`` node whose body is a graph, so step 2 never reaches the
   ``torch.compile`` that ``scan`` runs in eager mode. (``make_fx`` straight on the eager
   forward fails on torch 2.13: "Mixing fake modes NYI" with ``tracing_mode="fake"``, "Please
   convert all Tensors to FakeTensors first" with ``"real"``.)
2. ``make_fx(tracing_mode="symbolic")`` of forward + loss + ``torch.autograd.grad``, through the
   exported forward. Autograd differentiates each spike into its ``<method>_spike_grad`` op and
   each ``scan`` into a backward ``scan``; shapes stay symbolic, so T and B stay dynamic.

The result is a plain graph of aten ops, spike ops and scans, which
:func:`~lifexport.export.export_program` exports in ``training`` mode: the time loop stays
one ``Scan`` forward and one ``Scan`` backward, no unrolling.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils._pytree import tree_leaves

from lifexport.export import _quirks
from lifexport.export._program import kept_modes, takes_varargs


@dataclass(frozen=True)
class TrainingStep:
    """A traced training step: pass its fields to :func:`export_program` (``mode="training"``).

    Attributes:
        module: ``forward(*parameters, *inputs) -> (loss, *outputs, *gradients)``.
        args: example arguments: the trainable parameters' values, then the inputs.
        dynamic_shapes: positional, one entry per argument (``None`` for parameters).
        input_names: the parameters' names, then the inputs' names.
        output_names: ``"loss"``, the forward outputs' names, then ``"grad.<parameter>"``.
    """

    module: torch.nn.Module
    args: tuple[Tensor, ...]
    dynamic_shapes: tuple[Any, ...] | None
    input_names: list[str]
    output_names: list[str]


class _TrainingGraph(torch.nn.Module):
    """The traced step with the constants bound as buffers under their own names.

    ``forward(*parameters, *inputs)``: the constants (buffers, frozen parameters) export as
    initializers, not as graph inputs.
    """

    def __init__(self, graph: torch.fx.GraphModule, n_params: int, constants: dict) -> None:
        super().__init__()
        self._graph, self._n_params, self._constants = graph, n_params, list(constants)
        for name, tensor in constants.items():
            *path, leaf = name.split(".")
            owner = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, torch.nn.Module())
                owner = getattr(owner, part)
            owner.register_buffer(leaf, tensor)

    def forward(self, *args: Tensor):
        constants = [self.get_buffer(n) for n in self._constants]
        return self._graph(*args[: self._n_params], *constants, *args[self._n_params :])


def _sum_of_first(outputs: Any, *inputs: Tensor) -> Tensor:
    return tree_leaves(outputs)[0].sum()


def trace_training_step(
    module: torch.nn.Module,
    args: tuple[Tensor, ...],
    *,
    loss: Callable[..., Tensor] = _sum_of_first,
    dynamic_shapes: Mapping[str, Any] | Sequence[Any] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> TrainingStep:
    """Trace ``module``'s forward, a scalar loss and its gradients w.r.t. trainable parameters.

    Args:
        module: its forward takes ``args`` and returns a tensor or a pytree of tensors
            (spikes first). Parameters with ``requires_grad`` become graph inputs and get
            gradients; buffers and frozen parameters become constants (initializers).
        args: example inputs, tensors.
        loss: ``loss(outputs, *args)``: the forward's outputs and inputs (e.g. a target passed
            as an input) to a scalar tensor; by default the sum of the first output (the
            spike count).
        dynamic_shapes: of ``args``, as for :func:`torch.export.export` (a tuple, or a dict by
            the forward's parameter names).
        input_names: names of ``args``; by default the forward's parameter names.
        output_names: names of the forward's outputs (flattened); by default ``output_<i>``.

    Returns:
        The traced step with its example arguments and names.

    Raises:
        ValueError: ``module`` has no trainable parameter.

    Examples:
        >>> import lifexport.functional as lx
        >>> from lifexport.export import export_program
        >>> class Layer(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(2, 3)
        ...     def forward(self, x):
        ...         return lx.threshold(self.linear(x), "tanh", 2.0)
        >>> step = trace_training_step(Layer(), (torch.rand(4, 2),), output_names=["spikes"])
        >>> step.input_names
        ['linear.weight', 'linear.bias', 'x']
        >>> step.output_names
        ['loss', 'spikes', 'grad.linear.weight', 'grad.linear.bias']
        >>> model = export_program(step.module, step.args, mode="training",
        ...                        input_names=step.input_names, output_names=step.output_names)
        >>> [f.name for f in model.functions]
        ['TanhSpike', 'TanhSpikeGrad']
    """
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError(
            f"{type(module).__name__} has no parameter with requires_grad=True, so a training "
            "graph would have no gradient; make the weights (or v_th) nn.Parameters"
        )
    forward_names = list(inspect.signature(module.forward).parameters)[: len(args)]
    if isinstance(dynamic_shapes, Mapping):
        dynamic_shapes = tuple(dynamic_shapes.get(n) for n in forward_names)
    export_shapes = dynamic_shapes
    if dynamic_shapes is not None and takes_varargs(module):
        export_shapes = (tuple(dynamic_shapes),)  # torch.export sees *args as one argument
    with kept_modes(module), _quirks.tracing_context():  # traced in the module's own mode
        exported = torch.export.export(module, tuple(args), dynamic_shapes=export_shapes)
    forward = _quirks.track_scan_carries(exported.module())
    # Buffers and frozen parameters are traced as inputs too: a real tensor among the fake
    # ones of make_fx fails inside scan on torch 2.13 ("Cannot access data pointer of Tensor").
    state = chain(forward.named_parameters(), forward.named_buffers())
    constants = {n: t.detach() for n, t in state if n not in params}

    def step(*flat: Tensor) -> tuple[Tensor, ...]:
        values = dict(zip(params, flat[: len(params)]))
        flat = flat[len(params) :]
        bound = {**values, **dict(zip(constants, flat[: len(constants)]))}
        inputs = flat[len(constants) :]
        out = torch.func.functional_call(forward, bound, inputs)
        value = loss(out, *inputs)
        grads = torch.autograd.grad(value, list(values.values()), materialize_grads=True)
        return (value, *[t.detach() for t in tree_leaves(out)], *grads)

    leaves = [p.detach().requires_grad_() for p in params.values()]
    with _quirks.tracing_context():
        traced = make_fx(
            step, tracing_mode="symbolic", decomposition_table=_quirks.TRAINING_DECOMPOSITIONS
        )(*leaves, *constants.values(), *args)
    _quirks.unalias_scan_bodies(traced)
    n_outputs = len(exported.graph_signature.user_outputs)
    if dynamic_shapes is not None:
        dynamic_shapes = (None,) * len(params) + tuple(dynamic_shapes)
    return TrainingStep(
        module=_TrainingGraph(traced, len(params), constants),
        args=(*(p.detach() for p in params.values()), *args),
        dynamic_shapes=dynamic_shapes,
        input_names=[*params, *(input_names or forward_names)],
        output_names=[
            "loss",
            *(output_names or [f"output_{i}" for i in range(n_outputs)]),
            *(f"grad.{n}" for n in params),
        ],
    )
