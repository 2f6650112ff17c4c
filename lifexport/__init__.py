"""lifexport: LIF-refrac spiking neurons that compile, export to ONNX and validate.

Layers, each importing only those above it in this list: :mod:`lifexport.functional`
(pure torch steps), kernels (fused time loops), modules, graph (the contract of an exported
file), export, nir, validation, runtime (numpy and onnxruntime only: runs a file); then the
tools (cli, demo, bench). See docs/architecture.md.
"""

from lifexport._version import __version__
from lifexport.errors import ExportError, LifexportError, ValidationError

# Every layer is imported on first use: torch for the models, the optional onnx, onnxruntime,
# onnxscript and nir packages for the others; ``lifexport.runtime`` needs numpy and
# onnxruntime only, so ``import lifexport`` itself imports none of them.
_MODULES = ("functional", "kernels", "modules", "graph", "export", "nir", "validation", "runtime")
_LAZY = {  # name: (module, attribute or None for the module itself)
    **{name: (f"lifexport.{name}", None) for name in _MODULES},
    **{
        name: ("lifexport.modules", name)
        for name in (
            "LI",
            "LIF",
            "LICell",
            "LIFCell",
            "LIFRecurrent",
            "LIFRecurrentCell",
            "LIFRefrac",
            "LIFRefracCell",
            "LIFRefracRecurrent",
            "LIFRefracRecurrentCell",
            "SequentialState",
            "TimeLoop",
            "compile",
            "from_norse",
        )
    },
    "from_nir": ("lifexport.nir", "from_nir"),
    "to_nir": ("lifexport.nir", "to_nir"),
    "to_onnx": ("lifexport.export", "to_onnx"),
    "ExportedModel": ("lifexport.export", "ExportedModel"),
    "GraphFile": ("lifexport.graph", "GraphFile"),
    "read_graph": ("lifexport.graph", "read_graph"),
    "validate": ("lifexport.validation", "validate"),
    "ValidationReport": ("lifexport.validation", "ValidationReport"),
    "assert_valid": ("lifexport.validation", "assert_valid"),
    "Session": ("lifexport.runtime", "Session"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lifexport' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # found directly from now on
    return value


__all__ = [
    "ExportedModel",
    "GraphFile",
    "Session",
    "runtime",
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
