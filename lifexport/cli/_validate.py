"""``lifexport validate``: an exported file against the model the user names, never code that
the file names."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from lifexport.cli import _load
from lifexport.cli._arguments import add_providers, command, fraction, positive_int
from lifexport.cli._common import EXIT_MISMATCH, EXIT_OK, UsageError, emit
from lifexport.limits import check_elements

if TYPE_CHECKING:
    import torch


def check_model_fits(model: torch.nn.Module, info: Any, args: argparse.Namespace) -> None:
    """The ``--model`` must take one step of the file's input (one sample): else the file
    came from another model, a usage error rather than a validation mismatch."""
    import torch

    from lifexport.modules import step_module

    step = step_module(model)
    if not hasattr(step, "initial_state"):
        return  # not a lifexport model: validate says so
    sample = (1, *info.contract.feature_shape)
    try:
        with torch.no_grad():
            step.initial_state(torch.zeros(sample, dtype=info.dtype))
    except (ValueError, TypeError, RuntimeError) as error:
        raise UsageError(
            f"--model {args.model} does not fit {args.onnx!r}, whose input is "
            f"({'B' if info.contract.kind == 'step' else 'T, B'}"
            f"{''.join(f', {n}' for n in info.contract.feature_shape)}): {error}; validate the "
            "model that was exported"
        ) from None


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate a file against the model the user names: never code that the file names."""
    from lifexport.validation import read_graph, validate

    info = read_graph(args.onnx)  # a missing, non-ONNX or non-lifexport file: one line
    if args.model is None:
        # The recorded source is text from the file: shown (quoted) as a hint, never imported.
        hint = f"; the file says it was exported from {info.source!r}" if info.source else ""
        raise UsageError(
            f"pass --model package.module:function, the torch model to compare the graph with{hint}"
        )
    inputs = None if args.input is None else _load.load_tensor(args.input, "--input")
    if inputs is None:  # the drive validate makes: --steps (default 200) x the file's B, ...
        steps = 200 if args.steps is None else args.steps
        drive = (steps, info.contract.batch, *info.contract.feature_shape)
        try:
            check_elements(f"the drive for {args.onnx!r}", drive)
        except ValueError as error:
            raise UsageError(f"--steps {steps}: {error}") from None
    model = _load.load_model(args.model)
    check_model_fits(model, info, args)
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
    emit(args, report.to_dict(), report.format())
    return EXIT_OK if report.passed else EXIT_MISMATCH


def add_validate(commands) -> None:
    check = command(
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
        "--steps", type=positive_int, default=None, help="time steps of the drive (default 200)"
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
        type=fraction,
        default=0.01,
        help="deployment precision: the largest fraction of differing spikes that passes "
        "(default 0.01)",
    )
    add_providers(check)
