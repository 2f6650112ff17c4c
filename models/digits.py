"""A LIF-refrac network that classifies scikit-learn's bundled 8x8 handwritten digits.

    Linear(64, 256) -> LIFRefrac -> Linear(256, 10) -> LI      (time-major, T = 32 steps)

Encoding (deterministic rate coding): pixel intensity p in [0, 16] becomes a regular spike
train of rate ``max_rate * p / 16`` spikes per step: pixel k spikes at step t when
``floor((t + 1) * r_k) > floor(t * r_k)``. No randomness, so torch and onnxruntime see the
very same input. Readout: the maximum over time of the leaky integrators' potentials.

Data: ``sklearn.datasets.load_digits`` (1,797 images, no download), split 80/20 stratified
by class with a fixed seed; the test split is used only for the final report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

import lifexport
from lifexport.functional import LIFParameters, LIFRefracParameters

WEIGHTS = Path(__file__).with_name("digits.pt")


@dataclass
class DigitsConfig:
    steps: int = 32  # time steps per image
    hidden: int = 256  # LIF-refrac neurons
    max_rate: float = 0.5  # spikes per step of a pixel at full intensity (16)
    alpha: float = 10.0  # SuperSpike width: 100 (the default) lets almost no gradient through
    seed: int = 0  # weight init, batch order and the train/test split


def encode(images: torch.Tensor, cfg: DigitsConfig) -> torch.Tensor:
    """Rate-code ``(B, 64)`` intensities in [0, 16] as spikes ``(T, B, 64)`` (float32)."""
    rate = cfg.max_rate * images.float() / 16.0  # (B, 64) spikes per step
    t = torch.arange(cfg.steps + 1, dtype=torch.float32).view(-1, 1, 1)  # (T + 1, 1, 1)
    counts = torch.floor(t * rate)  # spikes emitted before each step, (T + 1, B, 64)
    return (counts[1:] > counts[:-1]).float()


def build_model(cfg: DigitsConfig) -> lifexport.SequentialState:
    torch.manual_seed(cfg.seed)
    return lifexport.SequentialState(
        torch.nn.Linear(64, cfg.hidden),
        lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(method="super", alpha=cfg.alpha))),
        torch.nn.Linear(cfg.hidden, 10),
        lifexport.LI(),
    )


def readout(potentials: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, 10)``: each class's maximum potential over time ``(T, B, 10)``."""
    return potentials.max(dim=0).values


def load_split(cfg: DigitsConfig):
    """``(x_train, y_train, x_test, y_test)``: intensities ``(n, 64)`` and labels ``(n,)``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.2, stratify=data.target, random_state=cfg.seed
    )
    as_tensor = torch.as_tensor
    return (
        as_tensor(x_train, dtype=torch.float32),
        as_tensor(y_train),
        as_tensor(x_test, dtype=torch.float32),
        as_tensor(y_test),
    )


def load_trained(path: Path = WEIGHTS) -> tuple[lifexport.SequentialState, DigitsConfig]:
    """The shipped network, its weights loaded with ``weights_only=True``."""
    checkpoint = torch.load(path, weights_only=True)
    cfg = DigitsConfig(**checkpoint["config"])
    model = build_model(cfg)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), cfg


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg) -> float:
    with torch.no_grad():
        potentials, _ = model(encode(images, cfg))
    return (readout(potentials).argmax(1) == labels).float().mean().item()
