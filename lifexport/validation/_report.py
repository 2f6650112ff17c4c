"""What a validation found: dataclasses of differences, and the assert helper on top."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lifexport.errors import ValidationError

__all__ = ["Diagnosis", "Mismatch", "ProviderReport", "ValidationReport", "assert_valid"]


def _number(value: float | None) -> float | str | None:
    """A float for JSON: non-finite values as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    if value is None or math.isfinite(value):
        return value
    return str(value)


@dataclass(frozen=True)
class Mismatch:
    """The first place where onnxruntime and eager torch disagree.

    Attributes:
        name: the graph output that differs: ``"y"``, ``"next_state.<k>.<field>"``,
            ``"loss"`` or ``"grad.<parameter>"``.
        step: the time step, or ``None`` for a value a sequence graph only returns at the end
            (final state, loss, gradient) when the step could not be located.
        layer: the stack index ``k`` of the neuron layer that owns the value (``None`` for a
            loss, a gradient, or an output that no neuron layer produces directly).
        index: the element within one step's tensor (``(b, ...)``), or within the whole
            tensor when ``step`` is ``None``.
        torch_value: eager torch's value there.
        onnx_value: onnxruntime's value there.
        margin: ``|v - v_th|`` of that neuron at that step in the torch run (for a final value,
            its smallest margin over all steps); ``None`` where no spike op was recorded.
        numerical: ``margin <= numerical_margin``: ``v`` was within rounding distance of the
            threshold, so a last-bit difference can flip the spike and everything after it.
        kind: ``"spike"`` (an exact spike comparison), ``"value"`` (beyond tolerance) or
            ``"shape"`` (the tensors do not even have the same shape).
    """

    name: str
    step: int | None
    layer: int | None
    index: tuple[int, ...]
    torch_value: float
    onnx_value: float
    margin: float | None
    numerical: bool
    kind: str = "spike"

    def to_dict(self) -> dict[str, Any]:
        return dict(
            name=self.name,
            step=self.step,
            layer=self.layer,
            index=list(self.index),
            torch_value=_number(self.torch_value),
            onnx_value=_number(self.onnx_value),
            margin=_number(self.margin),
            numerical=self.numerical,
            kind=self.kind,
        )

    def format(self) -> str:
        where = f"step {self.step}" if self.step is not None else "the end"
        layer = f", layer {self.layer}" if self.layer is not None else ""
        if self.kind == "shape":
            return f"{self.name}: shapes differ"
        margin = "margin unknown" if self.margin is None else f"|v - v_th| = {self.margin:.3g}"
        verdict = "numerical (within the margin)" if self.numerical else "real"
        element = f"[{', '.join(map(str, self.index))}]" if self.index else ""
        return (
            f"{self.name}{element} at {where}{layer}: "
            f"torch {self.torch_value:.9g}, onnx {self.onnx_value:.9g} ({margin}; {verdict})"
        )


GRAPH_BUG, PRECISION_DRIFT = "graph bug", "precision drift"
#: The drives a provider runs: from the rest state, and (graphs with state inputs) from the
#: state torch reaches after a warm-up drive.
REST, WARM = "rest", "warm"
_DRIVES = {REST: "from rest", WARM: "from a warm state"}


@dataclass(frozen=True)
class Diagnosis:
    """What a teacher-forced run says of a disagreement: the graph run one step at a time from
    torch's state before each step, so each step shows only its own (local) error.

    Attributes:
        verdict: ``"graph bug"`` when some step's local error exceeds what the precision
            explains (a state or output beyond tolerance, or a spike flip away from the
            threshold); ``"precision drift"`` otherwise: each step is right within the
            precision, and the free run diverged by accumulated rounding.
        step: for a graph bug, the first step with a local error beyond the precision; for
            drift, the step where the free run first diverges.
        local: the first local error beyond the precision (a graph bug), else ``None``.
        local_max_abs: per output, the largest local ``|onnx - torch|`` over all steps.
    """

    verdict: str
    step: int | None
    local: Mismatch | None = None
    local_max_abs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(
            verdict=self.verdict,
            step=self.step,
            local=None if self.local is None else self.local.to_dict(),
            local_max_abs={k: _number(v) for k, v in self.local_max_abs.items()},
        )

    def format(self) -> str:
        worst = max(self.local_max_abs.values(), default=0.0)
        if self.verdict == GRAPH_BUG:
            return f"graph bug: local error at step {self.step}: {self.local.format()}"
        return (
            f"precision drift from step {self.step} (teacher-forced, every step within the "
            f"precision; largest local |onnx - torch| {worst:.2g})"
        )


