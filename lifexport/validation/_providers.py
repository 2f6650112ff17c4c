"""Stage 5 of :func:`~lifexport.validation.validate`: each execution provider run over each
drive and compared with the torch reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lifexport.validation._case import Case
from lifexport.validation._compare import summarize
from lifexport.validation._diagnose import diagnose, locate
from lifexport.validation._report import ProviderReport
from lifexport.validation._runtime import open_session, run_sequence, run_steps


def run_providers(
    providers: list[str],
    settings: dict[str, dict[str, str]],
    case: Case,
    warm: Case | None,
    unavailable: dict[str, str],
) -> tuple[dict[str, ProviderReport], dict[str, str]]:
    """A report per provider that ran, and ``unavailable`` with those onnxruntime did not
    start (with the reason) added."""
    reports, unavailable = {}, dict(unavailable)
    for provider in providers:
        outcome = run_provider(provider, settings[provider], case, warm)
        if isinstance(outcome, str):
            unavailable[provider] = outcome
        else:
            reports[provider] = outcome
    return reports, unavailable


def run_provider(
    provider: str, settings: dict[str, str], case: Case, warm: Case | None
) -> ProviderReport | str:
    """One provider's report (with the warm drive's, when given, as ``report.warm``), or why
    onnxruntime did not start it."""
    try:
        session = open_session(case.info, provider, settings)
    except Exception as error:
        return _failed(provider, f"onnxruntime could not load the graph: {error}", settings, case)
    if provider not in session.get_providers():
        return (
            f"onnxruntime did not start it (the session runs on {session.get_providers()}); "
            "check the CUDA/cuDNN libraries onnxruntime needs"
        )
    report = _run_case(provider, session, settings, case)
    if warm is not None and report.error is None:
        report = replace(report, warm=_run_case(provider, session, settings, warm))
    return report


def _run_case(
    provider: str, session: object, settings: dict[str, str], case: Case
) -> ProviderReport:
    """One drive on an open session; an error while running is the report's ``error``."""
    try:
        return _check_provider(provider, session, settings, case)
    except Exception as error:
        return _failed(provider, f"{type(error).__name__}: {error}", settings, case)


def _check_provider(
    provider: str, session: object, settings: dict[str, str], case: Case
) -> ProviderReport:
    """Run one provider over the drive and compare with the torch reference."""
    info, reference, tol = case.info, case.reference, case.tolerances
    if info.graph == "step":
        target = case.target
        per_step = target is not None and target.ndim == info.contract.target_rank + 1
        targets = (
            None if target is None else target if per_step else np.stack([target] * len(case.xs))
        )
        actual = run_steps(session, info, case.xs, case.constants, case.initial, targets)
    else:
        actual = run_sequence(session, info, case.xs, case.constants, case.initial)
    max_abs, max_rel, flips, failed = summarize(
        reference.outputs, actual, info.output_names, reference.spike_names, tol.rtol, tol.atol
    )
    spike_elements = sum(reference.outputs[n].size for n in reference.spike_names)
    mismatch = locate(session, case, actual) if failed else None
    return ProviderReport(
        provider=provider,
        spikes_equal=not any(n in reference.spike_names for n in failed),
        first_mismatch=mismatch,
        max_abs=max_abs,
        max_rel=max_rel,
        flips=flips,
        failed=failed,
        settings=settings,
        flip_rate=flips / spike_elements if spike_elements else 0.0,
        flip_budget=case.flip_budget,
        diagnosis=diagnose(session, case, mismatch) if failed else None,
        drive=case.drive,
        steps=len(case.xs),
    )


def _failed(provider: str, error: str, settings: dict[str, str], case: Case) -> ProviderReport:
    return ProviderReport(
        provider=provider,
        spikes_equal=False,
        first_mismatch=None,
        error=error,
        settings=settings,
        drive=case.drive,
        steps=len(case.xs),
    )
