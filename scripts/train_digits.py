"""Train the digits network of models/digits.py and save its weights.

    .venv/bin/python scripts/train_digits.py                 # 40 epochs, writes models/digits.pt
    .venv/bin/python scripts/train_digits.py --epochs 2 --out /tmp/d.pt --no-compile --seed 1

Surrogate-gradient training (SuperSpike) with Adam on the 80% training split; the 20% test
split is evaluated once, after the last epoch. Seeded: the same command gives the same weights
on the same machine.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifexport.cli import progress_bar  # noqa: E402
from models.digits import WEIGHTS, DigitsConfig, TrainConfig, save, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for field, default in asdict(TrainConfig()).items():
        if isinstance(default, bool):
            parser.add_argument(f"--no-{field}", dest=field, action="store_false")
        else:
            parser.add_argument(f"--{field}", type=type(default), default=default)
    parser.add_argument("--seed", type=int, default=0, help="weight init and batch order")
    parser.add_argument("--out", default=str(WEIGHTS), help="where the weights go")
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
