"""The ``lifexport`` command: ``demo``, ``export``, ``validate``, ``bench``.

Exit codes: 0 success, 1 a validation mismatch, 2 a usage error (bad arguments, a missing or
unreadable file, an input of the wrong shape). ``--json`` prints one JSON document on stdout;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from lifexport._version import __version__

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2
PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider")


class UsageError(Exception):
    """A mistake of the caller's: reported in one line, exit code 2."""


def progress_bar(done: int, total: int, text: str = "") -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    bar = "#" * filled + "." * (width - filled)
    print(f"\r[{bar}] {done}/{total} {text}", end=end, file=sys.stderr, flush=True)


def _stages(total: int) -> Callable[[str], None]:
    count = 0

    def stage(text: str) -> None:
        nonlocal count
        count += 1
        progress_bar(count, total, text)

    return stage


def _load_callable(spec: str) -> Any:
    """``package.module:function`` -> the function's return value (a model)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"model spec must look like package.module:function, got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load model spec {spec!r}: {error}") from None
    return factory()


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 32,1,64, got {text!r}") from None
    if not shape or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 32,1,64, got {text!r}")
    return shape


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


# -- commands ---------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from lifexport._demo import format_result, run_demo

    result = run_demo(
        Path(args.out),
        train=args.train,
        epochs=args.epochs,
        providers=tuple(args.providers),
        stage=_stages(8 if args.train else 7),
        progress=progress_bar,
    )
    _emit(args, result, format_result(result))
    return EXIT_OK if result["passed"] else EXIT_MISMATCH


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from lifexport.export import to_onnx

    model = _load_callable(args.model)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{args.model} returned {type(model).__name__}, not a torch module")
    example = torch.zeros(args.shape)
    try:
        exported = to_onnx(
            model,
            example,
            args.output,
            graph=args.graph,
            mode=args.mode,
            with_state=not args.no_state,
            metadata={"lifexport.source": args.model},  # for `lifexport validate FILE`
        )
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    data = {
        "path": str(exported.path),
        "graph": exported.graph,
        "mode": exported.mode,
        "inputs": list(exported.input_names),
        "outputs": list(exported.output_names),
    }
    text = (
        f"wrote {exported.path} ({exported.graph} graph, {exported.mode})\n"
        f"  inputs:  {', '.join(exported.input_names)}\n"
        f"  outputs: {', '.join(exported.output_names)}"
    )
    _emit(args, data, text)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    import torch

    from lifexport.validation import validate
    from lifexport.validation._graph import read_graph

    try:
        info = read_graph(args.onnx)  # a missing, non-ONNX or non-lifexport file: one line
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    spec = args.model or info.source
    if spec is None:
        raise UsageError(
            f"{info.path} does not name its torch model (it was not written by `lifexport "
            "export`); pass --model package.module:function"
        )
    model = _load_callable(spec)
    inputs = None
    if args.input is not None:
        inputs = torch.load(args.input, weights_only=True)
    try:
        report = validate(model, info.path, inputs, tuple(args.providers), steps=args.steps)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    _emit(args, report.to_dict(), report.format())
    return EXIT_OK if report.passed else EXIT_MISMATCH


def cmd_bench(args: argparse.Namespace) -> int:
    from lifexport import _bench

    cfg = _bench.Config(**{f.name: getattr(args, f.name) for f in fields(_bench.Config)})
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    rows = _bench.bench(cfg, log=log)
    summary = _bench.ratios(rows)
    data = dict(config=asdict(cfg), rows=rows, ratios=summary)
    text = "ratios:\n" + "\n".join(f"  {k}: {v}" for k, v in summary.items())
    _emit(args, data, text)
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lifexport",
        description="LIF-refrac spiking networks: export to ONNX, validate in onnxruntime, bench.",
        epilog="exit codes: 0 ok, 1 validation mismatch, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"lifexport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, run: Callable) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--json", action="store_true", help="print one JSON document")
        sub.set_defaults(run=run)
        return sub

    def providers(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--providers",
            nargs="+",
            default=list(PROVIDERS),
            metavar="PROVIDER",
            help="onnxruntime execution providers (default: CPU and CUDA; an unavailable one "
            "is reported, not dropped)",
        )

    demo = command(
        "demo",
        "digits end to end: accuracy in torch and onnxruntime, export, parity, speed, raster",
        cmd_demo,
    )
    demo.add_argument("--train", action="store_true", help="train from scratch first")
    demo.add_argument("--epochs", type=int, default=40, help="epochs with --train (default 40)")
    demo.add_argument("--out", default="out", help="folder for the ONNX files and the picture")
    providers(demo)

    export = command("export", "export a lifexport model to ONNX", cmd_export)
    export.add_argument("model", help="package.module:function returning the model")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument(
        "--shape",
        type=_shape,
        required=True,
        help="example input shape, e.g. 32,1,64 (T,B,features) for a sequence",
    )
    export.add_argument("--graph", choices=("sequence", "step"), default="sequence")
    export.add_argument("--mode", choices=("inference", "training"), default="inference")
    export.add_argument(
        "--no-state",
        action="store_true",
        help="sequence graph without state inputs/outputs (starts from rest)",
    )

    check = command(
        "validate", "run an exported file in onnxruntime against eager torch", cmd_validate
    )
    check.add_argument("onnx", help="a .onnx file written by lifexport")
    check.add_argument(
        "--model",
        help="package.module:function returning the torch model "
        "(default: the one `lifexport export` recorded in the file)",
    )
    check.add_argument("--input", help="a tensor file (torch.save) to drive the model with")
    check.add_argument("--steps", type=int, default=None, help="time steps of the drive")
    providers(check)

    bench = command("bench", "speed: eager, compiled, onnxruntime, Norse, floors", cmd_bench)
    from lifexport._bench import Config

    for f in fields(Config):
        default = f.default
        if isinstance(default, bool):
            bench.add_argument(f"--no-{f.name}", dest=f.name, action="store_false")
        else:
            bench.add_argument(f"--{f.name}", type=type(default), default=default)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"lifexport {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
