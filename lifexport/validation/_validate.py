"""``validate``: run an exported graph in onnxruntime and the same drive through eager torch.

Stages, each in its own module with its own errors: check the arguments (``_arguments``), read
the file's contract (:func:`~lifexport.graph.read_graph`), settle the precision
(``_precision``), build the drive (``_drive``), check the model against the contract
(``_model``), run the torch reference (``_case``: from rest, and from a warm state where the
graph takes its state), run and compare each execution provider on each drive
(``_providers``, with ``_diagnose`` where a run disagrees), then assemble the report
(``_assemble``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import Tensor

from lifexport.graph import read_graph
from lifexport.validation._arguments import check_arguments, check_precision
from lifexport.validation._assemble import assemble_report
from lifexport.validation._case import reference_cases
from lifexport.validation._drive import check_inputs, synthesize_inputs
from lifexport.validation._model import check_model
from lifexport.validation._precision import provider_settings, resolve_precision, tolerances
from lifexport.validation._providers import run_providers
from lifexport.validation._report import ValidationReport
from lifexport.validation._runtime import PROVIDERS, resolve_providers


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
    graph, which is the model in eval mode. Torch runs the step path the graph was traced
    from, whatever a layer's ``backend``: a fused sequence layer (``backend="triton"``, or
    ``"auto"`` on CUDA) runs its ``scan`` loop for the reference, and its backend is restored
    after. Training graphs also take the model's parameters (as their inputs), and their loss
    and ``grad.*`` outputs are compared with ``torch.autograd`` of the same loss. Spike state
    fields and the membrane's spike call are the layers' own (``spike_fields``,
    ``membrane_call``; see :class:`~lifexport.modules.NeuronModule`).

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
    check_arguments(model, steps, numerical_margin=numerical_margin, rtol=rtol, atol=atol)
    check_precision(precision, flip_budget)
    run, unavailable = resolve_providers(providers)
    info = read_graph(onnx_path)
    precision = resolve_precision(info, precision)
    settings = provider_settings(run + list(unavailable), precision, provider_options)
    tolerance = tolerances(info, precision, rtol, atol, numerical_margin)
    xs = (
        synthesize_inputs(info, steps, seed)
        if inputs is None
        else check_inputs(info, inputs, steps)
    )
    parameters = check_model(model, info, xs, target, loss)
    budget = flip_budget if precision == "deployment" else None
    case, warm = reference_cases(model, info, xs, parameters, target, loss, tolerance, budget, seed)
    reports, unavailable = run_providers(run, settings, case, warm, unavailable)
    return assemble_report(model, case, reports, unavailable, precision)
