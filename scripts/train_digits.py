"""Train the digits network of lifexport.digits and save its weights where --out says.

    .venv/bin/python scripts/train_digits.py --out lifexport/digits/digits.pt    # the shipped ones
    .venv/bin/python scripts/train_digits.py --epochs 2 --out /tmp/d.pt --no-compile --seed 1

Surrogate-gradient training (SuperSpike) with Adam on the 80% training split; the 20% test
split is evaluated once, after the last epoch. Seeded: the same command gives the same weights
on the same machine. ``lifexport.digits.load_trained(path)`` reads the file back.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from lifexport.cli import progress_bar
from lifexport.digits import DigitsConfig, TrainConfig, save, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field, default in asdict(TrainConfig()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--no-{field}", dest=field, action="store_false")
        else:
            parser.add_argument(f"--{field}", type=type(default), default=default)
    parser.add_argument("--seed", type=int, default=0, help="weight init and batch order")
    parser.add_argument(
        "--out",
        required=True,
        help="where the weights go (lifexport/digits/digits.pt replaces the shipped ones)",
    )
    args = vars(parser.parse_args())
    cfg = DigitsConfig(seed=args.pop("seed"))
    out = args.pop("out")
    model, summary = train(cfg, TrainConfig(**args), progress_bar)
    print(
        f"trained in {summary['seconds']:.0f} s; final loss {summary['loss']:.4f}; "
        f"test accuracy {100 * summary['test_accuracy']:.2f}%"
    )
    save(model, cfg, Path(out))
    print(f"weights written to {out}")


if __name__ == "__main__":
    main()
