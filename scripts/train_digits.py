"""Train the digits network of models/digits.py and save its weights.

    .venv/bin/python scripts/train_digits.py                 # 40 epochs, writes models/digits.pt
    .venv/bin/python scripts/train_digits.py --epochs 2 --out /tmp/d.pt --no-compile

Surrogate-gradient training (SuperSpike) with Adam on the 80% training split; the 20% test
split is evaluated once, after the last epoch. Seeded: the same command gives the same weights
on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lifexport  # noqa: E402
from models.digits import (  # noqa: E402
    WEIGHTS,
    DigitsConfig,
    accuracy,
    build_model,
    encode,
    load_split,
    readout,
)


@dataclass
class TrainConfig:
    epochs: int = 40  # passes over the training split
    batch: int = 64  # images per step
    lr: float = 5e-3  # Adam learning rate
    compile: bool = True  # train the lifexport.compile'd model
    out: str = str(WEIGHTS)  # where the weights go
    seed: int = 0  # model init, batch order and data split


def progress(done: int, total: int, text: str) -> None:
    width = 30
    filled = width * done // total
    end = "\n" if done == total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}", end=end, flush=True)


def train(train_cfg: TrainConfig, cfg: DigitsConfig | None = None):
    """Train and save; returns ``(model, test accuracy)``."""
    cfg = cfg or DigitsConfig(seed=train_cfg.seed)
    x_train, y_train, x_test, y_test = load_split(cfg)
    model = build_model(cfg)
    run = lifexport.compile(model) if train_cfg.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(x_train) // train_cfg.batch  # full batches only: one compiled shape
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
    elapsed = time.perf_counter() - start
    test_acc = accuracy(model, x_test, y_test, cfg)
    print(f"trained in {elapsed:.0f} s; test accuracy {100 * test_acc:.2f}% ({len(x_test)} images)")
    torch.save({"config": asdict(cfg), "state_dict": model.state_dict()}, train_cfg.out)
    print(f"weights written to {train_cfg.out}")
    return model, test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field, default in asdict(TrainConfig()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--no-{field}", dest=field, action="store_false")
        else:
            parser.add_argument(f"--{field}", type=type(default), default=default)
    train(TrainConfig(**vars(parser.parse_args())))


if __name__ == "__main__":
    main()
