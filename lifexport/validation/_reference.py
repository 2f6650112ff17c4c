"""The eager torch run an exported graph is checked against, with every spike's margin.

How a margin is recorded: every surrogate spike is the custom op
``torch.ops.lifexport.<method>_spike(x, alpha)``, and its input ``x`` is exactly what is
thresholded: ``v_decayed - v_th`` for the membrane, ``rho`` for the refractory mask.
A :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each such call (below
autograd, so training runs record too), and each neuron layer's ``step`` is wrapped, on the
instance and only for the run, so that each call is filed under the layer and time step that
made it, whatever the order layers run in (a stack of cells runs layer by layer each step, a
stack of sequence layers runs each layer through all steps). Which call of a layer step is the
membrane is the layer's to declare (``NeuronModule.membrane_call``, the index among the step's
spike calls; LIF and LIF-refrac steps threshold ``v - v_th`` first, index 0, and a LIF-refrac
step then thresholds ``rho``; ``None``: no call is, no margin), and its ``|x|`` is the margin.
The state fields that hold spikes, compared exactly, are the layer's ``spike_fields`` (``z``
where a layer declares none). ``method="heaviside"`` has no
custom op: there the ``aten.gt.Scalar(x, 0)`` that ``heaviside`` calls is recorded instead
(calls of another shape than the layer's output, such as parameter checks, are dropped).
Leaky integrators call none and have no margin. The same wrappers record each layer's state
after every step, so a sequence graph's states can be compared step by step too.

The reference runs the step path the graph was traced from, whatever a layer's ``backend``:
for the run, every fused sequence layer is set to the ``scan`` backend (:func:`step_path`),
whose time loop calls the layer's ``step`` (the fused kernel computes the same arithmetic but
never calls it, so neither margins nor per-step states could be recorded).
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
from torch.utils._pytree import tree_leaves, tree_map

from lifexport.functional import SURROGATES
from lifexport.graph import LOSS, GraphContract, GraphFile, StateLayout, Y
from lifexport.modules import (
    FusedSequenceLayer,
    NeuronModule,
    SequentialState,
    as_sequence,
    neuron_layers,
    step_module,
)


def to_numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def output_layer(model: torch.nn.Module) -> NeuronModule | None:
    """The neuron layer whose output is the model's ``y``, if the model ends in one."""
    model = step_module(model)
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
        membrane: layer ``k`` -> ``v_decayed - v_th`` at every step, ``(T, B, ...)``: the
            input of the layer's :func:`membrane_call`; absent where it declares none.
        owners: output name -> the layer ``k`` that produces it.
        spike_names: outputs compared exactly (spikes): ``y`` of a spiking output layer and
            the state fields each layer declares (:func:`spike_fields`).
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
        # Read when recording starts, so surrogates registered after import count too.
        self.spike_ops = frozenset(
            op for s in SURROGATES.values() for op in (s.spike, s.spike_attr)
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.calls is not None and (
            func in self.spike_ops
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
            logs[k].states.append([to_numpy(t).copy() for t in tree_leaves(new_state)])
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


@contextmanager
def step_path(model: torch.nn.Module) -> Iterator[None]:
    """Every fused sequence layer of ``model`` on the ``scan`` backend for the duration, so
    that its time loop calls its ``step``; then each on its own backend again, also after an
    error."""
    fused = [m for m in model.modules() if isinstance(m, FusedSequenceLayer)]
    saved = [(m, m.backend) for m in fused]
    try:
        for m in fused:
            m.backend = "scan"
        yield
    finally:
        for m, backend in saved:
            m.backend = backend


def membrane_call(layer: NeuronModule) -> int | None:
    """The index of the spike call whose input is ``v - v_th`` among a step's calls, as the
    layer declares it (see :class:`~lifexport.modules.NeuronModule`)."""
    return layer.membrane_call


def spike_fields(layer: NeuronModule) -> tuple[str, ...]:
    """The state fields that hold spikes, as the layer declares them (see
    :class:`~lifexport.modules.NeuronModule`)."""
    return tuple(layer.spike_fields)


def _membrane(log: _LayerLog, call: int | None) -> np.ndarray | None:
    """Spike call ``call`` of every step, stacked; ``None`` if ``call`` is ``None`` or some
    step made no such call."""
    if call is None:
        return None
    picked = [calls[call] for calls in log.calls if len(calls) > call]
    if not picked or len(picked) != len(log.calls) or len({a.shape for a in picked}) != 1:
        return None
    return np.stack(picked)


def warm_state(model: torch.nn.Module, warmup: Tensor) -> Any:
    """The state ``model`` reaches from rest over the drive ``warmup`` ``(T, B, ...)``, laid
    out as its ``initial_state``, on the step path; no gradient."""
    with torch.no_grad(), step_path(model):
        rest = step_module(model).initial_state(warmup[0])
        _, final = as_sequence(model)(warmup, rest)
    return _detach(final)


def _detach(state: Any) -> Any:
    return tree_map(lambda t: t.detach() if isinstance(t, Tensor) else t, state)


class _Objective:
    """The training loss of one run and its gradients w.r.t. the graph's parameters."""

    def __init__(
        self,
        contract: GraphContract,
        parameters: dict[str, torch.nn.Parameter],
        loss: Callable[[Tensor, Tensor], Tensor] | None,
    ) -> None:
        self.contract, self.loss = contract, loss
        self.params = [parameters[n] for n in contract.parameters]

    def values(self, y: Tensor, target: Tensor | None) -> dict[str, Any]:
        """``loss`` and ``grad.<p>`` outputs (none for an inference graph)."""
        if not self.contract.training:
            return {}
        value = y.sum() if self.loss is None else self.loss(y, target)
        grads = torch.autograd.grad(value, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        return {LOSS: value, **dict(zip(self.contract.gradient_names, grads))}


def _step_outputs(
    step_model: torch.nn.Module,
    contract: GraphContract,
    xs: Tensor,
    target: Tensor | None,
    objective: _Objective,
    initial: Any,
) -> dict[str, np.ndarray]:
    """A step graph's outputs at every step, ``(T, ...)``, from ``initial`` (``None``: rest)."""
    state = step_model.initial_state(xs[0]) if initial is None else initial
    layout = StateLayout(state)
    per_step = target is not None and target.dim() == contract.target_rank + 1
    rows: dict[str, list[np.ndarray]] = {}
    for t in range(xs.shape[0]):
        y, new_state = step_model.step(xs[t], state)
        values = {Y: y, **dict(zip(contract.next_names, layout.flatten(new_state)))}
        values.update(objective.values(y, target[t] if per_step else target))
        for name, value in values.items():
            rows.setdefault(name, []).append(to_numpy(value))
        state = _detach(new_state)
    return {name: np.stack(rows[name]) for name in contract.output_names}


def _sequence_outputs(
    model: torch.nn.Module,
    contract: GraphContract,
    xs: Tensor,
    target: Tensor | None,
    objective: _Objective,
    initial: Any,
) -> dict[str, np.ndarray]:
    """A sequence graph's outputs over the whole drive, from ``initial`` (``None``: rest)."""
    state = step_module(model).initial_state(xs[0]) if initial is None else initial
    ys, final = as_sequence(model)(xs, state)
    values = {Y: ys, **dict(zip(contract.next_names, StateLayout(state).flatten(final)))}
    values.update(objective.values(ys, target))
    return {name: to_numpy(values[name]) for name in contract.output_names}


def run_torch(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    *,
    parameters: dict[str, torch.nn.Parameter],
    target: Tensor | None,
    loss: Callable[[Tensor, Tensor], Tensor] | None,
    initial: Any = None,
) -> Reference:
    """Run ``model`` eagerly as the graph computes: one step at a time (step graph) or over
    the whole sequence (sequence graph), on the step path whatever the layers' backends
    (:func:`step_path`), from ``initial`` (a state as the model's ``initial_state`` lays it
    out; ``None``: rest); in training mode also the loss and ``torch.autograd`` gradients of
    ``parameters`` (graph input name -> parameter). Spike fields and membrane calls are the
    layers' own (:func:`spike_fields`, :func:`membrane_call`)."""
    contract = info.contract
    layers = neuron_layers(model)
    objective = _Objective(contract, parameters, loss)
    with (
        step_path(model),
        _watch(layers, _SpikeRecorder()) as logs,
        torch.set_grad_enabled(contract.training),
    ):
        if contract.kind == "step":
            outputs = _step_outputs(step_module(model), contract, xs, target, objective, initial)
            stepped = frozenset(outputs)
        else:
            outputs = _sequence_outputs(model, contract, xs, target, objective, initial)
            stepped = frozenset({Y})
    reference = Reference(outputs, stepped)
    last = output_layer(model)
    spikes = set()
    for k, layer in layers:
        slots = [slot for slot in contract.states if slot.layer == k]
        log = logs[k]
        if log.states and all(len(s) == len(slots) for s in log.states):
            for j, slot in enumerate(slots):
                reference.states[slot.next_name] = np.stack([s[j] for s in log.states])
        membrane = _membrane(log, membrane_call(layer))
        if membrane is not None:
            reference.membrane[k] = membrane
        for slot in slots:
            reference.owners[slot.next_name] = k
            if slot.field in spike_fields(layer):
                spikes.add(slot.next_name)
        if layer is last:
            reference.owners[Y] = k
    if last is not None and last.method is not None:
        spikes.add(Y)
    reference.spike_names = frozenset(spikes)
    return reference
