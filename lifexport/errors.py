"""The lifexport error hierarchy.

Bad arguments raise the builtin ``ValueError``/``TypeError`` at the public boundary; the
classes here are for failures of a whole operation (an export, a validation).
"""

from __future__ import annotations

__all__ = ["LifexportError", "ExportError", "ValidationError"]


class LifexportError(Exception):
    """Base class of every error lifexport raises on its own account."""


class ExportError(LifexportError):
    """A model could not be exported to ONNX."""


class ValidationError(LifexportError):
    """An exported graph disagrees with eager torch beyond numerical tolerance."""
