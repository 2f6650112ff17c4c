"""``lifexport export``: a model named by its spec to an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lifexport.cli import _load
from lifexport.cli._arguments import command, sizes
from lifexport.cli._common import EXIT_OK, UsageError, check_output, emit, writing

if TYPE_CHECKING:
    import torch


def check_like_shape(tensor: torch.Tensor, args: argparse.Namespace, option: str) -> None:
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


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from lifexport.export import to_onnx
    from lifexport.graph import SOURCE_KEY

    if (args.quantize is None) != (args.calibration is None):
        raise UsageError("--quantize int8 and --calibration FILE go together")
    check_output(Path(args.output))
    calibration = None
    if args.calibration is not None:
        calibration = _load.load_tensor(args.calibration, "--calibration")
        check_like_shape(calibration, args, "--calibration")
    model = _load.load_model(args.model)
    example = torch.zeros(args.shape)
    with writing(args.output, "output"):
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
            masks=args.masks,
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
    emit(args, data, text)
    return EXIT_OK


def add_export(commands) -> None:
    export = command(commands, "export", "export a lifexport model to ONNX", cmd_export)
    export.add_argument("model", help="package.module:function returning the model")
    export.add_argument("output", help="the .onnx file to write")
    export.add_argument(
        "--shape",
        type=sizes,
        required=True,
        help="example input shape, e.g. 32,1,64 (T,B,features) for a sequence",
    )
    export.add_argument("--graph", choices=("sequence", "step"), default="sequence")
    export.add_argument("--mode", choices=("inference", "training"), default="inference")
    export.add_argument(
        "--masks",
        choices=("arithmetic", "select"),
        default="arithmetic",
        help="inference: 0/1 masks as arithmetic (faster on the CPU provider) or as Where "
        "(fewer nodes per step)",
    )
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
