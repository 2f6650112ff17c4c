"""``validate``: run an exported graph in onnxruntime and the same drive through eager torch.

Stages, each with its own errors: check the arguments, read the file's contract
(:func:`~lifexport.graph.read_graph`), build the drive, check the model against the
contract, run the torch reference (from rest, and from a warm state where the graph takes its
state), then run and compare each execution provider on each drive.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifexport.graph import METADATA, TARGET, GraphFile, StateLayout, Y, read_graph
from lifexport.limits import LIMITS, check_elements
from lifexport.modules import neuron_layers, step_module
from lifexport.validation._compare import (
    default_tolerances,
    differences,
    first_mismatch,
    summarize,
)
from lifexport.validation._drive import check_inputs, synthesize_inputs
from lifexport.validation._reference import Reference, run_torch, to_numpy, warm_state
from lifexport.validation._report import (
    GRAPH_BUG,
    PRECISION_DRIFT,
    REST,
    WARM,
    Diagnosis,
    Mismatch,
    ProviderReport,
    ValidationReport,
)
from lifexport.validation._runtime import (
    CUDA,
    PROVIDERS,
    open_session,
    resolve_providers,
    run_sequence,
    run_steps,
)

#: ``"strict"``: the graph checked as it is, TF32 off; ``"deployment"``: a deployment setting
#: (TF32 on, a float16 export) against a strict float32 reference, on a spike flip budget.
PRECISIONS = ("strict", "deployment")

#: Steps of the warm-up drive, and of the run from the state it leaves (at most the drive's T).
WARM_STEPS = 20

_EXAMPLE_KEY = next(m.key for m in METADATA if m.field == "example_shape")

#: Layers whose output depends on their mode (as far as torch's own layers go).
_MODE_DEPENDENT = (
    torch.nn.modules.dropout._DropoutNd,
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)


@dataclass(frozen=True)
class _Tolerances:
    rtol: float
    atol: float
    numerical_margin: float


@dataclass(frozen=True)
class _Case:
    """Everything one provider's run is compared against: the file, the torch reference and
    the numpy feeds (parameters and batch-first target as constants, the initial state:
    rest, or the warm state of the ``"warm"`` drive)."""

    drive: str
    info: GraphFile
    reference: Reference
    xs: np.ndarray
    constants: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    target: np.ndarray | None
    tolerances: _Tolerances
    flip_budget: float | None


def validate(
    model: torch.nn.Module,
    onnx_path: str | os.PathLike,
    inputs: Tensor | None = None,
    providers: str | Iterable[str] = PROVIDERS,
    *,
    steps: int | None = None,
    seed: int = 0,
    numerical_margin: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    target: Tensor | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    precision: str | None = None,
    provider_options: Mapping[str, Mapping[str, str]] | None = None,
    flip_budget: float = 0.01,
) -> ValidationReport:
    """Run a graph written by ``lifexport.to_onnx`` in onnxruntime against eager torch.

    The same drive goes through both. A step graph runs one step at a time, its
    ``next_state.*`` outputs fed back to its ``state.*`` inputs, from the model's rest state;
    torch runs the same steps. A sequence graph runs once over the whole drive (from rest, given
    as its state inputs if it has them); when it disagrees and has state inputs, it is run again
    one step at a time to find the first step and layer that disagree. Torch runs the model in
    its own mode, as given (``report.model_mode``; validation changes no flag): call
    ``model.eval()`` first where Dropout or BatchNorm should act as in the exported inference
    graph, which is the model in eval mode. Training graphs also take
    the model's parameters (as their inputs), and their loss and ``grad.*`` outputs are compared
    with ``torch.autograd`` of the same loss.

    Spikes must match exactly, everything else within ``atol + rtol * |torch|``. A spike flips
    when ``v`` lands on the other side of ``v_th`` by rounding, and the trajectories diverge
    after it; the report gives the first mismatch with torch's ``|v - v_th|`` there, and calls
    it numerical (and still passed) when that margin is at most ``numerical_margin``.

    It checks the graph, not a device's shortcuts: the torch reference runs in strict float32
    (TF32 matrix products off), and so does the CUDA execution provider (``use_tf32=0``) unless
    ``precision="deployment"``. That validates the setting a deployment uses: the providers'
    own defaults (TF32 on for CUDA) or a float16 export, against a strict float32 reference
    (a float32 copy of the model), and passes when at most ``flip_budget`` of the spikes differ.
    Tolerances are then those of a 10-bit mantissa (TF32's and float16's).

    A graph right only from rest is not right: a graph with state inputs (a step graph, a
    sequence graph exported with state) is also driven from a warm state, the one torch reaches
    over a warm-up drive (``WARM_STEPS`` = 20 steps of the seeded drive below, or T if fewer;
    rounded to the graph's dtype), fed to both the graph's state inputs and the torch model,
    over the drive's first ``WARM_STEPS`` steps. Each provider's report has that run as ``warm``; it
    passes only if both drives pass, and its ``failed_drives`` and line (``FAILED from a warm
    state``) say which drive failed.

    Whenever a run disagrees, the graph is also run teacher-forced: from torch's state before
    every step, so that each step shows only its own error. The report's diagnosis calls it a
    graph bug when some step's local error exceeds the tolerance (or flips a spike away from
    the threshold), and precision drift otherwise, from the step where the runs diverge; a
    graph bug fails in either precision.

    Args:
        model: the torch model that was exported (same weights), run eagerly as the reference.
        onnx_path: the ``.onnx`` file ``lifexport.to_onnx`` wrote.
        inputs: the drive, ``(T, B, ...)`` with the exported example's feature dimensions, for
            step graphs too. ``None``: a seeded drive of ``steps`` (200) steps and the
            example's batch size, uniform currents in ``[0, 3)``.
        providers: onnxruntime execution providers to run; those not available here are listed
            in ``report.unavailable`` with the reason.
        steps: T of the synthesized drive (must equal T of ``inputs`` if both are given), at
            most :attr:`lifexport.limits.Limits.max_steps` (as is the T of ``inputs``).
        seed: seed of the synthesized drive and of the warm-up drive.
        numerical_margin: a flip where torch's ``|v - v_th|`` is at most this is numerical.
        rtol, atol: tolerance of states, non-spike outputs, loss and gradients.
            ``None`` (each of the three): the default for the graph's dtype, float32's
            ``1e-5``, ``1e-4``, ``1e-5`` in as many ulps of that dtype (see
            :func:`~lifexport.validation.default_tolerances`); the report has the values used.
        target: training graphs with a ``target`` input: the target, batch first as exported,
            ``(B, ...)``; for a step graph also ``(T, B, ...)``, one per step.
        loss: with ``target``: the ``loss(y, target)`` the graph was exported with.
        precision: ``"strict"`` or ``"deployment"`` (see above); ``None``: deployment for a
            file ``to_onnx(quantize="int8")`` wrote (judged on its flip rate; its claim is
            held to the graph's int8 weights, a float file claiming it is refused), else
            strict.
        provider_options: per provider, session options that override validation's (for
            example ``{"CUDAExecutionProvider": {"use_tf32": "1"}}``); the report lists the
            options each provider ran with.
        flip_budget: with ``precision="deployment"``: the largest fraction of differing spike
            elements that passes.

    Returns:
        A report per provider; see :func:`assert_valid` to raise on failure.

    Limits: a file is data. Its contract is checked by :func:`~lifexport.graph.read_graph`
    (every metadata value, the graph against it; a float file claiming int8 weights is
    refused, so no file picks its own tolerance), and the work it can ask for is bounded
    before anything is allocated: the synthesized drive (B and features from the metadata
    ``lifexport.example_shape``) and torch's records stay within
    :attr:`lifexport.limits.Limits.max_elements`, T within
    :attr:`lifexport.limits.Limits.max_steps`.

    Raises:
        ValueError: an unknown provider name or ``precision``, options for a provider not
            requested, a ``flip_budget`` outside ``[0, 1]``, ``steps`` or ``inputs`` of another
            shape or dtype or over the limits, a file that is not a lifexport ONNX model (or
            whose metadata is not what ``to_onnx`` writes, or disagrees with its graph), a
            drive over the limits, a model that does not take the file's input (one step on
            it raised; the message names the model and the file's input shape) or has other
            states, a missing or superfluous ``target``/``loss``.
        FileNotFoundError: ``onnx_path`` does not exist.
        TypeError: ``model`` is not a torch module, ``inputs`` not a tensor, ``onnx_path``
            not a ``str`` or ``os.PathLike`` of a text path.

    Examples:
        >>> import lifexport
        >>> from lifexport.export import to_onnx
        >>> layer = lifexport.LIFRefrac()
        >>> _ = to_onnx(layer, torch.rand(5, 2, 3), "/tmp/lif_refrac.onnx")
        >>> cpu = "CPUExecutionProvider"
        >>> report = validate(layer, "/tmp/lif_refrac.onnx", steps=50, providers=[cpu])
        >>> report.passed, report.providers[cpu].first_mismatch
        (True, None)
        >>> print(report.format())
        /tmp/lif_refrac.onnx: sequence graph, inference, float32, strict ... B=2: PASSED ...
        torch ran the model in its own train mode
        tolerances: rtol 0.0001, atol 1e-05, near-threshold margin 1e-05
        CPUExecutionProvider (defaults): passed, spikes equal
          max |onnx - torch|: y 0, next_state.0.v ...
          from a warm state (20 steps): passed, spikes equal
            max |onnx - torch|: y 0, next_state.0.v ...
    """
    _check_arguments(model, steps, numerical_margin=numerical_margin, rtol=rtol, atol=atol)
    _check_precision(precision, flip_budget)
    run, unavailable = resolve_providers(providers)
    info = read_graph(onnx_path)
    if precision is None:  # a quantized file is a deployment setting of its float graph
        precision = "deployment" if info.contract.quantize else "strict"
    settings = provider_settings(run + list(unavailable), precision, provider_options)
    tolerances = _tolerances(info, precision, rtol, atol, numerical_margin)
    if inputs is None:
        xs = synthesize_inputs(info, steps, seed)
    else:
        xs = check_inputs(info, inputs, steps)
    parameters = _check_model(model, info, xs, target, loss)
    budget = flip_budget if precision == "deployment" else None
    case = _reference_case(model, info, xs, parameters, target, loss, tolerances, budget)
    warm = None
    if info.state_names:  # right from rest is not enough: from a state torch reached, too
        n = min(WARM_STEPS, xs.shape[0])
        warmup = synthesize_inputs(info, n, seed, batch=xs.shape[1])
        head = _first_steps(info, target, n)
        warm = _reference_case(
            model, info, xs[:n], parameters, head, loss, tolerances, budget, warmup=warmup
        )
    reports = {}
    for provider in run:
        outcome = _run_provider(provider, settings[provider], case, warm)
        if isinstance(outcome, str):
            unavailable[provider] = outcome
        else:
            reports[provider] = outcome
    return _report(model, case, reports, unavailable, precision)


def _check_arguments(model: object, steps: object, **tolerances: object) -> None:
    """Stage 1: the arguments that need no file."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be the torch.nn.Module that was exported, got {type(model)}")
    top = LIMITS.max_steps
    bad = isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= top
    if steps is not None and bad:
        raise ValueError(
            f"steps must be None or an int in 1..{LIMITS.max_steps} "
            f"(lifexport.limits.LIMITS.max_steps), got {steps!r}"
        )
    for name, value in tolerances.items():
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")


