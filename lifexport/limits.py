"""Limits on the work that a file's numbers or a user's arguments can ask for.

A file from someone else (an ONNX file's metadata, a NIR file's datasets) or a command-line
argument can name sizes far beyond what any real model needs; lifexport checks them against
these limits before it allocates or loops over anything, and the error names the limit. Raise a
limit where a real use needs more, for the process::

    import lifexport.limits
    lifexport.limits.LIMITS.max_elements = 2**32

Examples:
    >>> check_elements("input", (10, 1_000_000, 4))
    >>> check_elements("input", (10**11, 1, 4))
    Traceback (most recent call last):
    ...
    ValueError: input of shape (100000000000, 1, 4) has 400000000000 elements, over the ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LIMITS", "Limits", "check_elements"]


@dataclass
class Limits:
    """The limits in force (one instance, :data:`LIMITS`)."""

    #: Elements of one tensor built from a file's or an argument's sizes (2**28: 1 GiB of
    #: float32, far above the inputs a validation or an export needs).
    max_elements: int = 2**28
    #: Time steps of a validation's drive, given or synthesized (each step is a Python-level
    #: step of the torch reference; 2**16 is far above what a check of a graph needs).
    max_steps: int = 2**16
    #: Time steps per ``Scan`` iteration of an export (``to_onnx(unroll=k)``): tracing writes
    #: every step out, about a second each on one core.
    max_unroll: int = 32
    #: Bytes that reading the arrays of one file may take in memory, all together (2**30:
    #: 1 GiB; a small file can declare far more, compressed or never written).
    max_file_bytes: int = 2**30


LIMITS = Limits()
"""The limits lifexport checks against; set a field to raise one."""


def check_elements(what: str, shape: Sequence[int]) -> None:
    """Raise ``ValueError`` naming ``what`` if a tensor of ``shape`` would hold more than
    :attr:`Limits.max_elements` elements (sizes must be non-negative ints)."""
    sizes = tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sizes):
        raise ValueError(f"{what} must have a shape of non-negative ints, got {sizes}")
    count = math.prod(sizes)
    if count > LIMITS.max_elements:
        raise ValueError(
            f"{what} of shape {sizes} has {count} elements, over the limit of "
            f"{LIMITS.max_elements} (lifexport.limits.LIMITS.max_elements; raise it if a real "
            "use needs more)"
        )
