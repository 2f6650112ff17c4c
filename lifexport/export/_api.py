"""``to_onnx``: a lifexport model to an ONNX file, as a streaming step or a whole sequence.

The graph's interface is a :class:`~lifexport.graph.GraphContract` (names and order of
inputs, outputs and states; see :mod:`lifexport.graph`), built by ``to_onnx`` and stored in
the file. ``to_onnx`` runs named stages, each with its own errors: check the request
(``_check``), probe the model with one eager step, build the contract, wrap the model as a
graph program, trace the training step (training mode), export, quantize (``quantize="int8"``;
those in ``_stages``), write the file (``_files``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor

from lifexport.export._check import check_path, check_request, exportable_layers
from lifexport.export._files import save_model
from lifexport.export._stages import (
    build_contract,
    build_program,
    export_graph,
    probe_model,
    quantize_graph,
    trace_training,
    unrolled,
)
from lifexport.graph import GraphFile, StateLayout
from lifexport.modules import step_module

__all__ = ["ExportedModel", "to_onnx", "state_names"]

Graph = Literal["step", "sequence"]

#: What :func:`to_onnx` returns: the file and its contract (the class ``read_graph`` returns).
ExportedModel = GraphFile


def state_names(model: torch.nn.Module, x_step: Tensor) -> list[str]:
    """The names ``state.<k>.<field>`` of a model's state tensors, in the graph's order."""
    exportable_layers(model)
    return list(StateLayout(step_module(model).initial_state(x_step)).names)


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
    masks: Literal["arithmetic", "select"] = "arithmetic",
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
        masks: inference graphs: how a step applies its 0/1 masks (the reset, the refractory
            hold). ``"arithmetic"``: as torch computes them, ``(1 - z) * a + z * b`` (26
            nodes per LIF-refrac step, 13 per LIF; the faster on onnxruntime's CPU provider).
            ``"select"``: as ``Where(z, b, a)`` (18 and 10 nodes: fewer kernel launches per
            step on a GPU provider). The spikes and states are the same bits either way (but
            for the sign of a zero; see ``docs/file-contract.md``). Training graphs keep the
            arithmetic (their gradients need it).

    Returns:
        The file's path and its contract: input, output and state names, in order.

    Raises:
        ExportError: an unsupported model or layer (named), or an export that failed.
        ValueError: an unknown ``graph`` or ``mode``, a ``loss`` without ``target``, an
            ``example_input`` that does not fit the model, ``mode="training"`` for a model
            without trainable parameter, an ``unroll`` outside its range, a ``calibration``
            that is not finite, constant, of another shape or over
            :attr:`lifexport.limits.Limits.max_elements`, ``quantize`` of a model without
            weights, an unknown ``masks`` or ``masks="select"`` for training; ``path`` is a
            folder.
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
    path = check_path(path)
    check_request(
        model, example_input, graph, mode, loss, target, metadata, quantize, calibration, unroll,
        masks,
    )  # fmt: skip
    # Strides are traced as they are: a view such as xs[:, :2] of a (T, 360, F) tensor keeps a
    # stride of 360 * F, which fails the training trace ("Constraints violated (B)", torch 2.13).
    example_input = example_input.contiguous()
    target = None if target is None else target.contiguous()
    probe = probe_model(model, example_input, graph)
    contract = build_contract(model, example_input, probe, graph, mode, with_state, target)
    program = build_program(model, example_input, target, probe, contract)
    if contract.training:
        with unrolled(unroll):
            program = trace_training(model, program, contract, loss)
    onnx_model = export_graph(model, program, contract, metadata, unroll, masks)
    if quantize is not None:
        onnx_model, contract = quantize_graph(onnx_model, contract, calibration)
    save_model(onnx_model, path)
    return GraphFile(path, contract)
