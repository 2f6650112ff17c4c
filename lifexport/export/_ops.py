"""Translations of the spike custom ops for ``torch.onnx.export(dynamo=True)``, per mode.

- ``inference``: each ``lifexport::<method>_spike`` becomes ``Cast(Greater(x, 0))``, standard
  ops any runtime runs. Surrogate gradients have no inference translation.
- ``training``: each spike becomes a bare node ``lifexport.<Name>`` (``SuperSpike``) and each
  ``lifexport::<method>_spike_grad`` a bare ``lifexport.<Name>Grad``, both with the float
  attribute ``alpha``; :func:`~lifexport.export.attach_functions` then adds their bodies.
  (A translation that calls the onnxscript function itself would lose the named node: the
  exporter inlines local functions, seen on torch 2.13.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from onnxscript import opset18 as op
from onnxscript.values import Op

from lifexport.errors import ExportError
from lifexport.export import _quirks
from lifexport.export._functions import LIFEXPORT, op_schema
from lifexport.functional.threshold import SURROGATES

Mode = Literal["inference", "training"]
MODES: tuple[Mode, ...] = ("inference", "training")


def check_mode(mode: object) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}")


def _heaviside(x, alpha: float):
    return op.CastLike(op.Greater(x, op.CastLike(0.0, x)), x)


def _spike_node(op_type: str) -> Callable:
    node = Op(LIFEXPORT, op_type, op_schema(op_type))

    def translate(x, alpha: float):
        return node(x, alpha=alpha)

    return translate


def _grad_node(op_type: str) -> Callable:
    node = Op(LIFEXPORT, op_type, op_schema(op_type))

    def translate(grad, x, alpha: float):
        return node(grad, x, alpha=alpha)

    return translate


def _needs_constant_alpha(*args, **kwargs):
    raise ExportError(
        "a training graph needs each surrogate's alpha as a constant, but a spike op took it "
        "as a tensor; export lifexport modules through lifexport.to_onnx (which records each "
        "layer's alpha as the node's attribute)"
    )


def translation_table(mode: Mode) -> dict[Callable, Callable]:
    """The ``custom_translation_table`` of ``torch.onnx.export`` for ``mode``.

    The spike ops that take ``alpha`` as a float (``spike_attr``, what an export records)
    become named ``lifexport`` nodes in training mode; an inference spike ignores alpha, so
    both op pairs translate to the Heaviside step.
    """
    check_mode(mode)
    if mode == "inference":
        table = {op: _heaviside for s in SURROGATES.values() for op in (s.spike, s.spike_attr)}
    else:
        table = {}
        for s in SURROGATES.values():
            table[s.spike_attr] = _spike_node(s.onnx_name)
            table[s.spike_attr_grad] = _grad_node(f"{s.onnx_name}Grad")
            table[s.spike] = table[s.spike_grad] = _needs_constant_alpha
    return {**_quirks.TRANSLATIONS, **table}