@dataclass(frozen=True)
class ProviderReport:
    """One execution provider's run against eager torch.

    Attributes:
        provider: the onnxruntime execution provider.
        spikes_equal: every spike output (``y`` of a spiking last layer, ``z`` states) equals
            torch's exactly, at every step.
        first_mismatch: where they first disagree (``None`` when nothing does).
        max_abs: the largest ``|onnx - torch|`` per graph output (states, outputs, gradients).
        max_rel: the largest ``|onnx - torch| / |torch|`` per output, over the elements where
            torch's value is not zero.
        flips: how many spike elements differ in all (after a first flip, trajectories diverge).
        failed: the outputs that disagree anywhere (spikes exactly, the rest beyond tolerance).
        error: onnxruntime's error when the run itself failed, else ``None``.
        settings: the provider options the session ran with (``use_tf32`` on CUDA).
        flip_rate: the fraction of spike elements (all spike outputs, all steps) that differ.
        flip_budget: validating a deployment precision: the largest ``flip_rate`` that
            passes; ``None`` in strict mode (spikes must match, up to numerical flips).
        diagnosis: after a disagreement, what a teacher-forced run says of it (``None`` where
            the graph has no state inputs to force, or nothing disagreed).
        drive: what this run started from: ``"rest"`` (the model's rest state) or ``"warm"``
            (the state torch reached after a warm-up drive, fed to the graph's state inputs).
        steps: the time steps of this run.
        warm: for a graph with state inputs, the same provider driven from a warm state
            (``drive="warm"``): a graph right only from rest fails there; ``None`` otherwise.
    """

    provider: str
    spikes_equal: bool
    first_mismatch: Mismatch | None
    max_abs: dict[str, float] = field(default_factory=dict)
    max_rel: dict[str, float] = field(default_factory=dict)
    flips: int = 0
    failed: tuple[str, ...] = ()
    error: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    flip_rate: float = 0.0
    flip_budget: float | None = None
    diagnosis: Diagnosis | None = None
    drive: str = REST
    steps: int | None = None
    warm: ProviderReport | None = None

    @property
    def passed(self) -> bool:
        """It ran and: in strict mode, nothing disagrees except after a numerical first flip;
        validating a deployment precision, the flip rate is within the budget and no step has a
        local error beyond the precision; all that from rest and, where run, from a warm
        state."""
        return not self.failed_drives

    @property
    def failed_drives(self) -> tuple[str, ...]:
        """The drives that failed, of ``"rest"`` and ``"warm"`` (empty when it passed)."""
        own = () if self._passed_alone() else (self.drive,)
        return own + (() if self.warm is None else self.warm.failed_drives)

    def _passed_alone(self) -> bool:
        """This run's verdict, without the warm run."""
        if self.error is not None:
            return False
        if self.flip_budget is not None:
            bug = self.diagnosis is not None and self.diagnosis.verdict == GRAPH_BUG
            return self.flip_rate <= self.flip_budget and not bug
        return self.first_mismatch is None or self.first_mismatch.numerical

    @property
    def first_diverging_step(self) -> int | None:
        """The step where the run first disagrees with torch (``None``: nowhere, or only in a
        value a sequence graph returns at the end)."""
        return None if self.first_mismatch is None else self.first_mismatch.step

    def to_dict(self) -> dict[str, Any]:
        return dict(
            provider=self.provider,
            passed=self.passed,
            spikes_equal=self.spikes_equal,
            first_mismatch=None if self.first_mismatch is None else self.first_mismatch.to_dict(),
            max_abs={k: _number(v) for k, v in self.max_abs.items()},
            max_rel={k: _number(v) for k, v in self.max_rel.items()},
            flips=self.flips,
            failed=list(self.failed),
            error=self.error,
            settings=dict(self.settings),
            flip_rate=self.flip_rate,
            flip_budget=self.flip_budget,
            first_diverging_step=self.first_diverging_step,
            diagnosis=None if self.diagnosis is None else self.diagnosis.to_dict(),
            drive=self.drive,
            steps=self.steps,
            failed_drives=list(self.failed_drives),
            warm=None if self.warm is None else self.warm.to_dict(),
        )

    def format(self) -> str:
        """The provider's line (``FAILED from a warm state`` where only that drive failed),
        its details indented, then the warm run's block."""
        if self.error is not None:
            return f"{self.provider}: FAILED to run{self._from()}: {self.error}"
        failed = self.failed_drives
        if not failed:
            verdict = "passed"
        elif failed == (REST,):
            verdict = "FAILED"
        else:
            verdict = f"FAILED {' and '.join(_DRIVES[d] for d in failed)}"
        budget = "" if self.flip_budget is None else f", flip budget {self.flip_budget:.3g}"
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "defaults"
        lines = [f"{self.provider} ({settings}{budget}): {verdict}, {self._spikes()}"]
        lines += self._details("  ")
        if self.warm is not None:
            warm = self.warm
            if warm.error is not None:
                lines.append(f"  {_DRIVES[WARM]}: FAILED to run: {warm.error}")
            else:
                steps = "" if warm.steps is None else f" ({warm.steps} steps)"
                result = "passed" if warm._passed_alone() else "FAILED"
                lines.append(f"  {_DRIVES[WARM]}{steps}: {result}, {warm._spikes()}")
                lines += warm._details("    ")
        return "\n".join(lines)

    def _from(self) -> str:
        return "" if self.drive == REST else f" {_DRIVES[self.drive]}"

    def _spikes(self) -> str:
        if self.spikes_equal:
            return "spikes equal"
        return f"{self.flips} spike(s) differ (flip rate {self.flip_rate:.3g})"

    def _details(self, indent: str) -> list[str]:
        lines = []
        if self.first_mismatch is not None:
            lines.append(f"{indent}first mismatch: {self.first_mismatch.format()}")
        if self.diagnosis is not None:
            lines.append(f"{indent}diagnosis: {self.diagnosis.format()}")
        worst = ", ".join(f"{name} {value:.2g}" for name, value in self.max_abs.items())
        lines.append(f"{indent}max |onnx - torch|: {worst}")
        return lines


