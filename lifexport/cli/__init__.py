"""The ``lifexport`` command (also ``python -m lifexport``): ``demo``, ``export``, ``validate``,
``run``, ``nir``, ``bench``.

Exit codes: 0 success, 1 a validation mismatch, 2 a usage error (bad arguments, a missing,
unreadable or unwritable file, an input of the wrong shape, a model spec that does not give a
model, a model that does not fit the file, sizes over :mod:`lifexport.limits`), reported in one
line on stderr without traceback: every ``ValueError``, ``TypeError``, ``OSError`` and
:class:`~lifexport.errors.LifexportError` a command raises is reported so. ``--json`` prints
one JSON document on stdout; progress goes to stderr. ``validate`` runs the model named by
``--model``, never code that the file names.

Modules, by job: ``_common`` (exit codes, the usage error, output files), ``_arguments``
(argument types and shared options), ``_load`` (model specs and tensor files), ``_progress``,
and one module per command (group): ``_demo``, ``_export``, ``_validate``, ``_run``,
``_nir``, ``_bench``. Each imports torch, onnx and the package's layers only when its command runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from lifexport._version import __version__
from lifexport.cli._bench import add_bench
from lifexport.cli._common import EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, UsageError, one_line
from lifexport.cli._demo import add_demo
from lifexport.cli._export import add_export
from lifexport.cli._nir import add_nir
from lifexport.cli._progress import progress_bar
from lifexport.cli._run import add_run
from lifexport.cli._validate import add_validate
from lifexport.errors import LifexportError

__all__ = [
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "main",
    "progress_bar",
]


class _Parser(argparse.ArgumentParser):
    """Reports a bad argument in one line, ``lifexport <command>: error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``lifexport`` parser; each command's ``args.run(args)`` returns its exit code."""
    parser = _Parser(
        prog="lifexport",
        description="LIF-refrac spiking networks: export to ONNX, validate in onnxruntime, bench.",
        epilog="exit codes: 0 ok, 1 validation mismatch or failed measurement, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"lifexport {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_demo, add_export, add_validate, add_run, add_nir, add_bench):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``lifexport`` with ``argv`` (default: the process's arguments); the exit code."""
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
    print(f"lifexport {command}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE
