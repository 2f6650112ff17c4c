"""One NIR node as a torch layer, for ``from_nir``: neuron nodes (``CubaLIF``, ``CubaLI``,
``LIF``, ``LI``) with their input gain, recurrent ``CubaLIF`` subgraphs, and nodes without state
(``Affine``, ``Linear``, ``Conv1d``, ``Conv2d``, ``Flatten``, ``AvgPool2d``, ``SumPool2d``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lifexport.functional import LIFParameters, LIFRefracParameters, LIParameters
from lifexport.modules import (
    LI,
    LIF,
    LICell,
    LIFCell,
    LIFRecurrent,
    LIFRecurrentCell,
    LIFRefrac,
    LIFRefracCell,
    LIFRefracRecurrent,
    LIFRefracRecurrentCell,
)
from lifexport.nir._common import (
    ALPHA,
    GAIN_TOLERANCE,
    METHOD,
    RHO_RESET,
    meta_float,
    meta_str,
    numbers,
    require_nir,
    show,
)


def _field(node: Any, name: str, rule: str = "finite") -> np.ndarray:
    """The numbers of the node's field ``name`` (float64), checked (see ``numbers``)."""
    return numbers(getattr(node, name), name, rule)


def _ints(value: Any, what: str, low: int | None, size: int = 1) -> tuple[int, ...]:
    """One integer, or ``size`` of them, as a NIR graph holds them (floats of integral value
    pass), each ``>= low``."""
    array = numbers(value, what).reshape(-1)
    if array.size not in (1, size):
        count = "one integer" if size == 1 else f"one or {size} integers"
        raise ValueError(f"{what} must be {count}, got an array of shape {np.shape(value)}")
    if np.any(array != np.round(array)) or (low is not None and np.any(array < low)):
        need = "an integer" if low is None else f"integers >= {low}"
        raise ValueError(f"{what} must be {need}, got {show(array)}")
    return tuple(int(v) for v in array)


def _param(values: np.ndarray) -> float | torch.Tensor:
    """A float when every neuron has the same value, else a per-neuron float32 tensor."""
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return float(flat[0])
    return torch.tensor(values, dtype=torch.float32)


def _neuron_kwargs(node: Any) -> dict[str, Any]:
    """``method`` and ``alpha`` from lifexport's node metadata (else the defaults)."""
    meta = getattr(node, "metadata", None) or {}
    kwargs = {}
    if METHOD in meta:
        kwargs["method"] = meta_str(meta[METHOD], f"metadata {METHOD!r}")
    if ALPHA in meta:
        kwargs["alpha"] = meta_float(meta[ALPHA], f"metadata {ALPHA!r}", "positive")
    return kwargs


def _gain(node: Any, dt: float) -> np.ndarray:
    """The input gain of one step, ``r * w_in * dt / tau_syn`` (1 for lifexport's graphs)."""
    return _field(node, "r") * _field(node, "w_in") * dt / _field(node, "tau_syn", "positive")


def cuba_layer(node: Any, dt: float, sequence: bool) -> tuple[torch.nn.Module, np.ndarray]:
    """A lifexport layer for a ``CubaLIF`` or ``CubaLI`` node, and its input gain."""
    nir = require_nir()
    tau = dict(
        tau_syn_inv=_param(1.0 / _field(node, "tau_syn", "positive")),
        tau_mem_inv=_param(1.0 / _field(node, "tau_mem", "positive")),
        v_leak=_param(_field(node, "v_leak")),
    )
    if isinstance(node, nir.CubaLI):
        cls = LI if sequence else LICell
        return cls(LIParameters(**tau), dt=dt), _gain(node, dt)
    lif = LIFParameters(
        **tau,
        v_th=_param(_field(node, "v_threshold")),
        v_reset=_param(_field(node, "v_reset")),
        **_neuron_kwargs(node),
    )
    meta = node.metadata or {}
    if RHO_RESET in meta:
        rho = numbers(meta[RHO_RESET], f"metadata {RHO_RESET!r}", "non-negative")
        p = LIFRefracParameters(lif, _param(rho))
        return (LIFRefrac if sequence else LIFRefracCell)(p, dt=dt), _gain(node, dt)
    return (LIF if sequence else LIFCell)(lif, dt=dt), _gain(node, dt)


