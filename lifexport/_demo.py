"""``lifexport demo``: the digits network from torch to onnxruntime, end to end.

1. load the shipped weights of :mod:`lifexport.digits` (or train from scratch);
2. torch test accuracy;
3. export a sequence graph and a step graph (inference) and a training graph;
4. validate them in onnxruntime (CPU, and CUDA when the installed onnxruntime has it);
5. onnxruntime test accuracy, which must come from the very same predictions as torch's;
6. a speed table (eager, compiled, onnxruntime) and a spike raster picture of one digit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifexport import digits
from lifexport.bench.timing import median_ms
from lifexport.export import to_onnx
from lifexport.graph import X, Y
from lifexport.modules import compile as lifexport_compile
from lifexport.validation import PROVIDERS, make_session, validate


def raster(model, x: torch.Tensor, label: int, path: Path) -> None:
    """Input spikes, hidden spikes and output potentials of one digit, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with torch.no_grad():
        hidden, _ = model[1](model[0](x))  # (T, 1, 256) spikes
        potentials, _ = model[3](model[2](hidden))  # (T, 1, 10)
    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True, height_ratios=[2, 3, 2])
    for ax, data, title in (
        (axes[0], x[:, 0].T, "input: 64 pixels, rate-coded spikes"),
        (axes[1], hidden[:, 0].T, "hidden: 256 LIF-refrac neurons, spikes"),
    ):
        t, n = data.nonzero(as_tuple=True)
        ax.scatter(n, t, s=2, marker="|", color="black")
        ax.set_ylabel("neuron")
        ax.set_title(title, fontsize=9)
    for digit in range(10):
        style = dict(lw=2.0, color="tab:red") if digit == label else dict(lw=0.8, color="0.6")
        axes[2].plot(potentials[:, 0, digit].numpy(), **style)
    axes[2].set_title(
        f"readout: 10 leaky integrators (digit {label} in red, the others grey)", fontsize=9
    )
    axes[2].set_xlabel("time step")
    axes[2].set_ylabel("v")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _model(train: bool, epochs: int, stage, progress, result: dict) -> tuple:
    """The digits network: trained here, or the shipped weights."""
    if not train:
        stage(f"loading the shipped weights (lifexport.digits, {digits.WEIGHTS.name})")
        return digits.load_trained()
    stage(f"training from scratch ({epochs} epochs)")
    cfg = digits.DigitsConfig()
    model, result["training"] = digits.train(cfg, digits.TrainConfig(epochs=epochs), progress)
    return model, cfg


def _loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(digits.readout(y), target)


def _export(model, xs, y_test, out_dir: Path) -> dict:
    """The sequence, step and training graphs of the network."""
    return {
        "sequence": to_onnx(model, xs[:, :2], out_dir / "digits_sequence.onnx", with_state=False),
        "step": to_onnx(model, xs[0, :2], out_dir / "digits_step.onnx", graph="step"),
        "training": to_onnx(
            model,
            xs[:, :2],
            out_dir / "digits_training.onnx",
            mode="training",
            with_state=False,
            loss=_loss,
            target=y_test[:2],
        ),
    }


def _validate(model, files: dict, xs, y_test, providers, result: dict) -> None:
    """Every graph against eager torch on 16 test images."""
    sample = xs[:, :16]
    reports = {
        name: validate(
            model,
            f.path,
            sample,
            providers,
            **(dict(target=y_test[:16], loss=_loss) if name == "training" else {}),
        )
        for name, f in files.items()
    }
    result["validation"] = {name: report.to_dict() for name, report in reports.items()}
    result["validation_passed"] = all(r.passed for r in reports.values())


def _speed(model, session, xs) -> dict[str, float]:
    """Median ms of inference over the whole test set: eager, compiled, onnxruntime."""
    compiled = lifexport_compile(model)
    with torch.no_grad():
        speed = {
            "torch eager": median_ms(lambda: model(xs), repeats=5, warmup=1),
            "torch compiled": median_ms(lambda: compiled(xs), repeats=5, warmup=1),
        }
    feeds = {X: xs.numpy()}
    speed["onnxruntime sequence"] = median_ms(lambda: session.run([Y], feeds), repeats=5, warmup=1)
    return {k: round(v, 2) for k, v in speed.items()}


def _check_providers(providers: tuple[str, ...]) -> None:
    """Every provider must be one onnxruntime knows (an unavailable one is reported later)."""
    import onnxruntime as ort

    for provider in providers:
        if provider not in ort.get_all_providers():
            raise ValueError(
                f"providers: unknown onnxruntime execution provider {provider!r} (available "
                f"here: {', '.join(ort.get_available_providers())})"
            )


