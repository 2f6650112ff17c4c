"""Workarounds for exporter quirks, all in one place, each with the versions where seen.

Each has a regression test in ``tests/export/test_exporter_quirks.py`` that fails once the quirk is
gone upstream, so the workaround can go too.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from onnxscript import opset18 as op


def _identity(x):
    return op.Identity(x)


TRANSLATIONS = {
    # torch 2.13 / onnxscript 0.7.2: make_fx of a training step functionalizes `detach` into
    # `aten.detach_copy`, which the exporter has no translation for.
    torch.ops.aten.detach_copy.default: _identity,
}
"""Translations the exporter lacks, merged into every translation table."""


TRAINING_DECOMPOSITIONS = torch._decomp.get_decompositions(
    [torch.ops.aten.nll_loss_forward, torch.ops.aten.nll_loss_backward]
)
"""Decompositions applied while tracing a training step, before the exporter sees it.

torch 2.13 / onnxscript 0.7.2: the exporter's ``aten.nll_loss_backward`` (the backward of
``cross_entropy``) drops ``reduction="mean"``'s division by the batch, so onnxruntime's
gradients come out B times torch's; decomposed into gathers and a division, they match.
"""


_NOISY_LOGGERS = (
    # torch 2.13: logs a warning per torchvision op it cannot register when torchvision is
    # not installed (it is not a lifexport dependency).
    "torch.onnx._internal.exporter._registration",
    # onnx_ir 1.1.0: logs a warning for each initializer a Scan body returns as it is (the
    # zero gradient of a constant), which is valid ONNX.
    "onnx_ir.passes.common.initializer_deduplication",
)


@contextmanager
def exporter_context() -> Iterator[None]:
    """Run ``torch.onnx.export`` inside this: autograd off, the exporter's noise silenced."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad():
            # torch 2.13: with grad enabled and an input that requires grad, the exporter's
            # decomposition re-traces the backward `scan` of a training graph through
            # autograd and fails on `<method>_spike_grad` ("no autograd formula was
            # registered").
            # torch 2.13: the exporter's own pytree code calls a deprecated isinstance check.
            warnings.filterwarnings(
                "ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning
            )
            # torch 2.13: warns whenever one Dim names an axis of several inputs (a shared
            # batch).
            warnings.filterwarnings("ignore", r"# The axis name: .* will not be used", UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
