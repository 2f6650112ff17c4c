"""The eager torch run an exported graph is checked against, with every spike's margin.

How a margin is recorded: every surrogate spike is the custom op
``torch.ops.lifexport.<method>_spike(x, alpha)``, and its input ``x`` is exactly what is
thresholded: ``v_decayed - v_th`` for the membrane, ``rho`` for the refractory mask.
A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each such call (below
autograd, so training runs record too), and each neuron layer's ``step`` is wrapped, on the
instance and only for the run, so that each call is filed under the layer and time step that
made it, whatever the order layers run in (a stack of cells runs layer by layer each step, a
stack of sequence layers runs each layer through all steps). Within one layer step the first
call is the membrane (LIF and LIF-refrac steps threshold ``v - v_th`` first; a LIF-refrac step
then thresholds ``rho``), and its ``|x|`` is the margin. ``method="heaviside"`` has no
custom op: there the ``aten.gt.Scalar(x, 0)`` that ``heaviside`` calls is recorded instead
(calls of another shape than the layer's output, such as parameter checks, are dropped).
Leaky integrators call none and have no margin. The same wrappers record each layer's state
after every step, so a sequence graph's states can be compared step by step too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from lifexport.functional.threshold import SURROGATES
from lifexport.modules._neuron import NeuronModule
from lifexport.modules._time import flatten_state
from lifexport.modules.sequential import SequentialState, TimeLoop
from lifexport.validation._graph import GraphFile

_SPIKE_OPS = frozenset(op for s in SURROGATES.values() for op in (s.spike, s.spike_attr))


def to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def neuron_layers(model: torch.nn.Module) -> list[tuple[int, NeuronModule]]:
    """The neuron layers with their stack index ``k`` (the ``<k>`` of ``state.<k>.<field>``)."""
    if isinstance(model, TimeLoop):
        return neuron_layers(model.module)
    if isinstance(model, NeuronModule):
        return [(0, model)]
    if isinstance(model, SequentialState):
        return [(k, m) for k, m in enumerate(model) if isinstance(m, NeuronModule)]
    return []


def output_layer(model: torch.nn.Module) -> NeuronModule | None:
    """The neuron layer whose output is the model's ``y``, if the model ends in one."""
    if isinstance(model, TimeLoop):
        return output_layer(model.module)
    if isinstance(model, SequentialState) and len(model):
        model = model[len(model) - 1]
    return model if isinstance(model, NeuronModule) else None


@dataclass
class Reference:
    """Eager torch's values, laid out as the graph's outputs.

    Attributes:
        outputs: graph output name -> value; names in ``stepped`` have a leading time axis
            (every output of a step graph, ``y`` of a sequence graph).
        stepped: see ``outputs``.
        states: ``next_state.<k>.<field>`` -> the state after every step, ``(T, B, ...)``.
        membrane: layer ``k`` -> ``v_decayed - v_th`` at every step, ``(T, B, ...)``.
        owners: output name -> the layer ``k`` that produces it.
        spike_names: outputs compared exactly (spikes).
    """

    outputs: dict[str, np.ndarray]
    stepped: frozenset[str]
    states: dict[str, np.ndarray] = field(default_factory=dict)
    membrane: dict[int, np.ndarray] = field(default_factory=dict)
    owners: dict[str, int | None] = field(default_factory=dict)
    spike_names: frozenset[str] = frozenset()


