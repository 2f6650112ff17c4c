"""``lifexport nir export|import``: NIR files in and out."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lifexport.cli import _load
from lifexport.cli._arguments import command, positive_float, sizes
from lifexport.cli._common import EXIT_OK, UsageError, check_output, emit, writing
from lifexport.limits import check_elements

if TYPE_CHECKING:
    import torch


def check_layer_sizes(model: torch.nn.Module, shape: tuple[int, ...], graph: str) -> None:
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


def cmd_nir_export(args: argparse.Namespace) -> int:
    """A lifexport model to a NIR file (written atomically)."""
    import tempfile

    from lifexport.nir import to_nir

    output = Path(args.output)
    check_output(output)
    model = _load.load_model(args.model)
    try:
        graph = to_nir(model, args.dt, input_shape=args.input_shape)  # says how to get nir
    except ImportError as error:
        raise UsageError(str(error)) from None
    import nir

    temporary = None
    with writing(args.output, "output"):
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
    emit(args, {"path": str(output), "nodes": nodes}, f"wrote {output}: {len(nodes)} NIR nodes")
    return EXIT_OK


def cmd_nir_import(args: argparse.Namespace) -> int:
    """A NIR file to an ONNX file, through lifexport's layers (the NIR file runs no code)."""
    import torch

    from lifexport.export import to_onnx
    from lifexport.nir import from_nir, read_nir

    source = Path(args.nir)
    if not source.is_file():
        raise UsageError(f"nir file {args.nir!r} does not exist")
    check_output(Path(args.output))
    try:
        graph = read_nir(source)  # within lifexport.limits, before reading any data
    except ImportError as error:
        raise UsageError(str(error)) from None
    model = from_nir(graph, args.dt)
    check_layer_sizes(model, args.shape, args.graph)
    with writing(args.output, "output"):
        exported = to_onnx(model, torch.zeros(args.shape), args.output, graph=args.graph)
    layers = [type(m).__name__ for m in model]
    text = f"read {source} as {', '.join(layers)}; wrote {exported.path} ({exported.graph} graph)"
    emit(args, {"layers": layers, "path": str(exported.path)}, text)
    return EXIT_OK


def add_nir(commands) -> None:
    nir = commands.add_parser(
        "nir",
        help="NIR files: write one from a model, or turn one into ONNX",
        description="NIR (neuromorphic intermediate representation) in and out",
    )
    directions = nir.add_subparsers(dest="direction", required=True, metavar="DIRECTION")
    out = command(directions, "export", "write a lifexport model as a NIR file", cmd_nir_export)
    out.add_argument("model", help="package.module:function returning the model")
    out.add_argument("output", help="the .nir file to write")
    out.add_argument(
        "--input-shape",
        type=sizes,
        help="features of one sample, e.g. 2,34,34 (needed when the model starts with a Conv)",
    )
    into = command(
        directions,
        "import",
        "read a NIR file into lifexport layers and export ONNX",
        cmd_nir_import,
    )
    into.add_argument("nir", help="a .nir file")
    into.add_argument("output", help="the .onnx file to write")
    into.add_argument(
        "--shape", type=sizes, required=True, help="example input shape, e.g. 32,1,64"
    )
    into.add_argument("--graph", choices=("sequence", "step"), default="sequence")
    for sub in (out, into):
        sub.add_argument(
            "--dt", type=positive_float, default=1e-3, help="seconds per step (default 0.001)"
        )
