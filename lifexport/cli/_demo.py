"""``lifexport demo``: the digits network end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from lifexport.cli._arguments import add_providers, command, folder, positive_int
from lifexport.cli._common import EXIT_MISMATCH, EXIT_OK, emit
from lifexport.cli._progress import progress_bar, stages


def cmd_demo(args: argparse.Namespace) -> int:
    from lifexport._demo import format_result, run_demo

    result = run_demo(
        Path(args.out),
        train=args.train,
        epochs=args.epochs,
        providers=tuple(args.providers),
        stage=stages(8 if args.train else 7),
        progress=progress_bar,
    )
    emit(args, result, format_result(result))
    return EXIT_OK if result["passed"] else EXIT_MISMATCH


def add_demo(commands) -> None:
    demo = command(
        commands,
        "demo",
        "digits end to end: accuracy in torch and onnxruntime, export, parity, speed, raster",
        cmd_demo,
    )
    demo.add_argument("--train", action="store_true", help="train from scratch first")
    demo.add_argument(
        "--epochs", type=positive_int, default=40, help="epochs with --train (default 40)"
    )
    demo.add_argument(
        "--out", type=folder, default="out", help="folder for the ONNX files and the picture"
    )
    add_providers(demo)
