"""lifexport: LIF-refrac spiking neurons that compile, export to ONNX and validate.

Layers, each importing only those above it in this list: :mod:`lifexport.functional`
(pure torch steps), modules, export, validate.
"""

from lifexport import functional
from lifexport._version import __version__
from lifexport.errors import ExportError, LifexportError, ValidationError
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
    SequentialState,
    TimeLoop,
    compile,
    from_norse,
)

__all__ = [
    "LI",
    "LICell",
    "LIF",
    "LIFCell",
    "LIFRecurrent",
    "LIFRecurrentCell",
    "ExportError",
    "LIFRefrac",
    "LIFRefracCell",
    "LIFRefracRecurrent",
    "LIFRefracRecurrentCell",
    "LifexportError",
    "SequentialState",
    "TimeLoop",
    "ValidationError",
    "__version__",
    "compile",
    "from_norse",
    "functional",
]
