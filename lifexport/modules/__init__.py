"""Thin, traceable modules over :mod:`lifexport.functional`: cells, sequence layers, stacks.

A new neuron layer subclasses :class:`FeedForwardCell` (or :class:`RecurrentCell`) and
implements the protocol :class:`NeuronModule` declares; ``SequenceLayer`` mixed in before it
gives its time-major layer (see ``docs/extending.md``).

:func:`flatten_state` turns a module's state pytree into its flat list of tensors (the order
of an exported graph's state inputs) and back.
"""

from lifexport.modules._compile import compile
from lifexport.modules._layers import (
    FeedForwardCell,
    FusedSequenceLayer,
    RecurrentCell,
    SequenceLayer,
)
from lifexport.modules._neuron import NeuronModule, constant_surrogates
from lifexport.modules._norse import from_norse
from lifexport.modules._time import flatten_state, unrolled_time_loop
from lifexport.modules.leaky_integrator import LI, LICell
from lifexport.modules.lif import LIF, LIFCell, LIFRecurrent, LIFRecurrentCell
from lifexport.modules.lif_refrac import (
    LIFRefrac,
    LIFRefracCell,
    LIFRefracRecurrent,
    LIFRefracRecurrentCell,
)
from lifexport.modules.sequential import (
    SequentialState,
    TimeLoop,
    as_sequence,
    neuron_layers,
    step_module,
)

__all__ = [
    "FeedForwardCell",
    "FusedSequenceLayer",
    "LI",
    "LICell",
    "LIF",
    "LIFCell",
    "LIFRecurrent",
    "LIFRecurrentCell",
    "LIFRefrac",
    "LIFRefracCell",
    "LIFRefracRecurrent",
    "LIFRefracRecurrentCell",
    "NeuronModule",
    "RecurrentCell",
    "SequenceLayer",
    "SequentialState",
    "TimeLoop",
    "as_sequence",
    "compile",
    "constant_surrogates",
    "flatten_state",
    "from_norse",
    "neuron_layers",
    "step_module",
    "unrolled_time_loop",
]
