"""Cost of one ``lifexport.runtime.Session.step`` against a hand-written onnxruntime loop on the
same step graph (LIF-refrac, CPU execution provider): the median time of a step, each.

    .venv/bin/python scripts/bench_runtime.py                   # B=1, N=512, 20 x 500 steps
    .venv/bin/python scripts/bench_runtime.py --n 4096 --b 32   # bigger shapes

The hand loop is what a deployer writes without the runtime: ``session.run`` with the state
fed as a dict and the next state taken from the outputs. Both run the same file, interleaved
in rounds so that drifts of the machine hit both alike; the ratio is Session / hand loop.
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
from lifexport.runtime import Session


@dataclass
class Config:
    b: int = 1  # batch rows
    n: int = 512  # neurons
    steps: int = 500  # steps per round and way
    rounds: int = 20  # rounds, alternating the two ways
    threads: int = 1  # onnxruntime intra-op threads of both sessions


def hand_loop(path: Path, xs: np.ndarray, threads: int) -> tuple[list[float], np.ndarray]:
    """The loop a deployer writes by hand; the state at rest from the file's metadata."""
    options = _options(threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    contract = lifexport.read_graph(path).contract
    state = {
        name: np.broadcast_to(
            np.float32(value.values).reshape(value.shape), (xs.shape[1], *xs.shape[2:])
        ).copy()
        for name, value in contract.initial_state.items()
    }
    names = contract.state_names
    times, ys = [], []
    for x in xs:
        start = time.perf_counter()
        y, *next_state = session.run(None, {"x": x, **state})
        state = dict(zip(names, next_state))
        times.append(time.perf_counter() - start)
        ys.append(y)
    return times, np.stack(ys)


def runtime_loop(session: Session, xs: np.ndarray) -> tuple[list[float], np.ndarray]:
    times, ys = [], []
    for x in xs:
        start = time.perf_counter()
        y = session.step(x)
        times.append(time.perf_counter() - start)
        ys.append(y)
    return times, np.stack(ys)


def main(config: Config) -> None:
    torch.manual_seed(0)
    model = lifexport.LIFRefrac()
    folder = Path(tempfile.mkdtemp())
    path = lifexport.to_onnx(model, torch.rand(config.b, config.n), folder / "s.onnx", graph="step")
    path = path.path
    rng = np.random.default_rng(0)
    xs = (rng.random((config.steps, config.b, config.n)) * 3).astype(np.float32)
    hand, ours = [], []
    for _ in range(config.rounds):
        times, expected = hand_loop(path, xs, config.threads)
        hand += times
        session = Session(path, session_options=_options(config.threads))
        times, ys = runtime_loop(session, xs)
        ours += times
        np.testing.assert_array_equal(ys, expected)  # the same spikes, bit for bit
    hand_us, ours_us = statistics.median(hand) * 1e6, statistics.median(ours) * 1e6
    print(
        f"LIF-refrac step graph, B={config.b}, N={config.n}, CPU EP, "
        f"{config.threads} thread(s), median of {len(hand)} steps each:"
    )
    print(f"  hand-written onnxruntime loop  {hand_us:8.2f} us/step")
    print(f"  lifexport.runtime.Session.step {ours_us:8.2f} us/step")
    print(f"  ratio Session / hand loop      {ours_us / hand_us:8.2f}")


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return options


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Config()).items():
        parser.add_argument(f"--{name}", type=int, default=default)
    main(Config(**vars(parser.parse_args())))
