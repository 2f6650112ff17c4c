"""``validate``: run an exported graph in onnxruntime and the same drive through eager torch."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lifexport.errors import ExportError
from lifexport.modules._time import flatten_state
from lifexport.modules.sequential import TimeLoop
from lifexport.validation._compare import default_tolerances, first_mismatch, summarize
from lifexport.validation._graph import GraphFile, check_inputs, read_graph, synthesize_inputs
from lifexport.validation._reference import Reference, run_torch, to_numpy
from lifexport.validation._report import ProviderReport, ValidationReport
from lifexport.validation._runtime import (
    open_session,
    resolve_providers,
    run_sequence,
    run_steps,
)

PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider")
#: Layers whose output depends on their mode (as far as torch's own layers go).
_MODE_DEPENDENT = (
    torch.nn.modules.dropout._DropoutNd,
    torch.nn.modules.batchnorm._BatchNorm,
    torch.nn.modules.instancenorm._InstanceNorm,
)


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

    Args:
        model: the torch model that was exported (same weights), run eagerly as the reference.
        onnx_path: the ``.onnx`` file ``lifexport.to_onnx`` wrote.
        inputs: the drive, ``(T, B, ...)`` with the exported example's feature dimensions, for
            step graphs too. ``None``: a seeded drive of ``steps`` (200) steps and the
            example's batch size, uniform currents in ``[0, 3)``.
        providers: onnxruntime execution providers to run; those not available here are listed
            in ``report.unavailable`` with the reason.
        steps: T of the synthesized drive (must equal T of ``inputs`` if both are given).
        seed: seed of the synthesized drive.
        numerical_margin: a flip where torch's ``|v - v_th|`` is at most this is numerical.
        rtol, atol: tolerance of states, non-spike outputs, loss and gradients.
            ``None`` (each of the three): the default for the graph's dtype, float32's
            ``1e-5``, ``1e-4``, ``1e-5`` in as many ulps of that dtype (see
            :func:`~lifexport.validation.default_tolerances`); the report has the values used.
        target: training graphs with a ``target`` input: the target, batch first as exported,
            ``(B, ...)``; for a step graph also ``(T, B, ...)``, one per step.
        loss: with ``target``: the ``loss(y, target)`` the graph was exported with.

    Returns:
        A report per provider; see :func:`assert_valid` to raise on failure.

    Raises:
        ValueError: an unknown provider name, ``inputs`` of another shape or dtype, a file that
            is not a lifexport ONNX model, a model that does not fit the graph, a missing or
            superfluous ``target``/``loss``.
        FileNotFoundError: ``onnx_path`` does not exist.
        TypeError: ``model`` is not a torch module, ``inputs`` not a tensor.

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
        /tmp/lif_refrac.onnx: sequence graph, inference, float32, T=50, B=2: PASSED ...
        torch ran the model in its own train mode
        tolerances for float32: rtol 0.0001, atol 1e-05, near-threshold margin 1e-05
        CPUExecutionProvider: passed, spikes equal
          max |onnx - torch|: y 0, next_state.0.v ...
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be the torch.nn.Module that was exported, got {type(model)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive int or None, got {steps!r}")
    for name, value in (("numerical_margin", numerical_margin), ("rtol", rtol), ("atol", atol)):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    run, unavailable = resolve_providers(providers)
    info = read_graph(onnx_path)
    defaults = default_tolerances(info.dtype)
    rtol = defaults[0] if rtol is None else float(rtol)
    atol = defaults[1] if atol is None else float(atol)
    numerical_margin = defaults[2] if numerical_margin is None else float(numerical_margin)
    if inputs is None:
        xs = synthesize_inputs(info, steps, seed)
    else:
        xs = check_inputs(info, inputs, steps)
    _check_target(info, target, loss)
    parameters = _graph_parameters(model, info)
    _check_states(model, info, xs)
    _check_outputs(info)

    device = _device(model)
    with _trainable(parameters.values() if info.mode == "training" else ()):
        reference = run_torch(
            model,
            info,
            xs.to(device),
            parameters=parameters,
            target=None if target is None else target.to(device),
            loss=loss,
        )
    model_mode, train_modules = _model_mode(model)
    step_model = model.module if isinstance(model, TimeLoop) else model
    with torch.no_grad():
        rest = flatten_state(step_model.initial_state(xs[0].to(device)))[0]
    initial = {name: to_numpy(t) for name, t in zip(info.state_names, rest)}
    constants = {name: to_numpy(p) for name, p in parameters.items()}
    target_np = None if target is None else to_numpy(target)
    if target_np is not None and info.graph == "sequence":
        constants["target"] = target_np

    reports = {}
    for provider in run:
        try:
            session = open_session(info, provider)
        except Exception as error:
            reports[provider] = _failed(provider, f"onnxruntime could not load the graph: {error}")
            continue
        if provider not in session.get_providers():
            unavailable[provider] = (
                f"onnxruntime did not start it (the session runs on {session.get_providers()}); "
                "check the CUDA/cuDNN libraries onnxruntime needs"
            )
            continue
        try:
            reports[provider] = _check_provider(
                provider,
                session,
                info,
                reference,
                to_numpy(xs),
                constants,
                initial,
                target_np,
                rtol=rtol,
                atol=atol,
                numerical_margin=numerical_margin,
            )
        except Exception as error:
            reports[provider] = _failed(provider, f"{type(error).__name__}: {error}")

    spikes = {
        name: int(np.count_nonzero(reference.outputs[name]))
        for name in info.output_names
        if name in reference.spike_names
    }
    return ValidationReport(
        path=str(info.path),
        graph=info.graph,
        mode=info.mode,
        steps=int(xs.shape[0]),
        batch=int(xs.shape[1]),
        providers=reports,
        unavailable=unavailable,
        spikes=spikes,
        rtol=rtol,
        atol=atol,
        numerical_margin=numerical_margin,
        model_mode=model_mode,
        train_modules=train_modules,
        mode_dependent=tuple(
            name
            for name, m in model.named_modules()
            if m.training and isinstance(m, _MODE_DEPENDENT)
        ),
        dtype=str(info.dtype).removeprefix("torch."),
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
    provider: str,
    session: Any,
    info: GraphFile,
    reference: Reference,
    xs: np.ndarray,
    constants: dict[str, np.ndarray],
    initial: dict[str, np.ndarray],
    target: np.ndarray | None,
    *,
    rtol: float,
    atol: float,
    numerical_margin: float,
) -> ProviderReport:
    """Run one provider over the drive and compare with the torch reference."""
    if info.graph == "step":
        per_step = target is not None and target.ndim == info.input_ranks["target"] + 1
        targets = None if target is None else target if per_step else np.stack([target] * len(xs))
        actual = run_steps(session, info, xs, constants, initial, targets)
    else:
        actual = run_sequence(session, info, xs, constants, initial)
    max_abs, max_rel, flips, failed = summarize(
        reference.outputs, actual, info.output_names, reference.spike_names, rtol, atol
    )
    compare = dict(
        spike_names=reference.spike_names,
        owners=reference.owners,
        membrane=reference.membrane,
        rtol=rtol,
        atol=atol,
        numerical_margin=numerical_margin,
    )
    mismatch = None
    if failed and info.graph == "sequence" and info.state_names:
        # Locate it: the same graph one step at a time, its states compared after every step;
        # trusted only if this replay gives the whole run's y (bits could differ with T).
        try:
            chunked = run_steps(session, info, xs, constants, initial, target)
        except Exception:  # the replay is a diagnosis only; the whole run's result stands
            chunked = None
        if chunked is not None and np.array_equal(chunked["y"], actual["y"], equal_nan=True):
            torch_steps = {"y": reference.outputs["y"], **reference.states}
            mismatch = first_mismatch(
                torch_steps,
                {n: chunked[n] for n in torch_steps if n in chunked},
                stepped=set(torch_steps),
                **compare,
            )
    if failed and mismatch is None:
        mismatch = first_mismatch(reference.outputs, actual, stepped=reference.stepped, **compare)
    return ProviderReport(
        provider=provider,
        spikes_equal=not any(n in reference.spike_names for n in failed),
        first_mismatch=mismatch,
        max_abs=max_abs,
        max_rel=max_rel,
        flips=flips,
        failed=failed,
    )


def _failed(provider: str, error: str) -> ProviderReport:
    return ProviderReport(provider=provider, spikes_equal=False, first_mismatch=None, error=error)


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


def _graph_parameters(model: torch.nn.Module, info: GraphFile) -> dict[str, torch.nn.Parameter]:
    """The model's parameter for each parameter input of a training graph."""
    if not info.parameter_names:
        return {}
    found = dict(model.named_parameters())
    for name, p in list(found.items()):  # a TimeLoop's step graph names them without "module."
        if name.startswith("module."):
            found.setdefault(name.removeprefix("module."), p)
    missing = [n for n in info.parameter_names if n not in found]
    if missing:
        raise ValueError(
            f"the graph takes parameters {missing} that the model does not have (its "
            f"parameters: {[n for n, _ in model.named_parameters()]}); validate the model "
            "that was exported"
        )
    return {n: found[n] for n in info.parameter_names}