def _check_precision(precision: object, flip_budget: object) -> None:
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(flip_budget, bool) or not isinstance(flip_budget, (int, float)):
        raise ValueError(f"flip_budget must be a number in [0, 1], got {flip_budget!r}")
    if not 0 <= flip_budget <= 1:
        raise ValueError(f"flip_budget must be a number in [0, 1], got {flip_budget!r}")


def provider_settings(
    providers: Iterable[str],
    precision: str,
    overrides: Mapping[str, Mapping[str, str]] | None,
) -> dict[str, dict[str, str]]:
    """The session options of each provider: validation's (TF32 off on CUDA in strict
    precision, on in deployment), then the caller's.

    Raises:
        ValueError: options for a provider not among ``providers``, or not a mapping.
    """
    providers = list(providers)
    tf32 = "0" if precision == "strict" else "1"
    settings = {p: ({"use_tf32": tf32} if p == CUDA else {}) for p in providers}
    for provider, options in (overrides or {}).items():
        if provider not in settings:
            raise ValueError(
                f"provider_options: {provider!r} is not among the providers to run {providers}"
            )
        if not isinstance(options, Mapping):
            raise ValueError(
                f"provider_options[{provider!r}] must map option names to strings, got {options!r}"
            )
        settings[provider].update({str(k): str(v) for k, v in options.items()})
    return settings


