"""The ``lifexport`` command (also ``python -m lifexport``): ``demo``, ``export``, ``validate``,
``bench``.

Exit codes: 0 success, 1 a validation mismatch, 2 a usage error (bad arguments, a missing or
unreadable file, an input of the wrong shape, a model spec that does not give a model), reported
in one line on stderr without traceback. ``--json`` prints one JSON document on stdout;
progress goes to stderr. ``validate`` runs the model named by ``--model``, never code that the
file names.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lifexport._version import __version__

if TYPE_CHECKING:
    import torch

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake of the caller's: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line, ``lifexport <command>: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


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


def _load_model(spec: str) -> torch.nn.Module:
    """``package.module:function`` -> the torch module that the function returns.

    Every way the named code can fail (it does not import, is not a function, needs arguments,
    raises, returns something else) is the caller's to fix: a :class:`UsageError`.
    """
    import torch

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"model spec must look like package.module:function, got {spec!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:  # as `python -m` does, so that a module beside the user is found
        sys.path.insert(0, cwd)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load model spec {spec!r}: {error}") from None
    except Exception as error:  # the user's module failed while importing
        raise UsageError(
            f"cannot load model spec {spec!r}: importing {module_name} raised "
            f"{type(error).__name__}: {error}"
        ) from None
    if not callable(factory):
        raise UsageError(
            f"{spec} is not callable (a {type(factory).__name__}); name a function that "
            "returns the model"
        )
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise UsageError(
            f"{spec} takes arguments {inspect.signature(factory)}; name a function that "
            "builds the model with no arguments"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): calling it will tell
        pass
    try:
        model = factory()
    except Exception as error:  # the user's code: report it, do not crash with its traceback
        raise UsageError(
            f"cannot build the model from {spec}: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{spec} returned {type(model).__name__}, not a torch module")
    return model


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def _count(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


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

    from lifexport.errors import ExportError
    from lifexport.export import to_onnx

    model = _load_model(args.model)
    example = torch.zeros(args.shape)
    try:
        exported = to_onnx(
            model,
            example,
            args.output,
            graph=args.graph,
            mode=args.mode,
            with_state=not args.no_state,
            metadata={"lifexport.source": args.model},  # a hint for `lifexport validate`
        )
    except (ExportError, ValueError, FileNotFoundError) as error:  # what to_onnx documents
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
    """Validate a file against the model the user names: never code that the file names."""
    import pickle

    import torch

    from lifexport.validation import read_graph, validate

    try:
        info = read_graph(args.onnx)  # a missing, non-ONNX or non-lifexport file: one line
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if args.model is None:
        # The recorded source is text from the file: shown (quoted) as a hint, never imported.
        hint = f"; the file says it was exported from {info.source!r}" if info.source else ""
        raise UsageError(
            "pass --model package.module:function, the torch model to compare the graph "
            f"with{hint}"
        )
    model = _load_model(args.model)
    inputs = None
    if args.input is not None:
        try:
            inputs = torch.load(args.input, weights_only=True)
        except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
            raise UsageError(f"cannot read --input {args.input!r}: {error}") from None
    try:
        report = validate(model, info.path, inputs, tuple(args.providers), steps=args.steps)
    except (ValueError, TypeError, FileNotFoundError) as error:  # what validate documents
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
    parser = _Parser(
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
        from lifexport.validation import PROVIDERS

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
    demo.add_argument(
        "--epochs", type=_positive_int, default=40, help="epochs with --train (default 40)"
    )
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
        metavar="MODULE:FUNCTION",
        help="required: package.module:function returning the torch model that was exported "
        "(the file is only read; no code it names is imported)",
    )
    check.add_argument("--input", help="a tensor file (torch.save) to drive the model with")
    check.add_argument(
        "--steps", type=_positive_int, default=None, help="time steps of the drive (default 200)"
    )
    providers(check)

    bench = command("bench", "speed: eager, compiled, onnxruntime, Norse, floors", cmd_bench)
    from lifexport._bench import Config

    default = Config()
    for name, kind, help in (  # one option per Config field
        ("t", _positive_int, "time steps"),
        ("b", _positive_int, "batch"),
        ("n", _positive_int, "neurons (and Linear width)"),
        ("repeats", _positive_int, "timed runs per figure (the median is reported)"),
        ("warmup", _count, "untimed runs first"),
        ("threads", _count, "torch and onnxruntime threads; 0 keeps torch's default"),
    ):
        bench.add_argument(
            f"--{name}",
            type=kind,
            default=getattr(default, name),
            help=f"{help} (default {getattr(default, name)})",
        )
    for name, help in (
        ("norse", "include Norse 1.1.0 when it is installed"),
        ("onnxruntime", "include the onnxruntime rows"),
    ):
        bench.add_argument(
            f"--{name}",
            action=argparse.BooleanOptionalAction,
            default=getattr(default, name),
            help=f"{help} (default: yes)" if getattr(default, name) else help,
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"lifexport {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
