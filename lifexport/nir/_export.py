"""``to_nir``: a lifexport model as a NIR graph (``nir.NIRGraph``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lifexport._version import __version__
from lifexport.modules import (
    LICell,
    LIFCell,
    LIFRecurrentCell,
    LIFRefracCell,
    LIFRefracRecurrentCell,
    NeuronModule,
    SequentialState,
    TimeLoop,
)
from lifexport.nir._common import ALPHA, DT, METHOD, RHO_RESET, SEQUENCE, check_dt, require_nir

__all__ = ["to_nir"]

#: Layers an exported graph leaves out: both are the identity in inference.
_SKIPPED = (torch.nn.Dropout, torch.nn.Identity)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _layers(model: torch.nn.Module) -> tuple[list[torch.nn.Module], bool]:
    """The layers of ``model`` in order, and whether they are time-major sequence layers."""
    if isinstance(model, TimeLoop):
        layers, _ = _layers(model.module)
        return layers, True
    if isinstance(model, SequentialState):
        return list(model), bool(model.is_sequence)
    if isinstance(model, torch.nn.Module):
        return [model], bool(getattr(model, "is_sequence", True))
    raise TypeError(
        f"model must be a lifexport SequentialState, TimeLoop or layer, got {type(model).__name__}"
    )


def _first_shape(layers: list[torch.nn.Module]) -> tuple[int, ...]:
    """The input shape of one sample, read from the first layer's weights."""
    first = layers[0]
    if isinstance(first, torch.nn.Linear):
        return (first.in_features,)
    if isinstance(first, (LIFRecurrentCell, LIFRefracRecurrentCell)):
        return (first.input_size,)
    raise ValueError(
        f"input_shape is needed: the first layer ({type(first).__name__}) does not fix the "
        "shape of its input; pass the shape of one sample without batch, e.g. "
        "input_shape=(2, 34, 34)"
    )


