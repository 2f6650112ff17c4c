"""What every command shares: exit codes, the usage error, one-line messages, output files."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake of the caller's: reported in one line, exit code 2."""


def one_line(text: str) -> str:
    """``text``'s non-blank lines, stripped and joined with ``"; "``."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """A command's result on stdout: ``data`` as one JSON document with ``--json``, else
    ``text``."""
    print(json.dumps(data, indent=2) if args.json else text)


@contextmanager
def writing(path: str, option: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (through a temporary file beside it) as a
    :class:`UsageError` that names ``path``, not the temporary file."""
    try:
        yield
    except OSError as error:
        reason = error.strerror or str(error)
        raise UsageError(f"cannot write {option} {path!r}: {reason}") from None


def check_output(path: Path) -> None:
    """The file to write must name a file in a folder that exists."""
    if path.is_dir():
        raise UsageError(f"output {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        problem = "is a file, not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"output {str(path)!r}: its folder {str(path.parent)!r} {problem}")