def _check_states(model: torch.nn.Module, info: GraphFile, xs: Tensor) -> None:
    """The model's states must be the graph's (same names in the same order)."""
    from lifexport.export import state_names

    step_model = model.module if isinstance(model, TimeLoop) else model
    if not (hasattr(step_model, "step") and hasattr(step_model, "initial_state")):
        raise ValueError(
            f"model: {type(model).__name__} is not a lifexport model (a layer, SequentialState "
            "or TimeLoop); validate the model that was exported"
        )
    try:
        names = state_names(model, xs[0].to(_device(model)))
    except ExportError as error:
        raise ValueError(f"model: {error}") from error
    if info.state_names and tuple(names) != info.state_names:
        raise ValueError(
            f"the model's states {names} are not the graph's {list(info.state_names)}; "
            "validate the model that was exported"
        )


def _check_outputs(info: GraphFile) -> None:
    """Every graph output must be one torch computes (``to_onnx``'s interface)."""
    known = {"y", *(f"next_{n}" for n in info.state_names)}
    if info.mode == "training":
        known |= {"loss", *(f"grad.{n}" for n in info.parameter_names)}
    unknown = [name for name in info.output_names if name not in known]
    if unknown or "y" not in info.output_names:
        raise ValueError(
            f"{info.path.name}: outputs {list(info.output_names)} are not to_onnx's interface "
            f"(y, next_state.*, and for training loss and grad.*); unknown: {unknown}"
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