@dataclass(frozen=True)
class ValidationReport:
    """An exported graph run in onnxruntime against the eager torch model, per provider.

    Attributes:
        path: the ``.onnx`` file.
        graph: ``"step"`` or ``"sequence"``.
        mode: ``"inference"`` or ``"training"``.
        steps: time steps compared (T).
        batch: batch size (B).
        providers: a report per provider that ran (from rest; each holds its run from a warm
            state as ``warm`` when the graph takes its state).
        unavailable: requested providers that did not run, with the reason.
        spikes: spikes the torch run emitted per spike output (0 means the check was weak).
        rtol, atol: the tolerance of non-spike values (``|onnx - torch| <= atol + rtol|torch|``).
        numerical_margin: the largest ``|v - v_th|`` at which a spike flip counts as numerical.
        dtype: the graph's floating-point type (``"float32"``); the default tolerances follow
            it.
        model_mode: the mode torch ran the model in, its own as given: ``"eval"``, ``"train"``,
            or ``"mixed"`` (some submodules in each; ``train_modules`` names those in train
            mode). An inference graph is exported in eval mode, so Dropout or BatchNorm in
            train mode make the runs differ.
        train_modules: with ``model_mode="mixed"``, the submodules in train mode, by name.
        mode_dependent: the submodules in train mode whose output depends on the mode
            (Dropout, BatchNorm, InstanceNorm), by name.
        precision: ``"strict"`` (the graph checked in its dtype, TF32 off) or
            ``"deployment"`` (the providers' deployment settings, against a strict float32
            torch reference, on a flip budget).
    """

    path: str
    graph: str
    mode: str
    steps: int
    batch: int
    providers: dict[str, ProviderReport]
    unavailable: dict[str, str]
    spikes: dict[str, int]
    rtol: float
    atol: float
    numerical_margin: float
    model_mode: str = "eval"
    train_modules: tuple[str, ...] = ()
    mode_dependent: tuple[str, ...] = ()
    dtype: str = "float32"
    precision: str = "strict"

    @property
    def passed(self) -> bool:
        """At least one provider ran, and every one that ran passed."""
        return bool(self.providers) and all(p.passed for p in self.providers.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (non-finite numbers as strings)."""
        return dict(
            path=self.path,
            graph=self.graph,
            mode=self.mode,
            dtype=self.dtype,
            precision=self.precision,
            steps=self.steps,
            batch=self.batch,
            passed=self.passed,
            providers={name: p.to_dict() for name, p in self.providers.items()},
            unavailable=dict(self.unavailable),
            spikes=dict(self.spikes),
            rtol=self.rtol,
            atol=self.atol,
            numerical_margin=self.numerical_margin,
            model_mode=self.model_mode,
            train_modules=list(self.train_modules),
            mode_dependent=list(self.mode_dependent),
        )

    def _mode_line(self) -> str:
        mode = f"{self.model_mode} mode"
        if self.model_mode == "mixed":
            mode += f" (in train mode: {', '.join(self.train_modules)})"
        line = f"torch ran the model in its own {mode}"
        if self.mode_dependent and self.mode == "inference":
            line += (
                f"; {', '.join(self.mode_dependent)} act as in training, the graph as in eval "
                "mode: call model.eval() before validating to compare them"
            )
        return line

    def format(self) -> str:
        """A short summary: a header line, the model's mode, the tolerances, then one block
        per provider."""
        spikes = ", ".join(f"{n}: {c}" for n, c in self.spikes.items()) or "no spike output"
        lines = [
            f"{self.path}: {self.graph} graph, {self.mode}, {self.dtype}, {self.precision} "
            f"precision, T={self.steps}, "
            f"B={self.batch}: {'PASSED' if self.passed else 'FAILED'} (torch spikes {spikes})",
            self._mode_line(),
            f"tolerances: rtol {self.rtol:.2g}, atol {self.atol:.2g}, "
            f"near-threshold margin {self.numerical_margin:.2g}",
        ]
        lines += [p.format() for p in self.providers.values()]
        lines += [f"{name}: unavailable: {why}" for name, why in self.unavailable.items()]
        return "\n".join(lines)

    def assert_valid(self) -> None:
        """Raise :class:`~lifexport.errors.ValidationError` unless the report passed."""
        assert_valid(self)

    def __str__(self) -> str:
        return self.format()


def assert_valid(report: ValidationReport) -> None:
    """Raise unless every provider that ran agrees with torch and at least one ran.

    A spike flip whose torch margin is within ``numerical_margin`` (and everything after it)
    does not raise: the report still shows it. The message names the providers that failed
    and the drives they failed on (from rest, from a warm state).

    Raises:
        TypeError: ``report`` is not a :class:`ValidationReport`.
        ValidationError: a real mismatch (a spike flip away from the threshold, a state, output
            or gradient beyond tolerance), a failed run, or no requested provider available.
    """
    if not isinstance(report, ValidationReport):
        raise TypeError(
            f"report must be a ValidationReport (what lifexport.validate returns), got "
            f"{type(report).__name__}"
        )
    if not report.providers:
        reasons = "; ".join(f"{n}: {why}" for n, why in report.unavailable.items())
        raise ValidationError(
            f"{report.path}: none of the requested execution providers could run ({reasons})"
        )
    if not report.passed:
        failed = "; ".join(
            f"{name} {' and '.join(_DRIVES[d] for d in p.failed_drives)}"
            for name, p in report.providers.items()
            if not p.passed
        )
        raise ValidationError(f"onnxruntime disagrees with torch ({failed}):\n{report.format()}")
