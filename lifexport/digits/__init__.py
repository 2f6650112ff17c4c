"""A LIF-refrac network that classifies scikit-learn's bundled 8x8 handwritten digits.

    Linear(64, 256) -> LIFRefrac -> Linear(256, 10) -> LI      (time-major, T = 32 steps)

Encoding (deterministic rate coding): pixel intensity p in [0, 16] becomes a regular spike
train of rate ``max_rate * p / 16`` spikes per step: pixel k spikes at step t when
``floor((t + 1) * r_k) > floor(t * r_k)``. No randomness, so torch and onnxruntime see the
very same input. Readout: the maximum over time of the leaky integrators' potentials.

Data: ``sklearn.datasets.load_digits`` (1,797 images, no download), split 80/20 stratified
by class with a fixed seed; the test split is used only for the final report.

Weights: ``digits.pt`` beside this file, shipped as package data and found with
:mod:`importlib.resources` (so an installed package finds them); ``scripts/train_digits.py``
writes new ones. ``lifexport export lifexport.digits:trained_model ...`` names the network.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources

import torch

from lifexport.functional import LIFParameters, LIFRefracParameters
from lifexport.modules import LI, LIFRefrac, SequentialState
from lifexport.modules import compile as lifexport_compile

__all__ = [
    "WEIGHTS",
    "DigitsConfig",
    "TrainConfig",
    "accuracy",
    "build_model",
    "encode",
    "load_split",
    "load_trained",
    "readout",
    "save",
    "train",
    "trained_model",
]

#: The shipped weights: package data of ``lifexport.digits``.
WEIGHTS = resources.files(__name__).joinpath("digits.pt")


@dataclass
class DigitsConfig:
    steps: int = 32  # time steps per image
    hidden: int = 256  # LIF-refrac neurons
    max_rate: float = 0.5  # spikes per step of a pixel at full intensity (16)
    alpha: float = 10.0  # SuperSpike width: 100 (the default) lets almost no gradient through
    seed: int = 0  # weight init and batch order
    split_seed: int = 0  # the stratified train/test split (fixed, whatever the seed)


def encode(images: torch.Tensor, cfg: DigitsConfig) -> torch.Tensor:
    """Rate-code ``(B, 64)`` intensities in [0, 16] as spikes ``(T, B, 64)`` (float32)."""
    rate = cfg.max_rate * images.float() / 16.0  # (B, 64) spikes per step
    t = torch.arange(cfg.steps + 1, dtype=torch.float32).view(-1, 1, 1)  # (T + 1, 1, 1)
    counts = torch.floor(t * rate)  # spikes emitted before each step, (T + 1, B, 64)
    return (counts[1:] > counts[:-1]).float()


def build_model(cfg: DigitsConfig) -> SequentialState:
    torch.manual_seed(cfg.seed)
    return SequentialState(
        torch.nn.Linear(64, cfg.hidden),
        LIFRefrac(LIFRefracParameters(LIFParameters(method="super", alpha=cfg.alpha))),
        torch.nn.Linear(cfg.hidden, 10),
        LI(),
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
        data.data, data.target, test_size=0.2, stratify=data.target, random_state=cfg.split_seed
    )
    as_tensor = torch.as_tensor
    return (
        as_tensor(x_train, dtype=torch.float32),
        as_tensor(y_train),
        as_tensor(x_test, dtype=torch.float32),
        as_tensor(y_test),
    )


def load_trained(
    path: str | os.PathLike | None = None,
) -> tuple[SequentialState, DigitsConfig]:
    """The network and its config from a checkpoint written by :func:`save`, loaded with
    ``weights_only=True``; ``path=None`` loads the shipped weights (:data:`WEIGHTS`)."""
    if path is None:
        with WEIGHTS.open("rb") as file:
            checkpoint = torch.load(file, weights_only=True)
    else:
        checkpoint = torch.load(path, weights_only=True)
    cfg = DigitsConfig(**checkpoint["config"])
    model = build_model(cfg)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), cfg


def trained_model() -> SequentialState:
    """The shipped network (for ``lifexport export lifexport.digits:trained_model ...``)."""
    return load_trained()[0]


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg) -> float:
    with torch.no_grad():
        potentials, _ = model(encode(images, cfg))
    return (readout(potentials).argmax(1) == labels).float().mean().item()


@dataclass
class TrainConfig:
    epochs: int = 40  # passes over the training split
    batch: int = 64  # images per step (full batches only: one compiled shape)
    lr: float = 5e-3  # Adam learning rate
    compile: bool = True  # train the lifexport.compile'd model


def train(
    cfg: DigitsConfig,
    train_cfg: TrainConfig,
    progress: Callable[[int, int, str], None] = lambda done, total, text: None,
) -> tuple[SequentialState, dict]:
    """Surrogate-gradient training (SuperSpike) with Adam on the training split.

    Returns the model (eval mode) and a summary: final training loss, seconds, and the test
    accuracy measured once, after the last epoch.
    """
    x_train, y_train, x_test, y_test = load_split(cfg)
    model = build_model(cfg)
    run = lifexport_compile(model) if train_cfg.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(x_train) // train_cfg.batch
    start = time.perf_counter()
    for epoch in range(train_cfg.epochs):
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for k in range(steps_per_epoch):
            idx = order[k * train_cfg.batch : (k + 1) * train_cfg.batch]
            potentials, _ = run(encode(x_train[idx], cfg))
            loss = torch.nn.functional.cross_entropy(readout(potentials), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        progress(epoch + 1, train_cfg.epochs, f"loss {total / steps_per_epoch:.3f}")
    model.eval()
    summary = dict(
        loss=total / max(steps_per_epoch, 1),
        seconds=time.perf_counter() - start,
        test_accuracy=accuracy(model, x_test, y_test, cfg),
    )
    return model, summary


def save(model: torch.nn.Module, cfg: DigitsConfig, path: str | os.PathLike) -> None:
    """A checkpoint that :func:`load_trained` reads: the config and the state dict."""
    torch.save({"config": asdict(cfg), "state_dict": model.state_dict()}, path)