def _shapes(layers: list[torch.nn.Module], input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The input shape (one sample, no batch) of every layer, and of the output at the end."""
    tensors = [t for m in layers for t in (*m.parameters(), *m.buffers())]
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)
    h = torch.zeros((1, *input_shape), dtype=dtype)
    shapes = [tuple(input_shape)]
    with torch.no_grad():
        for index, layer in enumerate(layers):
            try:
                if isinstance(layer, NeuronModule):
                    h = torch.zeros(layer.output_shape(h.shape), dtype=dtype)
                else:
                    h = layer(h)
            except (RuntimeError, ValueError) as error:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} does not fit layer {index} "
                    f"({type(layer).__name__}): {error}"
                ) from error
            shapes.append(tuple(h.shape[1:]))
    return shapes


def _neuron_values(layer: NeuronModule, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """The layer's parameters broadcast to its neurons' shape, in float64."""
    return {
        name: np.broadcast_to(_array(value).astype(np.float64), shape).copy()
        for name, value in layer.parameter_values().items()
    }


def _neuron_metadata(layer: NeuronModule) -> dict[str, Any]:
    if layer.alpha is None:
        return {}
    return {METHOD: layer.method, ALPHA: float(layer.alpha)}


def _synapse(v: dict[str, np.ndarray], scale: float, dt: float) -> dict[str, np.ndarray]:
    """NIR's time constants (seconds), resistance and input weight for parameters ``v``.

    ``scale`` is ``dt / layer.dt``: the layer's steps re-timed to the requested ``dt``
    (the dynamics per step stay the same).
    """
    tau_syn = scale / v["tau_syn_inv"]
    return dict(
        tau_syn=tau_syn,
        tau_mem=scale / v["tau_mem_inv"],
        r=np.ones_like(tau_syn),
        v_leak=v["v_leak"],
        w_in=tau_syn / dt,
    )


def _neuron_node(layer: NeuronModule, shape: tuple[int, ...], dt: float):
    """``CubaLIF`` (LIF, LIF-refrac) or ``CubaLI`` (LI) for a feed-forward neuron layer."""
    nir = require_nir()
    v = _neuron_values(layer, shape)
    common = _synapse(v, dt / layer.dt, dt)
    metadata = _neuron_metadata(layer)
    if isinstance(layer, LICell):
        return nir.CubaLI(**common, metadata=metadata)
    if "rho_reset" in v:
        metadata[RHO_RESET] = v["rho_reset"]
    return nir.CubaLIF(**common, v_threshold=v["v_th"], v_reset=v["v_reset"], metadata=metadata)


def _recurrent_node(layer: NeuronModule, dt: float):
    """A recurrent LIF(-refrac) layer as a subgraph: ``Linear(input_weights) -> CubaLIF``
    with ``CubaLIF -> Linear(recurrent_weights) -> CubaLIF`` (the spikes of the last step)."""
    nir = require_nir()
    w_in, w_rec = (_array(w) for w in layer.weights())  # autapses masked
    lif = _neuron_node(layer, (layer.hidden_size,), dt)
    nodes = {
        "input": nir.Input(input_type=np.array([layer.input_size])),
        "w_in": nir.Linear(weight=w_in),
        "lif": lif,
        "w_rec": nir.Linear(weight=w_rec),
        "output": nir.Output(output_type=np.array([layer.hidden_size])),
    }
    edges = [
        ("input", "w_in"),
        ("w_in", "lif"),
        ("lif", "w_rec"),
        ("w_rec", "lif"),
        ("lif", "output"),
    ]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _pair(value: Any) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value, value))


def _conv_node(layer: torch.nn.Module, shape: tuple[int, ...]):
    nir = require_nir()
    if layer.padding_mode != "zeros":
        raise TypeError(
            f"{type(layer).__name__} with padding_mode={layer.padding_mode!r} has no NIR node; "
            "NIR convolutions pad with zeros"
        )
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.out_channels)
    padding = layer.padding if isinstance(layer.padding, str) else np.array(layer.padding)
    if isinstance(layer, torch.nn.Conv1d):
        one = padding if isinstance(padding, str) else int(padding[0])
        return nir.Conv1d(
            input_shape=int(shape[-1]),
            weight=_array(layer.weight),
            stride=int(layer.stride[0]),
            padding=one,
            dilation=int(layer.dilation[0]),
            groups=int(layer.groups),
            bias=_array(bias),
        )
    return nir.Conv2d(
        input_shape=np.array(shape[-2:]),
        weight=_array(layer.weight),
        stride=np.array(layer.stride),
        padding=padding,
        dilation=np.array(layer.dilation),
        groups=int(layer.groups),
        bias=_array(bias),
    )


def _pool_node(layer: torch.nn.AvgPool2d):
    nir = require_nir()
    if layer.ceil_mode or (not layer.count_include_pad and np.any(_pair(layer.padding))):
        raise TypeError(
            "AvgPool2d with ceil_mode=True or count_include_pad=False has no NIR node; "
            "use the defaults"
        )
    stride = layer.stride if layer.stride is not None else layer.kernel_size
    args = dict(
        kernel_size=_pair(layer.kernel_size), stride=_pair(stride), padding=_pair(layer.padding)
    )
    if layer.divisor_override is None:
        return nir.AvgPool2d(**args)
    if layer.divisor_override == 1:  # sum pooling
        return nir.SumPool2d(**args)
    raise TypeError(
        f"AvgPool2d with divisor_override={layer.divisor_override} has no NIR node; "
        "NIR has average pooling and sum pooling (divisor_override=1)"
    )


def _flatten_node(layer: torch.nn.Flatten, shape: tuple[int, ...]):
    """NIR's flatten dimensions count from the first dimension after the batch."""
    nir = require_nir()
    start, end = layer.start_dim, layer.end_dim
    if start == 0 or end == 0:
        raise TypeError("Flatten over the batch dimension (start_dim=0) has no NIR node")
    return nir.Flatten(
        input_type={"input": np.array(shape)},
        start_dim=start - 1 if start > 0 else start,
        end_dim=end - 1 if end > 0 else end,
    )


def _node(layer: torch.nn.Module, shape: tuple[int, ...], dt: float):
    """The NIR node (or subgraph) of one layer whose input has ``shape``."""
    nir = require_nir()
    if isinstance(layer, (LIFRecurrentCell, LIFRefracRecurrentCell)):
        return _recurrent_node(layer, dt)
    if isinstance(layer, (LIFCell, LIFRefracCell, LICell)):
        return _neuron_node(layer, shape, dt)
    if isinstance(layer, torch.nn.Linear):
        if layer.bias is None:
            return nir.Linear(weight=_array(layer.weight))
        return nir.Affine(weight=_array(layer.weight), bias=_array(layer.bias))
    if isinstance(layer, (torch.nn.Conv1d, torch.nn.Conv2d)):
        return _conv_node(layer, shape)
    if isinstance(layer, torch.nn.AvgPool2d):
        return _pool_node(layer)
    if isinstance(layer, torch.nn.Flatten):
        return _flatten_node(layer, shape)
    raise _unsupported(layer)


#: Layers to_nir writes (the recurrent cells are subclasses of NeuronModule too).
_WRITABLE = (
    LIFCell,
    LIFRefracCell,
    LICell,
    LIFRecurrentCell,
    LIFRefracRecurrentCell,
    torch.nn.Linear,
    torch.nn.Conv1d,
    torch.nn.Conv2d,
    torch.nn.AvgPool2d,
    torch.nn.Flatten,
)


def _unsupported(layer: torch.nn.Module) -> TypeError:
    reason = {
        torch.nn.MaxPool1d: "NIR has no max pooling",
        torch.nn.MaxPool2d: "NIR has no max pooling",
        torch.nn.AvgPool1d: "NIR has no 1d pooling",
        torch.nn.ReLU: "NIR has no ReLU",
    }.get(type(layer), "it has no NIR equivalent")
    return TypeError(
        f"{type(layer).__name__} cannot be written to NIR: {reason}; to_nir writes Linear, "
        "Conv1d, Conv2d, Flatten, AvgPool2d and lifexport's LIF, LIF-refrac and LI layers"
    )


def _warn_refractory(layers: list[tuple[str, torch.nn.Module]]) -> None:
    refrac = [name for name, m in layers if isinstance(m, (LIFRefracCell, LIFRefracRecurrentCell))]
    if refrac:
        warnings.warn(
            f"layers {refrac} are LIF-refrac: NIR's CubaLIF has no refractory period, so it is "
            f"kept in the node metadata ({RHO_RESET!r}); lifexport.from_nir restores it, other "
            "tools drop it and simulate plain LIF neurons",
            UserWarning,
            stacklevel=3,
        )


def to_nir(model: torch.nn.Module, dt: float = 1e-3, *, input_shape: Sequence[int] | None = None):
    """A lifexport model as a NIR graph, the format neuromorphic hardware and other SNN
    libraries (Norse, snnTorch, SpikingJelly, Spyx) read.

    Layers: ``Linear`` (NIR ``Affine``, or ``Linear`` without bias), ``Conv1d``, ``Conv2d``,
    ``Flatten``, ``AvgPool2d`` (``SumPool2d`` when ``divisor_override=1``), ``LIF``/``LIFCell``
    (``CubaLIF``), ``LI``/``LICell`` (``CubaLI``), ``LIFRefrac``/``LIFRefracCell`` (``CubaLIF``
    with ``rho_reset`` in its metadata), and the recurrent LIF(-refrac) layers (a subgraph
    ``Linear -> CubaLIF`` with a ``Linear`` from the ``CubaLIF`` back to itself). ``Dropout``
    and ``Identity`` are left out.

    Time constants are written in seconds, ``tau = dt / (layer.dt * tau_inv)`` (``1 / tau_inv``
    when ``dt`` is the layer's own), with ``r = 1`` and ``w_in = tau_syn / dt``: the explicit
    Euler step of NIR's equations with step ``dt`` is then the layer's step.

    Args:
        model: a ``SequentialState``, a ``TimeLoop`` or one layer.
        dt: the duration of one time step in seconds; positive and finite.
        input_shape: the shape of one input sample without batch (and time), e.g.
            ``(2, 34, 34)``; needed unless the first layer is a ``Linear`` or recurrent layer.

    Returns:
        A ``nir.NIRGraph`` whose nodes are named by layer index, between ``input`` and
        ``output``.

    Raises:
        TypeError: a layer NIR cannot express (the message names it), or a bad ``dt``.
        ValueError: ``dt`` not positive and finite; ``input_shape`` missing or not fitting.
        ImportError: the ``nir`` package is not installed.

    Examples:
        >>> import lifexport
        >>> net = lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIF())
        >>> graph = to_nir(net)
        >>> {name: type(node).__name__ for name, node in graph.nodes.items()}
        {'input': 'Input', '0': 'Affine', '1': 'CubaLIF', 'output': 'Output'}
    """
    nir = require_nir()
    dt = check_dt(dt)
    layers, sequence = _layers(model)
    if not layers:
        raise ValueError("model has no layers to write")
    for index, layer in enumerate(layers):
        if not isinstance(layer, (*_WRITABLE, *_SKIPPED)):
            raise TypeError(f"layer {index} of the model: {_unsupported(layer)}")
    shape = tuple(input_shape) if input_shape is not None else _first_shape(layers)
    shapes = _shapes(layers, shape)
    named = [(str(i), m) for i, m in enumerate(layers) if not isinstance(m, _SKIPPED)]
    _warn_refractory(named)
    nodes = {"input": nir.Input(input_type=np.array(shapes[0]))}
    for name, layer in named:
        try:
            nodes[name] = _node(layer, shapes[int(name)], dt)
        except TypeError as error:
            raise TypeError(f"layer {name} of the model: {error}") from None
    nodes["output"] = nir.Output(output_type=np.array(shapes[-1]))
    order = list(nodes)
    edges = list(zip(order[:-1], order[1:]))
    metadata = {SEQUENCE: int(sequence), DT: dt, "lifexport.version": __version__}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=False)
