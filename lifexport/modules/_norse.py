"""``from_norse``: turn trained Norse 1.1.0 modules into lifexport modules with the same
weights and parameters, so a Norse model compiles and exports in one call."""

from __future__ import annotations

import copy

import torch

from lifexport.functional.leaky_integrator import LIParameters
from lifexport.functional.lif import LIFParameters
from lifexport.functional.lif_refrac import LIFRefracParameters
from lifexport.modules import leaky_integrator, lif, lif_refrac
from lifexport.modules.sequential import STATELESS_LAYERS, SequentialState

__all__ = ["from_norse"]


def _lif_parameters(p) -> LIFParameters:
    return LIFParameters(*p)


def _refrac_parameters(p) -> LIFRefracParameters:
    return LIFRefracParameters(_lif_parameters(p.lif), p.rho_reset)


def _weights(m) -> dict:
    return dict(
        input_weights=m.input_weights.detach(),
        recurrent_weights=m.recurrent_weights.detach(),
        autapses=m.autapses,
    )


def _sizes(m) -> tuple[int, int]:
    return int(m.input_size), int(m.hidden_size)


def _converters() -> dict[type, callable]:
    """Norse class -> function building the lifexport module (Norse imported lazily)."""
    import norse.torch as norse

    return {
        norse.LIFRefracCell: lambda m: lif_refrac.LIFRefracCell(_refrac_parameters(m.p), m.dt),
        norse.LIFRefracRecurrentCell: lambda m: lif_refrac.LIFRefracRecurrentCell(
            *_sizes(m), _refrac_parameters(m.p), m.dt, **_weights(m)
        ),
        norse.LIFRefracRecurrent: lambda m: lif_refrac.LIFRefracRecurrent(
            *_sizes(m), _refrac_parameters(m.p), m.dt, **_weights(m)
        ),
        norse.LIFCell: lambda m: lif.LIFCell(_lif_parameters(m.p), m.dt),
        norse.LIF: lambda m: lif.LIF(_lif_parameters(m.p), m.dt),
        norse.LIFRecurrentCell: lambda m: lif.LIFRecurrentCell(
            *_sizes(m), _lif_parameters(m.p), m.dt, **_weights(m)
        ),
        norse.LIFRecurrent: lambda m: lif.LIFRecurrent(
            *_sizes(m), _lif_parameters(m.p), m.dt, **_weights(m)
        ),
        norse.LICell: lambda m: leaky_integrator.LICell(LIParameters(*m.p), m.dt),
        norse.LI: lambda m: leaky_integrator.LI(LIParameters(*m.p), m.dt),
    }


def from_norse(module: torch.nn.Module) -> torch.nn.Module:
    """The lifexport equivalent of a Norse 1.1.0 module, with copies of its weights.

    Supported: ``LIFRefracCell``, ``LIFRefracRecurrentCell``, ``LIFRefracRecurrent``,
    ``LIFCell``, ``LIF``, ``LIFRecurrentCell``, ``LIFRecurrent``, ``LICell``, ``LI``, and a
    ``norse.torch.SequentialState`` of those with torch layers (Linear, Conv2d, Flatten,
    pooling, Dropout). The result computes the same spikes and states as the Norse module
    (bit-equal; SuperSpike gradients differ where Norse 1.1.0 ignores ``alpha``).

    Raises:
        TypeError: a module (or a layer of a stack) that has no lifexport equivalent; the
            message names it.
        ImportError: Norse is not installed.
    """
    import norse.torch as norse

    if isinstance(module, norse.SequentialState):
        layers = []
        for index, layer in enumerate(module):
            try:
                layers.append(from_norse(layer))
            except TypeError as error:
                raise TypeError(f"layer {index} of the SequentialState: {error}") from None
        return SequentialState(*layers)
    if isinstance(module, STATELESS_LAYERS):
        return copy.deepcopy(module)
    converters = _converters()
    convert = converters.get(type(module))
    if convert is None:
        supported = sorted(cls.__name__ for cls in converters)
        raise TypeError(
            f"{type(module).__name__} has no lifexport equivalent; from_norse converts "
            f"{', '.join(supported)}, SequentialState and the torch layers "
            f"{', '.join(t.__name__ for t in STATELESS_LAYERS)}"
        )
    return convert(module)