def _tolerances(
    info: GraphFile,
    precision: str,
    rtol: float | None,
    atol: float | None,
    margin: float | None,
) -> _Tolerances:
    """The caller's tolerances; where ``None``, the graph dtype's defaults, or in deployment
    precision those of a 10-bit mantissa (TF32, float16)."""
    dtype = torch.float16 if precision == "deployment" else info.dtype
    defaults = default_tolerances(dtype)
    return _Tolerances(
        defaults[0] if rtol is None else float(rtol),
        defaults[1] if atol is None else float(atol),
        defaults[2] if margin is None else float(margin),
    )


def _check_model(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    target: Tensor | None,
    loss: Callable | None,
) -> dict[str, torch.nn.Parameter]:
    """Stage 3: the model must be the one the contract describes: it takes the file's input
    (one step on the drive's first, in a ``try``) and has its states and parameters; what
    torch records over the drive stays within the limits. Returns the parameter for each
    parameter input of a training graph."""
    _check_target(info, target, loss)
    try:
        neuron_layers(model)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}; validate the model that was exported") from error
    x = xs[0].to(_device(model))
    try:
        with torch.no_grad():
            state = step_module(model).initial_state(x)
            y, _ = step_module(model).step(x, state)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise ValueError(
            f"model ({type(model).__name__}) does not take this file's input: the graph's x "
            f"is {_x_pattern(info)} (metadata {_EXAMPLE_KEY} {list(info.example_shape)}), "
            f"and one step of shape {tuple(x.shape)} raised {type(error).__name__}: {error}; "
            "validate the model that was exported"
        ) from error
    layout = StateLayout(state)
    names = layout.names
    for name, tensor in ((Y, y), *zip(names, layout.flatten(state))):
        check_elements(f"torch's record of {name} over {len(xs)} steps", (len(xs), *tensor.shape))
    if info.state_names and names != info.state_names:
        raise ValueError(
            f"the model's states {list(names)} are not the graph's {list(info.state_names)}; "
            "validate the model that was exported"
        )
    found = dict(model.named_parameters())
    missing = [n for n in info.parameter_names if n not in found]
    if missing:
        raise ValueError(
            f"the graph takes parameters {missing} that the model does not have (its "
            f"parameters: {list(found)}); validate the model that was exported"
        )
    return {n: found[n] for n in info.parameter_names}


