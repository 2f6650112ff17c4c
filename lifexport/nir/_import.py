"""``from_nir``: a NIR graph (a chain of nodes) as a lifexport ``SequentialState``.

The graph is walked here (one chain from its ``Input`` to its ``Output``); each node becomes a
layer in ``_import_nodes``.
"""

from __future__ import annotations

from typing import Any

import torch

from lifexport.modules import SequentialState
from lifexport.nir._common import SEQUENCE, check_dt, meta_float, require_nir
from lifexport.nir._import_nodes import (
    cuba_layer,
    fold_gain,
    plain_layer,
    recurrent_layer,
    stateless_layer,
)

__all__ = ["from_nir"]

#: Node types from_nir reads, for error messages.
SUPPORTED = (
    "Input, Output, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, SumPool2d, CubaLIF, "
    "CubaLI, LIF, LI, and recurrent CubaLIF subgraphs (Linear -> CubaLIF, CubaLIF -> Linear "
    "-> CubaLIF)"
)


def _chain(graph: Any) -> list[tuple[str, Any]]:
    """The nodes of ``graph`` from its input to its output, which must form one chain."""
    nir = require_nir()
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"from_nir reads graphs with one Input and one Output node, got inputs {inputs} "
            f"and outputs {outputs}"
        )
    succ: dict[str, list[str]] = {n: [] for n in graph.nodes}
    pred: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise ValueError(f"edge ({src!r}, {dst!r}) names a node {end!r} the graph lacks")
        succ[src].append(dst)
        pred[dst].append(src)
    order, name = [], inputs[0]
    while True:
        if len(succ[name]) != 1 or (name != inputs[0] and len(pred[name]) != 1):
            raise ValueError(
                f"the graph is not a chain: node {name!r} has inputs {pred[name]} and outputs "
                f"{succ[name]}; from_nir reads chains input -> ... -> output, with recurrent "
                "layers as subgraphs"
            )
        name = succ[name][0]
        if name == outputs[0]:
            break
        if name in dict(order):
            raise ValueError(f"the graph has a cycle through node {name!r} outside a subgraph")
        order.append((name, graph.nodes[name]))
    if len(order) + 2 != len(graph.nodes):
        rest = sorted(set(graph.nodes) - {n for n, _ in order} - {inputs[0], outputs[0]})
        raise ValueError(f"the graph is not a chain: nodes {rest} are off the input-output path")
    return order


def _layer(name: str, node: Any, layers: list, dt: float, sequence: bool) -> torch.nn.Module:
    """The lifexport layer for one node of the chain (input gains folded into ``layers``)."""
    nir = require_nir()
    if node is None:
        raise TypeError(
            f"node {name!r} is empty (None): the tool that wrote the graph could not convert "
            "that layer"
        )
    layer = stateless_layer(node)
    if layer is not None:
        return layer
    if isinstance(node, nir.NIRGraph):
        return recurrent_layer(name, node, dt, sequence)
    what = f"node {name!r} ({type(node).__name__})"
    if isinstance(node, (nir.CubaLIF, nir.CubaLI)):
        layer, gain = cuba_layer(node, dt, sequence)
    elif isinstance(node, (nir.LIF, nir.LI)):
        layer, gain = plain_layer(node, dt, sequence)
    else:
        raise TypeError(f"{what} has no lifexport equivalent; from_nir reads {SUPPORTED}")
    fold_gain(layers, gain, what)
    return layer


def from_nir(graph: Any, dt: float = 1e-3) -> SequentialState:
    """A NIR graph as a lifexport ``SequentialState``, to run, compile or export to ONNX.

    The inverse of :func:`~lifexport.nir.to_nir`: a graph written by lifexport comes back
    with the same layers and parameters (``rho_reset``, surrogate ``method`` and ``alpha``
    from the node metadata). Graphs from other tools: ``CubaLIF`` becomes ``LIF``
    (``LIFRefrac`` when its metadata holds ``lifexport.rho_reset``), ``CubaLI`` ``LI``,
    ``LIF``/``LI`` the same with a synaptic current that lasts one step; ``tau_*_inv = 1 /
    tau_*``; an input gain ``r * w_in * dt / tau_syn`` other than 1 is folded into the
    weights of the ``Affine``/``Linear``/``Conv`` node before the neurons. Graphs written by
    lifexport with cells come back as cells, all others as time-major sequence layers.

    Args:
        graph: a ``nir.NIRGraph`` whose nodes form one chain from its ``Input`` to its
            ``Output`` (:func:`~lifexport.nir.read_nir` reads one from a file, within
            :mod:`lifexport.limits`).
        dt: the duration of one time step in seconds, positive and finite.

    Returns:
        The layers in graph order (the ``Input`` and ``Output`` nodes left out).

    Raises:
        TypeError: a node type lifexport has no layer for (the message names the node), or
            a ``graph`` that is not a ``nir.NIRGraph``.
        ValueError: a graph that is not a chain, a recurrent subgraph of another shape, an
            input gain that cannot be folded, ``dt`` not positive and finite; a field or
            metadata value that is not made of numbers, or not finite (time constants: not
            positive), named with its node: ``node '1' (CubaLIF): tau_mem must be positive
            and finite, got [0.0, 0.02]``.
        ImportError: the ``nir`` package is not installed.

    Examples:
        >>> import lifexport
        >>> net = lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIF())
        >>> back = from_nir(lifexport.to_nir(net))
        >>> [type(layer).__name__ for layer in back], float(back[1].tau_mem_inv)
        (['Linear', 'LIF'], 100.0)
    """
    nir = require_nir()
    dt = check_dt(dt)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(
            f"graph must be a nir.NIRGraph (see lifexport.nir.read_nir), got {type(graph).__name__}"
        )
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    sequence = True
    if SEQUENCE in meta:
        flag = meta_float(meta[SEQUENCE], f"graph metadata {SEQUENCE!r}")
        if flag not in (0.0, 1.0):
            raise ValueError(
                f"graph metadata {SEQUENCE!r} must be 1 (sequence layers) or 0 (cells), got "
                f"{flag!r}"
            )
        sequence = bool(flag)
    layers: list[torch.nn.Module] = []
    for name, node in _chain(graph):
        try:
            layers.append(_layer(name, node, layers, dt, sequence))
        except ValueError as error:
            if str(error).startswith(("node ", "subgraph ")):
                raise
            raise ValueError(f"node {name!r} ({type(node).__name__}): {error}") from error
    return SequentialState(*layers)