def plain_layer(node: Any, dt: float, sequence: bool) -> tuple[torch.nn.Module, np.ndarray]:
    """NIR ``LIF``/``LI`` (no synapse): lifexport's neuron with ``tau_syn_inv = 1 / dt``,
    whose current then lasts exactly one step (checked in float32)."""
    nir = require_nir()
    tau_syn_inv = 1.0 / dt
    if np.float32(dt) * np.float32(tau_syn_inv) != np.float32(1.0):
        raise ValueError(
            f"NIR {type(node).__name__} nodes need dt * (1 / dt) == 1 in float32; dt={dt!r} "
            "misses it, pick a dt such as 1e-3 or write CubaLIF/CubaLI nodes"
        )
    tau = dict(
        tau_syn_inv=tau_syn_inv,
        tau_mem_inv=_param(1.0 / _field(node, "tau", "positive")),
        v_leak=_param(_field(node, "v_leak")),
    )
    gain = _field(node, "r")
    if isinstance(node, nir.LI):
        return (LI if sequence else LICell)(LIParameters(**tau), dt=dt), gain
    lif = LIFParameters(
        **tau, v_th=_param(_field(node, "v_threshold")), v_reset=_param(_field(node, "v_reset"))
    )
    return (LIF if sequence else LIFCell)(lif, dt=dt), gain


def _tensor(value: Any, what: str) -> torch.Tensor:
    return torch.tensor(numbers(value, what), dtype=torch.float32)


def _bias(bias: Any, outputs: int) -> torch.Tensor:
    bias = _tensor(bias, "bias").reshape(-1)
    if bias.numel() != outputs:
        raise ValueError(f"bias must hold {outputs} values, one per output, got {bias.numel()}")
    return bias