def _reference_case(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    parameters: dict[str, torch.nn.Parameter],
    target: Tensor | None,
    loss: Callable | None,
    tolerances: _Tolerances,
    flip_budget: float | None,
    warmup: Tensor | None = None,
) -> _Case:
    """Stage 4: eager torch over the drive, in strict float32 (a float32 copy of a half
    precision model when validating a deployment), and the feeds every provider gets. From
    rest, or with ``warmup``: from the state torch reaches over it (rounded to the graph's
    dtype, the values the graph gets), the ``"warm"`` drive."""
    device = _device(model)
    reference_model, drive = model, xs
    if flip_budget is not None and xs.dtype in (torch.float16, torch.bfloat16):
        reference_model, drive = copy.deepcopy(model).float(), xs.float()
        warmup = None if warmup is None else warmup.float()
    with torch.no_grad():
        layout = StateLayout(step_module(model).initial_state(xs[0].to(device)))
    found = dict(reference_model.named_parameters())
    reference_parameters = {name: found[name] for name in parameters}
    with _trainable(reference_parameters.values()), strict_float32():
        start = None
        if warmup is not None:
            start = _rounded(layout, warm_state(reference_model, warmup.to(device)), info.dtype)
        reference = run_torch(
            reference_model,
            info,
            drive.to(device),
            parameters=reference_parameters,
            target=None if target is None else target.to(device),
            loss=loss,
            initial=start,
        )
    if start is None:
        with torch.no_grad():
            start = step_module(model).initial_state(xs[0].to(device))
    initial = [t.to(info.dtype) for t in layout.flatten(start)]
    constants = {name: to_numpy(p) for name, p in parameters.items()}
    target_np = None if target is None else to_numpy(target)
    if target_np is not None and info.graph == "sequence":
        constants[TARGET] = target_np
    return _Case(
        drive=REST if warmup is None else WARM,
        info=info,
        reference=reference,
        xs=to_numpy(xs),
        constants=constants,
        initial={slot.name: to_numpy(t) for slot, t in zip(info.contract.states, initial)},
        target=target_np,
        tolerances=tolerances,
        flip_budget=flip_budget,
    )


