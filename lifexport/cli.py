"""The ``lifexport`` command (also ``python -m lifexport``): ``demo``, ``export``, ``validate``,
``bench``.

Exit codes: 0 success, 1 a validation mismatch, 2 a usage error (bad arguments, a missing,
unreadable or unwritable file, an input of the wrong shape, a model spec that does not give a
model, a model that does not fit the file, sizes over :mod:`lifexport.limits`), reported in one
line on stderr without traceback: every ``ValueError``, ``TypeError``, ``OSError`` and
:class:`~lifexport.errors.LifexportError` a command raises is reported so. ``--json`` prints
one JSON document on stdout; progress goes to stderr. ``validate`` runs the model named by
``--model``, never code that the file names.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from lifexport._version import __version__
from lifexport.errors import LifexportError
from lifexport.limits import check_elements

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


def _load_tensor(path: str, option: str) -> Any:
    """A tensor saved with ``torch.save``, loaded with ``weights_only=True`` (no code runs)."""
    import pickle

    import torch

    try:
        value = torch.load(path, weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise UsageError(f"cannot read {option} {path!r}: {error}") from None
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{option} {path!r} holds a {type(value).__name__}, not a tensor")
    try:  # a saved view can declare any shape over a small storage
        check_elements(f"{option} {path!r}: a tensor", tuple(value.shape))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return value


@contextmanager
def _writing(path: str, option: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (through a temporary file beside it) as a
    :class:`UsageError` that names ``path``, not the temporary file."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(f"cannot write {option} {path!r}: {reason}") from None


def _number_in(text: str, low: float, high: float, what: str, open_low: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    finite = value == value and abs(value) != float("inf")
    if not (finite and (low < value if open_low else low <= value) and value <= high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _number_in(text, 0.0, float("inf"), "a positive number", open_low=True)


def _fraction(text: str) -> float:
    return _number_in(text, 0.0, 1.0, "a number in [0, 1]", open_low=False)


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
    try:
        check_elements("an input", shape)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return shape


def _folder(text: str) -> str:
    """A folder to write into: missing (it is created) or a folder, not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a folder (created if missing), got {text!r}, which is a file"
        )
    return text


