"""Progress on stderr: a one-line bar redrawn in place, and numbered stages on top of it."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_bar(done: int, total: int, text: str = "") -> None:
    """A one-line progress bar on stderr, redrawn in place."""
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done >= total else ""
    bar = "#" * filled + "." * (width - filled)
    print(f"\r[{bar}] {done}/{total} {text}", end=end, file=sys.stderr, flush=True)


def stages(total: int) -> Callable[[str], None]:
    """``stage(text)``: the next of ``total`` stages, drawn with :func:`progress_bar`."""
    count = 0

    def stage(text: str) -> None:
        nonlocal count
        count += 1
        progress_bar(count, total, text)

    return stage
