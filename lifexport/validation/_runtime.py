"""onnxruntime: which execution providers can run, sessions, and driving a graph over time.

onnxruntime is imported here, inside the functions, so that lifexport imports without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from lifexport.graph import TARGET, GraphFile, X, Y

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
#: The execution providers validation tries by default (those not installed are reported).
PROVIDERS = (CPU, CUDA)


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - onnxruntime is a test dependency
        raise ImportError(
            "lifexport.validation needs onnxruntime: pip install 'lifexport[onnx]' (or "
            "onnxruntime-gpu for the CUDA execution provider)"
        ) from error
    return onnxruntime


def resolve_providers(providers: str | Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """Split the requested providers into those to run and those unavailable (with why).

    Raises:
        ValueError: a name onnxruntime does not know at all, or no provider requested.
    """
    ort = import_onnxruntime()
    requested = [providers] if isinstance(providers, str) else list(providers)
    requested = list(dict.fromkeys(requested))  # once each, in order
    if not requested:
        raise ValueError(f"providers must name at least one execution provider, e.g. ({CPU!r},)")
    known = ort.get_all_providers()
    unknown = [p for p in requested if p not in known]
    if unknown:
        raise ValueError(
            f"providers: unknown onnxruntime execution provider(s) {unknown}; known ones are "
            f"{known}"
        )
    available = ort.get_available_providers()
    run = [p for p in requested if p in available]
    unavailable = {}
    for p in requested:
        if p not in available:
            hint = "; install onnxruntime-gpu" if p == CUDA else ""
            unavailable[p] = (
                f"not in onnxruntime.get_available_providers() = {available} "
                f"(onnxruntime {ort.__version__}){hint}"
            )
    return run, unavailable


def make_session(
    path: str | os.PathLike,
    provider: str = CPU,
    threads: int = 0,
    options: Mapping[str, str] | None = None,
) -> Any:
    """An onnxruntime session on ``provider`` (CPU as fallback for nodes it lacks) with
    thread spinning off, which on small machines only burns the cores other work needs.
    ``threads``: intra- and inter-op threads; 0 keeps onnxruntime's default. ``options``: the
    provider's options (e.g. ``{"use_tf32": "0"}`` for the CUDA EP)."""
    ort = import_onnxruntime()
    if provider != CPU and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # onnxruntime-gpu: the CUDA libraries torch's wheels ship
    session_options = ort.SessionOptions()
    if threads:
        session_options.intra_op_num_threads = threads
        session_options.inter_op_num_threads = threads
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    chosen = (provider, dict(options or {}))
    providers = [chosen] if provider == CPU else [chosen, CPU]
    return ort.InferenceSession(str(path), sess_options=session_options, providers=providers)


def open_session(info: GraphFile, provider: str, options: Mapping[str, str]) -> Any:
    """A validation session: one thread, so validation stays cheap on small machines."""
    return make_session(info.path, provider, threads=1, options=options)


def _run(session: Any, info: GraphFile, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return dict(zip(info.output_names, session.run(list(info.output_names), dict(feeds))))


def run_sequence(
    session: Any,
    info: GraphFile,
    xs: np.ndarray,
    constants: Mapping[str, np.ndarray],
    initial: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One run of a sequence graph over all of ``xs`` from ``initial`` (its state inputs)."""
    return _run(session, info, {**constants, X: xs, **initial})


def run_steps(
    session: Any,
    info: GraphFile,
    xs: np.ndarray,
    constants: Mapping[str, np.ndarray],
    initial: Mapping[str, np.ndarray],
    target_steps: np.ndarray | None = None,
    forced: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Drive a graph one step at a time, feeding ``next_state.*`` back into ``state.*``.

    A step graph takes ``xs[t]`` (and ``target_steps[t]``); a sequence graph takes one-step
    chunks ``xs[t:t+1]`` (its ``y`` loses that time axis) and the batch-first target as it
    is. With ``forced`` (teacher forcing), step ``t`` starts from ``forced[name][t]`` (cast to
    the drive's dtype) instead of the graph's own state, so its outputs hold only that step's
    local error. Returns each output stacked over steps, ``(T, ...)``.
    """
    chunks = info.graph == "sequence"
    state = dict(initial)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in info.output_names}
    for t in range(xs.shape[0]):
        if forced is not None:
            state = {n: value[t].astype(xs.dtype, copy=False) for n, value in forced.items()}
        feeds = {**constants, X: xs[t : t + 1] if chunks else xs[t], **state}
        if target_steps is not None:
            feeds[TARGET] = target_steps if chunks else target_steps[t]
        out = _run(session, info, feeds)
        for name, value in out.items():
            rows[name].append(value[0] if chunks and name == Y else value)
        state = {slot.name: out[slot.next_name] for slot in info.contract.states}
    return {name: np.stack(values) for name, values in rows.items()}
