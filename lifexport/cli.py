"""The ``lifexport`` command.

    lifexport demo [--steps T] [--neurons N] [--compile]

Exit codes: 0 success, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from lifexport import __version__
from lifexport.functional import (
    LIFFeedForwardState,
    LIFParameters,
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    lif_refrac_feed_forward_step,
)


def _simulate(steps: int, neurons: int, compile: bool, dt: float = 0.001):
    """Drive LIF-refrac neurons with noisy input currents from 0 to 0.6, one level each."""
    p = LIFRefracParameters(LIFParameters(), rho_reset=5.0)
    step = lif_refrac_feed_forward_step
    if compile:
        step = torch.compile(step, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    current = torch.linspace(0.0, 0.6, neurons)  # (N,): one input level per neuron
    drive = current + 0.1 * torch.randn(steps, 1, neurons, generator=gen)  # (T, 1, N)
    zero = torch.zeros(1, neurons)
    state = LIFRefracFeedForwardState(LIFFeedForwardState(zero, zero), zero)
    spikes, refractory = [], []
    start = time.perf_counter()
    for x in drive:
        refractory.append(state.rho > 0)
        z, state = step(x, state, p, dt)
        spikes.append(z)
    elapsed = time.perf_counter() - start
    return current, torch.cat(spikes), torch.cat(refractory), elapsed


def _min_interval(spikes: torch.Tensor) -> int | None:
    """The shortest number of steps between two spikes of one neuron, if any neuron spiked twice."""
    best = None
    for column in spikes.T:
        times = column.nonzero().flatten()
        if len(times) > 1:
            gap = int(times.diff().min())
            best = gap if best is None else min(best, gap)
    return best


def demo(args: argparse.Namespace) -> int:
    dt = 0.001
    current, spikes, refractory, elapsed = _simulate(args.steps, args.neurons, args.compile, dt)
    rates = spikes.mean(0) / dt  # (N,) in Hz
    print(
        f"lifexport {__version__}: {args.neurons} LIF-refrac neurons, {args.steps} steps of "
        f"{dt * 1e3:g} ms ({'compiled' if args.compile else 'eager'}, {elapsed:.2f} s)"
    )
    print(
        f"spikes: {int(spikes.sum())} in all, mean rate {rates.mean():.1f} Hz, "
        f"{100 * spikes.any(0).float().mean():.0f}% of neurons spiked"
    )
    print(
        f"refractory: {100 * refractory.float().mean():.1f}% of neuron-steps; shortest "
        f"inter-spike interval {_min_interval(spikes)} steps (rho_reset 5 + 1 allows 6)"
    )
    print("rate by input current (f-I curve):")
    for chunk_current, chunk_rate in zip(current.chunk(6), rates.chunk(6)):
        lo, hi = chunk_current[0].item(), chunk_current[-1].item()
        bar = "#" * int(chunk_rate.mean() / 10)
        print(f"  I in [{lo:4.2f}, {hi:4.2f}]: {chunk_rate.mean():6.1f} Hz {bar}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifexport", description="LIF-refrac spiking neurons: simulate, export, validate."
    )
    parser.add_argument("--version", action="version", version=f"lifexport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "demo", help="simulate a layer of LIF-refrac neurons, print spike statistics"
    )
    p.add_argument("--steps", type=_positive_int, default=1000, help="time steps (default 1000)")
    p.add_argument("--neurons", type=_positive_int, default=600, help="neurons (default 600)")
    p.add_argument("--compile", action="store_true", help="run the step under torch.compile")
    p.set_defaults(run=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
