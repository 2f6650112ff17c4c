"""int8 QDQ vs float on the digits network: test accuracy, file size and CPU EP latency.

    .venv/bin/python scripts/bench_int8.py                  # shipped weights, defaults below
    .venv/bin/python scripts/bench_int8.py --repeats 50 --batch 1

Exports the shipped digits network (Linear(64, 256) -> LIFRefrac -> Linear(256, 10) -> LI,
T = 32) as a float32 sequence graph and as ``to_onnx(quantize="int8")`` calibrated on
training images, and reports both files on onnxruntime's CPU execution provider.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import lifexport
from lifexport.digits import encode, load_split, load_trained
from lifexport.validation import make_session


@dataclass
class BenchConfig:
    calibration: int = 256  # training images used for calibration
    batch: int = 1  # images per timed run (latency of one sample)
    repeats: int = 200  # timed runs per model; the median is reported
    warmup: int = 20  # untimed runs first
    threads: int = 1  # onnxruntime intra-op threads


def accuracy(sess: ort.InferenceSession, xs: np.ndarray, labels: np.ndarray) -> float:
    potentials = sess.run(["y"], {"x": xs})[0]  # (T, N, 10)
    return float((potentials.max(axis=0).argmax(axis=1) == labels).mean())


def latency_ms(sess: ort.InferenceSession, x: np.ndarray, cfg: BenchConfig) -> float:
    for _ in range(cfg.warmup):
        sess.run(["y"], {"x": x})
    times = []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        sess.run(["y"], {"x": x})
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(cfg: BenchConfig) -> None:
    model, dcfg = load_trained()
    x_train, _, x_test, y_test = load_split(dcfg)
    xs_test = encode(x_test, dcfg).numpy()  # (T, N, 64)
    with torch.no_grad():
        eager = lifexport.digits.accuracy(model, x_test, y_test, dcfg)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "digits.onnx"
        int8 = Path(tmp) / "digits.int8.onnx"
        example = encode(x_test[:2], dcfg)
        lifexport.to_onnx(model, example, fp32, with_state=False)
        calibration = encode(x_train[: cfg.calibration], dcfg)
        lifexport.to_onnx(
            model, example, int8, with_state=False, quantize="int8", calibration=calibration
        )
        sizes = {p.name: p.stat().st_size for p in (fp32, int8)}
        files = {"float32": fp32, "int8": int8}
        sessions = {name: make_session(p, threads=cfg.threads) for name, p in files.items()}
        x = xs_test[:, : cfg.batch]
        rows = []
        for name, sess in sessions.items():
            acc = accuracy(sess, xs_test, y_test.numpy())
            rows.append((name, acc, latency_ms(sess, x, cfg)))
    print(f"digits test split: {len(y_test)} images, T={dcfg.steps}; eager torch {eager:.4f}")
    print(f"files: float32 {sizes['digits.onnx']} B, int8 {sizes['digits.int8.onnx']} B, "
          f"ratio {sizes['digits.int8.onnx'] / sizes['digits.onnx']:.3f}")
    print(f"CPU EP, {cfg.threads} thread(s), batch {cfg.batch}, median of {cfg.repeats}:")
    for name, acc, ms in rows:
        print(f"  {name:8s} accuracy {acc:.4f}  latency {ms:.3f} ms")
    print(f"  accuracy difference (int8 - float32): {100 * (rows[1][1] - rows[0][1]):+.2f} points")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field, default in BenchConfig.__dataclass_fields__.items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=default.default)
    main(BenchConfig(**vars(parser.parse_args())))
