"""Workarounds for exporter quirks, all in one place, each with the versions where seen.

Each has a regression test in ``tests/export/test_exporter_quirks.py`` that fails once the quirk is
gone upstream, so the workaround can go too.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from onnxscript import opset18 as op


def _identity(x):
    return op.Identity(x)


TRANSLATIONS = {
    # torch 2.13 / onnxscript 0.7.2: make_fx of a training step functionalizes `detach` into
    # `aten.detach_copy`, which the exporter has no translation for.
    torch.ops.aten.detach_copy.default: _identity,
}
"""Translations the exporter lacks, merged into every translation table."""


TRAINING_DECOMPOSITIONS = torch._decomp.get_decompositions(
    [torch.ops.aten.nll_loss_forward, torch.ops.aten.nll_loss_backward]
)
"""Decompositions applied while tracing a training step, before the exporter sees it.

torch 2.13 / onnxscript 0.7.2: the exporter's ``aten.nll_loss_backward`` (the backward of
``cross_entropy``) drops ``reduction="mean"``'s division by the batch, so onnxruntime's
gradients come out B times torch's; decomposed into gathers and a division, they match.
"""


def _tracked(carry: torch.Tensor) -> torch.Tensor:
    return carry if carry.requires_grad else carry.detach().requires_grad_()


def track_scan_carries(forward: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Make autograd track every ``scan``'s initial carries in ``forward`` (a graph
    ``torch.export`` traced), so that it differentiates through the carries; in place.

    torch 2.10, 2.11: autograd of a ``scan`` whose initial carries do not require grad drops the
    gradient that flows back through the carries (each step's input gets only its own step's
    share), eager and under ``make_fx``; the training step's loss and spikes are right, its
    gradients wrong (a relative error of 1). A rest state built inside the model, or a state
    input, never requires grad, so each initial carry becomes a detached copy that does.
    torch 2.13 differentiates correctly either way; the copy changes no value.

    Returns:
        ``forward``, recompiled.
    """
    graph = forward.graph
    for node in graph.find_nodes(op="call_function", target=torch.ops.higher_order.scan):
        init = node.args[1]
        with graph.inserting_before(node):
            tracked = [graph.call_function(_tracked, (carry,)) for carry in init]
        for new, carry in zip(tracked, init):
            new.meta = dict(carry.meta)
        node.args = (node.args[0], type(init)(tracked), *node.args[2:])
    forward.recompile()
    return forward


def unalias_scan_bodies(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Copy (``aten.clone``) every output of a ``scan`` body that is one of its inputs, a view
    of one, or another output, in ``graph`` and the bodies it nests; in place.

    torch 2.11: the backward ``scan`` that autograd derives from a forward one (a training
    step's ``make_fx``) returns some carried inputs as they are (seen with a frozen parameter
    in the step), and the exporter's re-trace then refuses it ("scan might be aliasing the
    input or the output!"); torch 2.10 and 2.13 derive bodies without such outputs, so there
    this changes nothing.

    Returns:
        ``graph``, recompiled.
    """
    for node in graph.graph.find_nodes(op="call_function", target=torch.ops.higher_order.scan):
        body = getattr(graph, node.args[0].target)
        unalias_scan_bodies(body)
        output = body.graph.output_node()
        outputs, seen = list(output.args[0]), set()
        for k, value in enumerate(outputs):
            if not isinstance(value, torch.fx.Node):
                continue
            aliased = (
                value.op == "placeholder"
                or value in seen
                or getattr(value.target, "is_view", False)
            )
            seen.add(value)
            if aliased:
                with body.graph.inserting_before(output):
                    copy = body.graph.call_function(torch.ops.aten.clone.default, (value,))
                copy.meta = dict(value.meta)
                outputs[k] = copy
        output.args = (type(output.args[0])(outputs),)
        body.recompile()
    graph.recompile()
    return graph


def distinct_outputs(outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``outputs`` with each tensor that an earlier one already is replaced by a copy."""
    seen: set[int] = set()
    distinct = []
    for t in outputs:
        distinct.append(t.clone() if isinstance(t, torch.Tensor) and id(t) in seen else t)
        seen.add(id(t))
    return tuple(distinct)


@contextmanager
def distinct_outputs_of(module: torch.nn.Module) -> Iterator[None]:
    """Inside this, ``module``'s forward returns no tensor twice (see :func:`distinct_outputs`).

    torch 2.10: the exporter names a graph output that is the same tensor as another (``y``
    of a leaky integrator is its ``v``; a recurrent layer's spikes are its ``z``) after that
    other one, so the first name goes missing from the file (``next_state.0.v``,
    ``next_state.0.v_alias_1``, ...); torch 2.13 names each as asked. A copy exports as an
    ``Identity``. The forward keeps its signature (``dynamic_shapes`` may name its arguments).
    """
    own = vars(module).get("forward")
    forward = module.forward

    @functools.wraps(forward)
    def distinct(*args, **kwargs):
        outputs = forward(*args, **kwargs)
        return distinct_outputs(outputs) if isinstance(outputs, tuple) else outputs

    module.forward = distinct
    try:
        yield
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own


@contextmanager
def tracing_context() -> Iterator[None]:
    """Trace (``torch.export``, ``make_fx``) inside this: the tracers' noise silenced."""
    with warnings.catch_warnings():
        # torch 2.10: a `scan` traced by torch.export compiles its body and warns that it
        # switches that compile to the eager backend, which is what export needs anyway.
        warnings.filterwarnings(
            "ignore", "You are calling torch.compile inside torch.export region", UserWarning
        )
        yield


_NOISY_LOGGERS = (
    # torch 2.13: logs a warning per torchvision op it cannot register when torchvision is
    # not installed (it is not a lifexport dependency).
    "torch.onnx._internal.exporter._registration",
    # onnx_ir 1.1.0: logs a warning for each initializer a Scan body returns as it is (the
    # zero gradient of a constant), which is valid ONNX.
    "onnx_ir.passes.common.initializer_deduplication",
    # torch 2.10: logs a warning for each translation whose tensor parameters have no type
    # annotation (the spike translations take any float type).
    "torch.onnx._internal.exporter._schemas",
)


@contextmanager
def exporter_context() -> Iterator[None]:
    """Run ``torch.onnx.export`` inside this: autograd off, the exporter's noise silenced."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with tracing_context(), warnings.catch_warnings(), torch.no_grad():
            # torch 2.13: with grad enabled and an input that requires grad, the exporter's
            # decomposition re-traces the backward `scan` of a training graph through
            # autograd and fails on `<method>_spike_grad` ("no autograd formula was
            # registered").
            # torch 2.13: the exporter's own pytree code calls a deprecated isinstance check.
            warnings.filterwarnings(
                "ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning
            )
            # torch 2.13: warns whenever one Dim names an axis of several inputs (a shared
            # batch).
            warnings.filterwarnings("ignore", r"# The axis name: .* will not be used", UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
