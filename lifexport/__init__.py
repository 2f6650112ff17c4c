"""lifexport: LIF-refrac spiking neurons that compile, export to ONNX and validate.

Layers, each importing only those above it in this list: :mod:`lifexport.functional`
(pure torch steps), kernels (fused time loops), modules, graph (the contract of an exported
file), export, nir, validation; then the tools (cli, demo, bench). See docs/architecture.md.
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
from lifexport.nir import from_nir as from_nir  # nir imported on use
from lifexport.nir import to_nir as to_nir

# The ONNX layers need the optional onnx/onnxruntime/onnxscript packages: imported on first use.
_LAZY = {  # name: (module, attribute or None for the module itself)
    "export": ("lifexport.export", None),
    "to_onnx": ("lifexport.export", "to_onnx"),
    "ExportedModel": ("lifexport.export", "ExportedModel"),
    "GraphFile": ("lifexport.graph", "GraphFile"),
    "read_graph": ("lifexport.graph", "read_graph"),
    "validation": ("lifexport.validation", None),
    "validate": ("lifexport.validation", "validate"),
    "ValidationReport": ("lifexport.validation", "ValidationReport"),
    "assert_valid": ("lifexport.validation", "assert_valid"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lifexport' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = [
    "ExportedModel",
    "GraphFile",
    "read_graph",
    "ValidationReport",
    "assert_valid",
    "export",
    "to_onnx",
    "validate",
    "validation",
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
    "from_nir",
    "functional",
    "to_nir",
]