def _make_folder(out_dir: Path) -> None:
    """``out_dir`` as a folder (created with its parents), before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {str(out_dir)!r} is a file; name a folder (created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a parent that is a file, a folder without write permission
        raise ValueError(
            f"out_dir {str(out_dir)!r} cannot be created: {error.strerror or error}"
        ) from None


def run_demo(
    out_dir: Path,
    *,
    train: bool = False,
    epochs: int = 40,
    providers: tuple[str, ...] = PROVIDERS,
    stage: Callable[[str], None] = lambda text: None,
    progress: Callable[[int, int, str], None] = lambda done, total, text: None,
) -> dict[str, Any]:
    """Run the demo; returns every figure it reports (JSON-serializable).

    Raises:
        ValueError: ``train`` with ``epochs`` below 1; an ``out_dir`` that is a file, or that
            cannot be created; a provider onnxruntime does not know (all before any work).
    """
    if train and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive int to train, got {epochs!r}")
    _check_providers(providers)
    out_dir = Path(out_dir)
    _make_folder(out_dir)
    result: dict[str, Any] = {"out_dir": str(out_dir)}
    model, cfg = _model(train, epochs, stage, progress, result)
    _, _, x_test, y_test = digits.load_split(cfg)
    xs = digits.encode(x_test, cfg)  # (T, 360, 64)

    stage("torch accuracy")
    with torch.no_grad():
        torch_pred = digits.readout(model(xs)[0]).argmax(1)
    result["torch_accuracy"] = (torch_pred == y_test).float().mean().item()

    stage("exporting a sequence graph, a step graph and a training graph")
    files = _export(model, xs, y_test, out_dir)
    result["files"] = {name: str(f.path) for name, f in files.items()}

    stage("validating in onnxruntime")
    _validate(model, files, xs, y_test, providers, result)

    stage("onnxruntime accuracy")
    session = make_session(files["sequence"].path)
    (ort_potentials,) = session.run([Y], {X: xs.numpy()})
    ort_pred = torch.from_numpy(np.asarray(ort_potentials)).max(0).values.argmax(1)
    result["onnxruntime_accuracy"] = (ort_pred == y_test).float().mean().item()
    result["same_predictions"] = bool(torch.equal(ort_pred, torch_pred))
    result["images"], result["steps"] = len(y_test), cfg.steps

    stage("speed (whole test set, inference)")
    result["speed_ms"] = _speed(model, session, xs)

    stage("spike raster")
    picture = out_dir / "digit_raster.png"
    raster(model, xs[:, :1], int(y_test[0]), picture)
    result["raster"] = str(picture)
    result["passed"] = result["validation_passed"] and result["same_predictions"]
    return result


def format_result(result: dict[str, Any]) -> str:
    """The demo's report for a person."""
    lines = []
    if "training" in result:
        t = result["training"]
        lines.append(f"trained in {t['seconds']:.0f} s, final training loss {t['loss']:.4f}")
    n = result["images"]
    lines.append(f"torch test accuracy:       {100 * result['torch_accuracy']:.2f}% ({n} images)")
    same = "same predictions on every image" if result["same_predictions"] else "PREDICTIONS DIFFER"
    lines.append(f"onnxruntime test accuracy: {100 * result['onnxruntime_accuracy']:.2f}% ({same})")
    lines.append("exported:")
    lines += [f"  {kind:9s} {path}" for kind, path in result["files"].items()]
    lines.append("parity (onnxruntime vs eager torch, 16 test images; training: loss, gradients):")
    for graph, report in result["validation"].items():
        for provider, r in report["providers"].items():
            status = "ok" if r["passed"] else "MISMATCH"
            worst = max([*r["max_abs"].values(), 0.0])
            lines.append(
                f"  {graph:8s} {provider}: {status}; spikes equal: {r['spikes_equal']}; "
                f"max |diff| {worst:.2e}"
            )
        for provider, reason in report["unavailable"].items():
            lines.append(f"  {graph:8s} {provider}: not run ({reason})")
    lines.append(f"speed, {n} images x {result['steps']} steps (median ms):")
    lines += [f"  {name:22s} {ms:8.2f}" for name, ms in result["speed_ms"].items()]
    lines.append(f"spike raster of one digit: {result['raster']}")
    return "\n".join(lines)
