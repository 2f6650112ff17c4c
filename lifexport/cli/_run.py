"""``lifexport run``: an exported file on a numpy input in onnxruntime, with the state kept
(:class:`lifexport.runtime.Session`); no torch."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from lifexport.cli._arguments import command, provider
from lifexport.cli._common import EXIT_OK, UsageError, check_output, emit, writing
from lifexport.limits import check_elements


def load_array(path: str, option: str):
    """A numpy array saved with ``np.save``, read without pickles (no code runs)."""
    import numpy as np

    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # the data is not read yet
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"cannot read {option} {path!r}: {error}") from None
    if not isinstance(header, np.ndarray):
        header.close()
        raise UsageError(f"{option} {path!r} is an .npz archive; give one array saved by np.save")
    try:  # the header declares the shape: checked before the data is read
        check_elements(f"{option} {path!r}: an array", tuple(header.shape))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return np.ascontiguousarray(header)


def cmd_run(args: argparse.Namespace) -> int:
    """Run ``args.onnx`` on ``--input`` (``(T, B, ...)``) and save ``y`` to ``--out``."""
    import numpy as np

    from lifexport.runtime import Session

    out = Path(args.out)
    check_output(out)
    session = Session(args.onnx, providers=args.providers)  # a bad file: one line
    x = load_array(args.input, "--input")
    y = session.run(x)
    with writing(args.out, "--out"):
        handle, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, y, allow_pickle=False)
            os.replace(temporary, out)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    data = {
        "out": str(out),
        "shape": list(y.shape),
        "dtype": str(y.dtype),
        "graph": session.graph,
        "providers": session.providers,
    }
    emit(args, data, f"wrote {out} {tuple(y.shape)} {y.dtype} ({session.graph} graph)")
    return EXIT_OK


def add_run(commands) -> None:
    run = command(
        commands,
        "run",
        "run an exported file on a numpy input in onnxruntime, the state kept between steps",
        cmd_run,
    )
    run.add_argument("onnx", help="a .onnx file written by lifexport (an inference graph)")
    run.add_argument(
        "--input",
        required=True,
        help="an .npy file (np.save) of x, (T, B, ...) in the file's dtype",
    )
    run.add_argument("--out", required=True, help="the .npy file to write y (T, B, ...) to")
    run.add_argument(
        "--providers",
        nargs="+",
        type=provider,
        default=["CPUExecutionProvider"],
        metavar="PROVIDER",
        help="onnxruntime execution providers, in order (default: CPU)",
    )