class _SpikeRecorder(TorchDispatchMode):
    """Appends the input of every spike op to ``calls`` while ``calls`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[np.ndarray] | None = None
        self.heaviside = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.calls is not None and (
            func in _SPIKE_OPS
            or (self.heaviside and func is torch.ops.aten.gt.Scalar and args[1] == 0)
        ):
            self.calls.append(to_numpy(args[0]).copy())
        return out


@dataclass
class _LayerLog:
    calls: list[list[np.ndarray]] = field(default_factory=list)  # per step, per spike call
    states: list[list[np.ndarray]] = field(default_factory=list)  # per step, per state tensor


@contextmanager
def _watch(
    layers: list[tuple[int, NeuronModule]], recorder: _SpikeRecorder
) -> Iterator[dict[int, _LayerLog]]:
    """Wrap each layer's ``step`` (on the instance, for the duration) to log its spike calls
    and its new state under its index."""
    logs = {k: _LayerLog() for k, _ in layers}
    saved = {}
    for k, layer in layers:
        saved[k] = vars(layer).get("step")

        def step(x: Tensor, state: Any, k=k, layer=layer, inner=layer.step):
            calls: list[np.ndarray] = []
            outer = recorder.calls, recorder.heaviside
            recorder.calls, recorder.heaviside = calls, layer.method == "heaviside"
            try:
                y, new_state = inner(x, state)
            finally:
                recorder.calls, recorder.heaviside = outer
            # only thresholds of the layer's neurons: checks of the layer's parameters
            # (``tau > 0`` on a 0-dim or per-neuron tensor) call ``gt`` too
            logs[k].calls.append([c for c in calls if c.shape == tuple(y.shape)])
            logs[k].states.append([to_numpy(t).copy() for t in flatten_state(new_state)[0]])
            return y, new_state

        vars(layer)["step"] = step
    try:
        with recorder:
            yield logs
    finally:
        for k, layer in layers:
            if saved[k] is None:
                vars(layer).pop("step", None)
            else:
                vars(layer)["step"] = saved[k]


def _membrane(log: _LayerLog) -> np.ndarray | None:
    """The first spike call of every step, stacked; ``None`` if some step made none."""
    first = [calls[0] for calls in log.calls if calls]
    if not first or len(first) != len(log.calls) or len({a.shape for a in first}) != 1:
        return None
    return np.stack(first)


def _detach(state: Any) -> Any:
    return tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, state)


def run_torch(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    *,
    parameters: dict[str, torch.nn.Parameter],
    target: Tensor | None,
    loss: Callable[[Tensor, Tensor], Tensor] | None,
) -> Reference:
    """Run ``model`` eagerly as the graph computes: one step at a time from rest (step graph)
    or over the whole sequence from rest (sequence graph); in training mode also the loss
    and ``torch.autograd`` gradients of ``parameters`` (graph input name -> parameter)."""
    layers = neuron_layers(model)
    step_model = model.module if isinstance(model, TimeLoop) else model
    training = info.mode == "training"
    names = list(parameters)
    params = list(parameters.values())

    def objective(y: Tensor, target_t: Tensor | None) -> Tensor:
        return y.sum() if loss is None else loss(y, target_t)

    def gradients(value: Tensor) -> list[np.ndarray]:
        grads = torch.autograd.grad(value, params, allow_unused=True)
        return [to_numpy(torch.zeros_like(p) if g is None else g) for p, g in zip(params, grads)]

    recorder = _SpikeRecorder()
    rows: dict[str, list[np.ndarray]] = {}
    outputs: dict[str, np.ndarray] = {}
    with _watch(layers, recorder) as logs, torch.set_grad_enabled(training):
        state = step_model.initial_state(xs[0])
        if info.graph == "step":
            per_step = target is not None and target.dim() == info.input_ranks["target"] + 1
            for t in range(xs.shape[0]):
                y, new_state = step_model.step(xs[t], state)
                values = {"y": y}
                for name, tensor in zip(info.state_names, flatten_state(new_state)[0]):
                    values[f"next_{name}"] = tensor
                if training:
                    value = objective(y, target[t] if per_step else target)
                    values["loss"] = value
                    values.update(zip((f"grad.{n}" for n in names), gradients(value)))
                for name, value in values.items():
                    rows.setdefault(name, []).append(
                        value if isinstance(value, np.ndarray) else to_numpy(value)
                    )
                state = _detach(new_state)
            outputs = {name: np.stack(rows[name]) for name in info.output_names}
            stepped = frozenset(outputs)
        else:
            sequence = model if getattr(model, "is_sequence", False) else TimeLoop(model)
            ys, final = sequence(xs, state)
            outputs["y"] = to_numpy(ys)
            for name, tensor in zip(info.state_names, flatten_state(final)[0]):
                outputs[f"next_{name}"] = to_numpy(tensor)
            if training:
                value = objective(ys, target)
                outputs["loss"] = to_numpy(value)
                outputs.update(zip((f"grad.{n}" for n in names), gradients(value)))
            outputs = {name: outputs[name] for name in info.output_names}
            stepped = frozenset({"y"})

    reference = Reference(outputs, stepped)
    last = output_layer(model)
    for k, layer in layers:
        layer_states = [n for n in info.state_names if n.startswith(f"state.{k}.")]
        log = logs[k]
        if log.states and all(len(s) == len(layer_states) for s in log.states):
            for j, name in enumerate(layer_states):
                reference.states[f"next_{name}"] = np.stack([s[j] for s in log.states])
        membrane = _membrane(log)
        if membrane is not None:
            reference.membrane[k] = membrane
        for name in layer_states:
            reference.owners[f"next_{name}"] = k
        if layer is last:
            reference.owners["y"] = k
    spikes = {n for n in outputs if n.startswith("next_state.") and n.endswith(".z")}
    if last is not None and last.method is not None:
        spikes.add("y")
    reference.spike_names = frozenset(spikes)
    return reference
