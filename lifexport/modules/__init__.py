"""Thin, traceable modules over :mod:`lifexport.functional`: cells, sequence layers, stacks."""

from lifexport.modules._compile import compile
from lifexport.modules._neuron import NeuronModule, constant_surrogates
from lifexport.modules._norse import from_norse
from lifexport.modules.leaky_integrator import LI, LICell
from lifexport.modules.lif import LIF, LIFCell, LIFRecurrent, LIFRecurrentCell
from lifexport.modules.lif_refrac import (
    LIFRefrac,
    LIFRefracCell,
    LIFRefracRecurrent,
    LIFRefracRecurrentCell,
)
from lifexport.modules.sequential import SequentialState, TimeLoop

__all__ = [
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
    "SequentialState",
    "TimeLoop",
    "compile",
    "constant_surrogates",
    "from_norse",
]