def _linear(weight: Any, bias: Any | None) -> torch.nn.Linear:
    weight = _tensor(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-d (out, in), got shape {tuple(weight.shape)}")
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(_bias(bias, weight.shape[0]))
    return layer


def _padding(value: Any, dims: int) -> str | tuple[int, ...]:
    """A Conv's padding: integers >= 0, or the string ``same`` or ``valid``."""
    if isinstance(value, (str, bytes)) or np.asarray(value).dtype.kind in "OSU":
        text = meta_str(value, "padding")
        if text not in ("same", "valid"):
            raise ValueError(f"padding must be integers >= 0, 'same' or 'valid', got {text!r}")
        return text
    return _ints(value, "padding", 0, dims)


def _conv(node: Any, dims: int) -> torch.nn.Module:
    weight = _tensor(node.weight, "weight")
    if weight.dim() != dims + 2:
        raise ValueError(
            f"weight must be {dims + 2}-d (out, in / groups, {'kernel' if dims == 1 else 'kh, kw'}"
            f"), got shape {tuple(weight.shape)}"
        )
    cls = torch.nn.Conv1d if dims == 1 else torch.nn.Conv2d
    (groups,) = _ints(node.groups, "groups", 1)
    layer = cls(
        weight.shape[1] * groups,
        weight.shape[0],
        tuple(weight.shape[2:]),
        stride=_ints(node.stride, "stride", 1, dims),
        padding=_padding(node.padding, dims),
        dilation=_ints(node.dilation, "dilation", 1, dims),
        groups=groups,
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(_bias(node.bias, weight.shape[0]))
    return layer


def _pool(node: Any, divisor_override: int | None) -> torch.nn.AvgPool2d:
    def pair(name: str, low: int) -> tuple[int, int]:
        values = _ints(getattr(node, name), name, low, 2)
        return values * 2 if len(values) == 1 else values

    return torch.nn.AvgPool2d(
        pair("kernel_size", 1),
        stride=pair("stride", 1),
        padding=pair("padding", 0),
        divisor_override=divisor_override,
    )


def _flatten(node: Any) -> torch.nn.Flatten:
    """NIR's flatten dimensions count from the first dimension after the batch."""
    (start,) = _ints(node.start_dim, "start_dim", None)
    (end,) = _ints(node.end_dim, "end_dim", None)
    return torch.nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)


def stateless_layer(node: Any) -> torch.nn.Module | None:
    """The torch layer for a node without state, or ``None`` for another node type."""
    nir = require_nir()
    if isinstance(node, nir.Affine):
        return _linear(node.weight, node.bias)
    if isinstance(node, nir.Linear):
        return _linear(node.weight, None)
    if isinstance(node, nir.Conv1d):
        return _conv(node, 1)
    if isinstance(node, nir.Conv2d):
        return _conv(node, 2)
    if isinstance(node, nir.Flatten):
        return _flatten(node)
    if isinstance(node, nir.AvgPool2d):
        return _pool(node, None)
    if isinstance(node, nir.SumPool2d):
        return _pool(node, 1)
    return None


def fold_gain(layers: list[torch.nn.Module], gain: np.ndarray, what: str) -> None:
    """Multiply the rows of the layer before a neuron layer by the neurons' input gain.

    A gain other than 1 means the graph scales each step's input (NIR's ``r * w_in * dt /
    tau_syn``); lifexport's neurons add their input as it is, so the scale moves into the
    weights and bias that produce that input.
    """
    if np.all(np.abs(gain - 1.0) <= GAIN_TOLERANCE):
        return
    prev = layers[-1] if layers else None
    if isinstance(prev, torch.nn.Linear) and gain.size in (1, prev.out_features):
        g = torch.tensor(np.broadcast_to(gain.reshape(-1), (prev.out_features,)))
    elif isinstance(prev, (torch.nn.Conv1d, torch.nn.Conv2d)):
        per_channel = np.broadcast_to(gain, gain.shape).reshape(prev.out_channels, -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise ValueError(
                f"{what}: its input gain varies within a channel of the Conv before it"
            )
        g = torch.tensor(per_channel[:, 0])
    else:
        raise ValueError(
            f"{what}: its input gain r * w_in * dt / tau_syn is {float(np.mean(gain)):.6g} "
            "(mean), not 1, and lifexport can fold it only into an Affine, Linear or Conv node "
            "right before it; check dt, or scale the weights before it"
        )
    with torch.no_grad():
        prev.weight.mul_(g.to(prev.weight.dtype).view(-1, *([1] * (prev.weight.dim() - 1))))
        if prev.bias is not None:
            prev.bias.mul_(g.to(prev.bias.dtype))


def _inner(name: str, inner: str, graph: Any, read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)``, its ``ValueError`` naming node ``inner`` of subgraph ``name``."""
    try:
        return read(*args)
    except ValueError as error:
        kind = type(graph.nodes[inner]).__name__
        raise ValueError(f"subgraph {name!r}, node {inner!r} ({kind}): {error}") from error


def recurrent_layer(name: str, graph: Any, dt: float, sequence: bool) -> torch.nn.Module:
    """A recurrent LIF(-refrac) layer from a subgraph ``input -> Linear -> CubaLIF -> output``
    with ``CubaLIF -> Linear -> CubaLIF``; any other subgraph raises, naming its nodes."""
    nir = require_nir()
    kinds = {n: type(node).__name__ for n, node in graph.nodes.items()}
    lifs = [n for n, node in graph.nodes.items() if isinstance(node, nir.CubaLIF)]
    edges = {tuple(e) for e in graph.edges}
    into = {dst: src for src, dst in edges if dst != (lifs[0] if lifs else None)}
    w_in = w_rec = None
    if len(lifs) == 1 and len(graph.nodes) == 5:
        lif = lifs[0]
        feeding = [src for src, dst in edges if dst == lif]
        for src in feeding:
            if (lif, src) in edges:
                w_rec = src
            elif isinstance(graph.nodes[into.get(src, "")], nir.Input):
                w_in = src
    weights = [w_in, w_rec]
    affine = (nir.Linear, nir.Affine)
    if None in weights or not all(isinstance(graph.nodes[w], affine) for w in weights):
        raise ValueError(
            f"subgraph {name!r} ({kinds}) is not a recurrent CubaLIF layer; from_nir reads "
            "subgraphs input -> Linear -> CubaLIF -> output with CubaLIF -> Linear -> CubaLIF"
        )
    for w in weights:
        bias = getattr(graph.nodes[w], "bias", None)
        if bias is not None and np.any(_inner(name, w, graph, numbers, bias, "bias")):
            raise ValueError(
                f"subgraph {name!r}: node {w!r} has a bias, which recurrent layers lack"
            )
    ff, gain = _inner(name, lifs[0], graph, cuba_layer, graph.nodes[lifs[0]], dt, False)
    win, wrec = (
        _inner(name, w, graph, _linear, graph.nodes[w].weight, None).weight.detach()
        for w in weights
    )
    g = torch.tensor(np.broadcast_to(gain.reshape(-1), (win.shape[0],)), dtype=win.dtype)
    if not np.all(np.abs(gain - 1.0) <= GAIN_TOLERANCE):
        win, wrec = win * g[:, None], wrec * g[:, None]
    refrac = isinstance(ff, LIFRefracCell)
    cls = {
        (False, False): LIFRecurrentCell,
        (False, True): LIFRecurrent,
        (True, False): LIFRefracRecurrentCell,
        (True, True): LIFRefracRecurrent,
    }[(refrac, sequence)]
    autapses = bool(torch.any(torch.diagonal(wrec) != 0))
    return cls(
        win.shape[1],
        win.shape[0],
        ff.p,
        dt=dt,
        input_weights=win,
        recurrent_weights=wrec,
        autapses=autapses,
    )
