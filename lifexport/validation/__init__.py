"""Validation: an exported graph in onnxruntime against the eager torch model it came from.

:func:`validate` drives a ``.onnx`` file written by ``lifexport.to_onnx`` on every requested
execution provider (CPU always; CUDA where the installed onnxruntime offers it, else listed
as unavailable with the reason) and the same inputs through the torch model, and returns a
:class:`ValidationReport`: per provider, whether spikes agree exactly, the first mismatch
(:class:`Mismatch`: step, layer, element, both values, and torch's ``|v - v_th|`` there),
the largest state, output and gradient differences. :func:`assert_valid` raises
:class:`~lifexport.errors.ValidationError` on a real mismatch. A graph with state inputs is
driven from rest and from a warm state (the one torch reaches over a warm-up drive), so a graph
right only from rest fails; the report says which drive failed.

Spikes are thresholded, so a last-bit difference in ``v`` can flip one and the runs diverge
from there. To tell such a numerical flip from a bug, the torch run records the input of every
spike op (``v - v_th``) per layer and step; a flip where that margin is within
``numerical_margin`` is reported but does not fail. See ``_reference.py`` for how.

Modules, one concern each: ``_validate`` (the entry point, a sequence of stages),
``_arguments`` (the arguments that need no file), ``_precision`` (provider settings,
tolerances, strict float32), ``_drive`` (the drive a file expects), ``_model`` (the model
against the file's contract), ``_reference`` (the eager torch run on the step path, with its
margins and per-step states), ``_case`` (the reference and feeds of each drive), ``_runtime``
(onnxruntime sessions and time loops), ``_providers`` (each provider's run and comparison),
``_compare`` (differences, first mismatch), ``_diagnose`` (locating a mismatch, teacher
forcing), ``_report`` (the result dataclasses), ``_assemble`` (the report of a validation).

For tools around a file: :data:`PROVIDERS` (the providers tried by default),
:func:`read_graph` (a file's interface and metadata), :func:`make_session` (an onnxruntime
session as validation opens it).
"""

from lifexport.graph import GraphFile, read_graph
from lifexport.validation._compare import default_tolerances
from lifexport.validation._report import Mismatch, ProviderReport, ValidationReport, assert_valid
from lifexport.validation._runtime import PROVIDERS, make_session
from lifexport.validation._validate import validate

__all__ = [
    "PROVIDERS",
    "GraphFile",
    "Mismatch",
    "ProviderReport",
    "ValidationReport",
    "assert_valid",
    "default_tolerances",
    "make_session",
    "read_graph",
    "validate",
]