def _provider(text: str) -> str:
    """An onnxruntime execution provider name; one it does not know names those it has."""
    import onnxruntime as ort

    if text in ort.get_all_providers():
        return text
    available = ort.get_available_providers()
    close = difflib.get_close_matches(text, ort.get_all_providers(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(
        f"unknown onnxruntime execution provider {text!r}{hint} (available here: "
        f"{', '.join(available)})"
    )


def _check_like_shape(tensor: torch.Tensor, args: argparse.Namespace, option: str) -> None:
    """``tensor`` must have ``--shape``'s sizes after time and batch (or batch, for a step
    graph): T and B may differ."""
    lead = 1 if args.graph == "step" else 2
    pattern = ("B" if lead == 1 else "T, B") + "".join(f", {n}" for n in args.shape[lead:])
    shape = tuple(tensor.shape)
    if len(shape) != len(args.shape) or shape[lead:] != args.shape[lead:]:
        raise UsageError(
            f"{option} holds a tensor of shape {shape}; expected ({pattern}), as --shape "
            f"{','.join(map(str, args.shape))} (T and B may differ)"
        )


def _check_output(path: Path) -> None:
    """The file to write must name a file in a folder that exists."""
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        problem = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"output {str(path)!r}: its folder {str(path.parent)!r} {problem}")


def _check_layer_sizes(model: torch.nn.Module, shape: tuple[int, ...], graph: str) -> None:
    """Every layer of ``model`` (a stack read from a file) must take its input and give an
    output within :mod:`lifexport.limits` for an input of ``shape``: computed on the meta
    device, sizes only, before export runs the model."""
    import torch
    from torch.func import functional_call

    from lifexport.modules import NeuronModule
    from lifexport.modules.sequential import check_fits

    lead = 1 if graph == "step" else 2
    h = torch.empty((shape[lead - 1], *shape[lead:]), device="meta")  # one step (B, ...)
    for index, layer in enumerate(model):
        check_fits(model, index, (*shape[: lead - 1], *h.shape))
        if isinstance(layer, NeuronModule):
            h = torch.empty(layer.output_shape(h.shape), device="meta")
        else:
            tensors = {
                name: torch.empty_like(t, device="meta")
                for name, t in (*layer.named_parameters(), *layer.named_buffers())
            }
            try:
                h = functional_call(layer, tensors, (h,))
            except RuntimeError as error:
                raise UsageError(
                    f"--shape {','.join(map(str, shape))}: layer {index} "
                    f"({type(layer).__name__}) cannot take its input of shape "
                    f"{(*shape[: lead - 1], *h.shape)}: {error}"
                ) from None
        try:
            check_elements(
                f"layer {index} ({type(layer).__name__})'s output", (*shape[: lead - 1], *h.shape)
            )
        except ValueError as error:
            raise UsageError(f"--shape {','.join(map(str, shape))}: {error}") from None


def _check_model_fits(model: torch.nn.Module, info: Any, args: argparse.Namespace) -> None:
    """The ``--model`` must take one step of the file's input (one sample): else the file
    came from another model, a usage error rather than a validation mismatch."""
    import torch

    from lifexport.modules import step_module

    step = step_module(model)
    if not hasattr(step, "initial_state"):
        return  # not a lifexport model: validate says so
    shape = (1, *info.contract.feature_shape)
    try:
        with torch.no_grad():
            step.initial_state(torch.zeros(shape, dtype=info.dtype))
    except (ValueError, TypeError, RuntimeError) as error:
        raise UsageError(
            f"--model {args.model} does not fit {args.onnx!r}, whose input is "
            f"({'B' if info.contract.kind == 'step' else 'T, B'}"
            f"{''.join(f', {n}' for n in info.contract.feature_shape)}): {error}; validate the "
            "model that was exported"
        ) from None


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
    from lifexport.graph import SOURCE_KEY

    if (args.quantize is None) != (args.calibration is None):
        raise UsageError("--quantize int8 and --calibration FILE go together")
    _check_output(Path(args.output))
    calibration = None
    if args.calibration is not None:
        calibration = _load_tensor(args.calibration, "--calibration")
        _check_like_shape(calibration, args, "--calibration")
    model = _load_model(args.model)
    example = torch.zeros(args.shape)
    with _writing(args.output, "output"):
        exported = to_onnx(
            model,
            example,
            args.output,
            graph=args.graph,
            mode=args.mode,
            with_state=not args.no_state,
            metadata={SOURCE_KEY: args.model},  # a hint for `lifexport validate`
            quantize=args.quantize,
            calibration=calibration,
        )
    data = {
        "path": str(exported.path),
        "graph": exported.graph,
        "mode": exported.mode,
        "inputs": list(exported.input_names),
        "outputs": list(exported.output_names),
    }
    quantized = f", {exported.contract.quantize}" if exported.contract.quantize else ""
    text = (
        f"wrote {exported.path} ({exported.graph} graph, {exported.mode}{quantized})\n"
        f"  inputs:  {', '.join(exported.input_names)}\n"
        f"  outputs: {', '.join(exported.output_names)}"
    )
    _emit(args, data, text)
    return EXIT_OK


def cmd_nir_export(args: argparse.Namespace) -> int:
    """A lifexport model to a NIR file (written atomically)."""
    import tempfile

    from lifexport.nir import to_nir

    output = Path(args.output)
    _check_output(output)
    model = _load_model(args.model)
    try:
        graph = to_nir(model, args.dt, input_shape=args.input_shape)  # says how to get nir
    except ImportError as error:
        raise UsageError(str(error)) from None
    import nir

    temporary = None
    with _writing(args.output, "output"):
        try:
            handle, temporary = tempfile.mkstemp(
                dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"
            )
            os.close(handle)
            nir.write(temporary, graph)
            os.replace(temporary, output)
        finally:
            if temporary is not None and os.path.exists(temporary):
                os.unlink(temporary)
    nodes = {name: type(node).__name__ for name, node in graph.nodes.items()}
    _emit(args, {"path": str(output), "nodes": nodes}, f"wrote {output}: {len(nodes)} NIR nodes")
    return EXIT_OK


def cmd_nir_import(args: argparse.Namespace) -> int:
    """A NIR file to an ONNX file, through lifexport's layers (the NIR file runs no code)."""
    import torch

    from lifexport.export import to_onnx
    from lifexport.nir import from_nir, read_nir

    source = Path(args.nir)
    if not source.is_file():
        raise UsageError(f"nir file {args.nir!r} does not exist")
    _check_output(Path(args.output))
    try:
        graph = read_nir(source)  # within lifexport.limits, before reading any data
    except ImportError as error:
        raise UsageError(str(error)) from None
    model = from_nir(graph, args.dt)
    _check_layer_sizes(model, args.shape, args.graph)
    with _writing(args.output, "output"):
        exported = to_onnx(model, torch.zeros(args.shape), args.output, graph=args.graph)
    layers = [type(m).__name__ for m in model]
    text = f"read {source} as {', '.join(layers)}; wrote {exported.path} ({exported.graph} graph)"
    _emit(args, {"layers": layers, "path": str(exported.path)}, text)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a file against the model the user names: never code that the file names."""
    from lifexport.validation import read_graph, validate

    info = read_graph(args.onnx)  # a missing, non-ONNX or non-lifexport file: one line
    if args.model is None:
        # The recorded source is text from the file: shown (quoted) as a hint, never imported.
        hint = f"; the file says it was exported from {info.source!r}" if info.source else ""
        raise UsageError(
            "pass --model package.module:function, the torch model to compare the graph "
            f"with{hint}"
        )
    inputs = None if args.input is None else _load_tensor(args.input, "--input")
    if inputs is None:  # the drive validate makes: --steps (default 200) x the file's B, ...
        steps = 200 if args.steps is None else args.steps
        drive = (steps, info.contract.batch, *info.contract.feature_shape)
        try:
            check_elements(f"the drive for {args.onnx!r}", drive)
        except ValueError as error:
            raise UsageError(f"--steps {steps}: {error}") from None
    model = _load_model(args.model)
    _check_model_fits(model, info, args)
    try:
        report = validate(
            model,
            info.path,
            inputs,
            tuple(args.providers),
            steps=args.steps,
            precision=args.precision,
            flip_budget=args.flip_budget,
        )
    except RuntimeError as error:  # torch's, running a model that does not fit the file
        raise UsageError(
            f"--model {args.model} does not fit {args.onnx!r}: {error}; validate the model that "
            "was exported"
        ) from None
    _emit(args, report.to_dict(), report.format())
    return EXIT_OK if report.passed else EXIT_MISMATCH


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure and print the markdown tables (``--json``: one document); progress on stderr.
    Exit 1 when a measurement raised (the others are still printed)."""
    from lifexport import _bench

    cfg = _bench.Config(**{f.name: getattr(args, f.name) for f in fields(_bench.Config)})
    problem = _bench.device_problem(cfg.device)
    if problem:  # before any work: `--device cuda` where torch sees no GPU
        raise UsageError(
            f"argument --device: expected a device torch can use here, got {cfg.device!r}: "
            f"{problem}"
        )
    result = _bench.bench(cfg, log=lambda line: print(line, file=sys.stderr, flush=True))
    _emit(args, result.to_dict(), result.format())
    if result.failures:  # the other rows are printed; the run as a whole did not succeed
        print(
            f"lifexport bench: {len(result.failures)} measurement(s) failed: "
            f"{_one_line('; '.join(result.failures))}",
            file=sys.stderr,
        )
        return EXIT_MISMATCH
    return EXIT_OK


# -- parser -----------------------------------------------------------------------------


def _command(commands, name: str, help: str, run: Callable) -> argparse.ArgumentParser:
    sub = commands.add_parser(name, help=help, description=help)
    sub.add_argument("--json", action="store_true", help="print one JSON document")
    sub.set_defaults(run=run)
    return sub


def _providers(sub: argparse.ArgumentParser) -> None:
    from lifexport.validation import PROVIDERS

    sub.add_argument(
        "--providers",
        nargs="+",
        type=_provider,
        default=list(PROVIDERS),
        metavar="PROVIDER",
        help="onnxruntime execution providers (default: CPU and CUDA; an unavailable one "
        "is reported, not dropped)",
    )


def _add_demo(commands) -> None:
    demo = _command(
        commands,
        "demo",
        "digits end to end: accuracy in torch and onnxruntime, export, parity, speed, raster",
        cmd_demo,
    )
    demo.add_argument("--train", action="store_true", help="train from scratch first")
    demo.add_argument(
        "--epochs", type=_positive_int, default=40, help="epochs with --train (default 40)"
    )
    demo.add_argument(
        "--out", type=_folder, default="out", help="folder for the ONNX files and the picture"
    )
    _providers(demo)


def _add_export(commands) -> None:
    export = _command(commands, "export", "export a lifexport model to ONNX", cmd_export)
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
    export.add_argument(
        "--quantize", choices=("int8",), help="int8 Linear/Conv weights (QDQ); needs --calibration"
    )
    export.add_argument(
        "--calibration",
        metavar="FILE",
        help="with --quantize: a tensor file (torch.save) of typical input, shaped like --shape",
    )


def _add_validate(commands) -> None:
    check = _command(
        commands,
        "validate",
        "run an exported file in onnxruntime against eager torch",
        cmd_validate,
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
    check.add_argument(
        "--precision",
        choices=("strict", "deployment"),
        default=None,
        help="strict: the graph in its dtype, CUDA without TF32; deployment: the providers' "
        "own settings against a float32 reference, judged on --flip-budget (default: "
        "deployment for an int8 file, else strict)",
    )
    check.add_argument(
        "--flip-budget",
        type=_fraction,
        default=0.01,
        help="deployment precision: the largest fraction of differing spikes that passes "
        "(default 0.01)",
    )
    _providers(check)


def _add_nir(commands) -> None:
    nir = commands.add_parser(
        "nir", help="NIR files: write one from a model, or turn one into ONNX",
        description="NIR (neuromorphic intermediate representation) in and out",
    )
    directions = nir.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    out = _command(directions, "export", "write a lifexport model as a NIR file", cmd_nir_export)
    out.add_argument("model", help="package.module:function returning the model")
    out.add_argument("output", help="the .nir file to write")
    out.add_argument("--input-shape", type=_shape, help="features of one sample, e.g. 2,34,34 "
                     "(needed when the model starts with a Conv)")
    into = _command(
        directions,
        "import",
        "read a NIR file into lifexport layers and export ONNX",
        cmd_nir_import,
    )
    into.add_argument("nir", help="a .nir file")
    into.add_argument("output", help="the .onnx file to write")
    into.add_argument(
        "--shape", type=_shape, required=True, help="example input shape, e.g. 32,1,64"
    )
    into.add_argument("--graph", choices=("sequence", "step"), default="sequence")
    for sub in (out, into):
        sub.add_argument(
            "--dt", type=_positive_float, default=1e-3, help="seconds per step (default 0.001)"
        )


def _add_bench(commands) -> None:
    from lifexport._bench import DEVICES, Config

    bench = _command(
        commands, "bench", "speed: eager, compiled, onnxruntime, Norse, floors", cmd_bench
    )
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
    bench.add_argument(
        "--device",
        choices=DEVICES,
        default=default.device,
        help=f"where torch runs, and onnxruntime's CUDA EP with cuda (default {default.device})",
    )
    for name, help in (
        ("norse", "include Norse 1.1.0 when it is installed"),
        ("onnxruntime", "include the onnxruntime rows"),
        ("compiled", "include the lifexport.compile rows (each graph compiles first)"),
        ("memory", "measure the peak memory of one W1 forward+backward per variant"),
        ("spikingjelly", "add SpikingJelly's Triton LIF vs lifexport LIF at T=32 B=64 N=65536"),
    ):
        bench.add_argument(
            f"--{name}",
            action=argparse.BooleanOptionalAction,
            default=getattr(default, name),
            help=f"{help} (default: {'yes' if getattr(default, name) else 'no'})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lifexport",
        description="LIF-refrac spiking networks: export to ONNX, validate in onnxruntime, bench.",
        epilog="exit codes: 0 ok, 1 validation mismatch or failed measurement, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"lifexport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_export, _add_validate, _add_nir, _add_bench):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, (args.command, getattr(args, "direction", None))))
    try:
        return args.run(args)
    except (UsageError, ValueError, TypeError, LifexportError) as error:
        # What the API raises for bad arguments or files (its documented errors), and ours.
        message = str(error)
    except OSError as error:  # a file that cannot be read or written
        message = str(error)
        if error.filename is not None:
            message = f"{error.filename!r}: {error.strerror or error}"
    print(f"lifexport {command}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