def _x_pattern(info: GraphFile) -> str:
    """The shape of the graph's ``x``: ``(B, <features>)`` or ``(T, B, <features>)``."""
    axes = ("B",) if info.graph == "step" else ("T", "B")
    return f"({', '.join([*axes, *map(str, info.feature_shape)])})"


def _first_steps(info: GraphFile, target: Tensor | None, n: int) -> Tensor | None:
    """The target of the first ``n`` steps: a step graph's per-step target cut, else as is."""
    per_step = (
        target is not None
        and info.graph == "step"
        and target.dim() == info.contract.target_rank + 1
    )
    return target[:n] if per_step else target


def _rounded(layout: StateLayout, state: Any, dtype: torch.dtype) -> Any:
    """``state`` with every tensor rounded to ``dtype`` and back: what the graph is fed."""
    return layout.unflatten([t.to(dtype).to(t.dtype) for t in layout.flatten(state)])


def _run_provider(
    provider: str, settings: dict[str, str], case: _Case, warm: _Case | None
) -> ProviderReport | str:
    """Stage 5, per provider: its report (with the warm drive's, when given, as
    ``report.warm``), or why onnxruntime did not start it."""
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
    provider: str, session: object, settings: dict[str, str], case: _Case
) -> ProviderReport:
    """One drive on an open session; an error while running is the report's ``error``."""
    try:
        return _check_provider(provider, session, settings, case)
    except Exception as error:
        return _failed(provider, f"{type(error).__name__}: {error}", settings, case)


def _report(
    model: torch.nn.Module,
    case: _Case,
    reports: dict[str, ProviderReport],
    unavailable: dict[str, str],
    precision: str,
) -> ValidationReport:
    """Stage 6: the report, with the model's mode and the reference's spike counts."""
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


def _check_provider(
    provider: str, session: object, settings: dict[str, str], case: _Case
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
    mismatch = _locate(session, case, actual) if failed else None
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
        diagnosis=_diagnose(session, case, mismatch) if failed else None,
        drive=case.drive,
        steps=len(case.xs),
    )


def _comparison(case: _Case) -> dict:
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


def _diagnose(session: object, case: _Case, free: Mismatch | None) -> Diagnosis | None:
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


def _locate(session: object, case: _Case, actual: dict[str, np.ndarray]) -> Mismatch | None:
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
        if chunked is not None and np.array_equal(chunked["y"], actual["y"], equal_nan=True):
            torch_steps = {"y": reference.outputs["y"], **reference.states}
            found = first_mismatch(
                torch_steps,
                {n: chunked[n] for n in torch_steps if n in chunked},
                stepped=set(torch_steps),
                **compare,
            )
            if found is not None:
                return found
    return first_mismatch(reference.outputs, actual, stepped=reference.stepped, **compare)


def _failed(provider: str, error: str, settings: dict[str, str], case: _Case) -> ProviderReport:
    return ProviderReport(
        provider=provider,
        spikes_equal=False,
        first_mismatch=None,
        error=error,
        settings=settings,
        drive=case.drive,
        steps=len(case.xs),
    )


def _check_target(info: GraphFile, target: Tensor | None, loss: Callable | None) -> None:
    if info.has_target:
        if target is None or loss is None:
            raise ValueError(
                f"{info.path.name} takes a 'target' input: pass target= and the loss= it was "
                "exported with"
            )
        if not isinstance(target, Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    elif target is not None or loss is not None:
        what = (
            "training graph has no 'target' input"
            if info.mode == "training"
            else ("inference graph has no loss")
        )
        raise ValueError(
            f"{info.path.name}: this {what} (its loss, if any, is the sum of y); drop target= "
            "and loss="
        )


def _device(model: torch.nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextmanager
def _trainable(parameters: Iterable[torch.nn.Parameter]):
    """Parameters that are graph inputs require grad for the reference run, then as before."""
    saved = [(p, p.requires_grad) for p in parameters]
    for p, _ in saved:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextmanager
def strict_float32():
    """Torch's float32 matrix products and convolutions in full float32 (TF32 off), then as
    before."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    precision = torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.set_float32_matmul_precision(precision)
