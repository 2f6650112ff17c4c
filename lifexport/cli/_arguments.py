"""Argument types (each rejects a bad value in argparse's one-line error) and the options that
several commands share."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable
from pathlib import Path

from lifexport.limits import check_elements


def _number_in(text: str, low: float, high: float, what: str, open_low: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    finite = value == value and abs(value) != float("inf")
    if not (finite and (low < value if open_low else low <= value) and value <= high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    return _number_in(text, 0.0, float("inf"), "a positive number", open_low=True)


def fraction(text: str) -> float:
    return _number_in(text, 0.0, 1.0, "a number in [0, 1]", open_low=False)


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def count(text: str) -> int:
    return _int_at_least(text, 0, "an integer >= 0")


def _int_at_least(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def sizes(text: str) -> tuple[int, ...]:
    """A shape such as ``32,1,64``: positive sizes, within :mod:`lifexport.limits`."""
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


def folder(text: str) -> str:
    """A folder to write into: missing (it is created) or a folder, not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"expected a folder (created if missing), got {text!r}, which is a file"
        )
    return text


def provider(text: str) -> str:
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


def command(commands, name: str, help: str, run: Callable) -> argparse.ArgumentParser:
    """A subcommand ``name`` that runs ``run(args)``, with ``--json``."""
    sub = commands.add_parser(name, help=help, description=help)
    sub.add_argument("--json", action="store_true", help="print one JSON document")
    sub.set_defaults(run=run)
    return sub


def add_providers(sub: argparse.ArgumentParser) -> None:
    """``--providers``: onnxruntime execution providers, CPU and CUDA by default."""
    from lifexport.validation import PROVIDERS

    sub.add_argument(
        "--providers",
        nargs="+",
        type=provider,
        default=list(PROVIDERS),
        metavar="PROVIDER",
        help="onnxruntime execution providers (default: CPU and CUDA; an unavailable one "
        "is reported, not dropped)",
    )
