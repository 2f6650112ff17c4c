"""Where and why a run disagrees: the first mismatch (a sequence graph replayed step by step)
and the teacher-forced diagnosis that tells a graph bug from precision drift."""

from __future__ import annotations

import numpy as np

from lifexport.graph import Y
from lifexport.validation._case import Case
from lifexport.validation._compare import differences, first_mismatch
from lifexport.validation._report import GRAPH_BUG, PRECISION_DRIFT, Diagnosis, Mismatch
from lifexport.validation._runtime import run_steps


def locate(session: object, case: Case, actual: dict[str, np.ndarray]) -> Mismatch | None:
    """The first mismatch of a failed run. A sequence graph with state is replayed one step
    at a time, its states compared after every step; the replay is trusted only if it gives
    the whole run's ``y`` (bits could differ with T)."""
    info, reference = case.info, case.reference
    compare = _comparison(case)
    if info.graph == "sequence" and info.state_names:
        try:
            chunked = run_steps(session, info, case.xs, case.constants, case.initial, case.target)
        except Exception:  # the replay is a diagnosis only; the whole run's result stands
            chunked = None
        if chunked is not None and np.array_equal(chunked[Y], actual[Y], equal_nan=True):
            torch_steps = {Y: reference.outputs[Y], **reference.states}
            found = first_mismatch(
                torch_steps,
                {n: chunked[n] for n in torch_steps if n in chunked},
                stepped=set(torch_steps),
                **compare,
            )
            if found is not None:
                return found
    return first_mismatch(reference.outputs, actual, stepped=reference.stepped, **compare)


def diagnose(session: object, case: Case, free: Mismatch | None) -> Diagnosis | None:
    """Teacher forcing: every step from torch's state before it, compared with torch's step;
    ``None`` for a graph without state inputs, or one whose states were not all recorded.
    ``free``: the free run's first mismatch, where precision drift starts."""
    info, reference = case.info, case.reference
    slots = info.contract.states
    if (
        not slots
        or case.target is not None
        or any(s.next_name not in reference.states for s in slots)
    ):
        return None
    before = {
        s.name: np.concatenate([case.initial[s.name][None], reference.states[s.next_name][:-1]])
        for s in slots
    }
    local = run_steps(session, info, case.xs, case.constants, case.initial, forced=before)
    torch_steps = {Y: reference.outputs[Y], **reference.states}
    local = {n: local[n] for n in torch_steps}
    bug = first_mismatch(torch_steps, local, stepped=set(torch_steps), **_comparison(case))
    largest = {n: differences(torch_steps[n], local[n])[0] for n in torch_steps}
    if bug is not None and not bug.numerical:
        return Diagnosis(GRAPH_BUG, bug.step, bug, largest)
    return Diagnosis(PRECISION_DRIFT, None if free is None else free.step, None, largest)


def _comparison(case: Case) -> dict:
    """The arguments ``first_mismatch`` takes besides the values."""
    reference, tol = case.reference, case.tolerances
    return dict(
        spike_names=reference.spike_names,
        owners=reference.owners,
        membrane=reference.membrane,
        kinds={name: case.info.contract.output_kind(name) for name in case.info.output_names},
        rtol=tol.rtol,
        atol=tol.atol,
        numerical_margin=tol.numerical_margin,
    )
