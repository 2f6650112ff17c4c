"""Stage 6 of :func:`~lifexport.validation.validate`: the report, with the model's mode and
the reference's spike counts."""

from __future__ import annotations

import numpy as np
import torch

from lifexport.validation._case import Case
from lifexport.validation._report import ProviderReport, ValidationReport

#: Layers whose output depends on their mode (as far as torch's own layers go).
_MODE_DEPENDENT = (
    torch.nn.modules.dropout._DropoutNd,
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)


def assemble_report(
    model: torch.nn.Module,
    case: Case,
    reports: dict[str, ProviderReport],
    unavailable: dict[str, str],
    precision: str,
) -> ValidationReport:
    """The validation's report: ``case``'s file, drive and tolerances, the providers'
    reports, the model's mode and torch's spike count per spiking output."""
    info, reference = case.info, case.reference
    model_mode, train_modules = _model_mode(model)
    return ValidationReport(
        path=str(info.path),
        graph=info.graph,
        mode=info.mode,
        steps=int(case.xs.shape[0]),
        batch=int(case.xs.shape[1]),
        providers=reports,
        unavailable=unavailable,
        spikes={
            name: int(np.count_nonzero(reference.outputs[name]))
            for name in info.output_names
            if name in reference.spike_names
        },
        rtol=case.tolerances.rtol,
        atol=case.tolerances.atol,
        numerical_margin=case.tolerances.numerical_margin,
        model_mode=model_mode,
        train_modules=train_modules,
        mode_dependent=tuple(
            name
            for name, m in model.named_modules()
            if m.training and isinstance(m, _MODE_DEPENDENT)
        ),
        dtype=str(info.dtype).removeprefix("torch."),
        precision=precision,
    )


def _model_mode(model: torch.nn.Module) -> tuple[str, tuple[str, ...]]:
    """``("eval" | "train" | "mixed", the submodules in train mode when mixed)``."""
    training = [name or "(the model)" for name, m in model.named_modules() if m.training]
    if not training:
        return "eval", ()
    if len(training) == len(list(model.modules())):
        return "train", ()
    return "mixed", tuple(training)
