"""The benchmark's timer: the median wall time of repeated calls. Standard library only, so
the demo's speed table uses it without loading the rest of :mod:`lifexport.bench`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(
    fn: Callable[[], object],
    repeats: int,
    warmup: int,
    sync: Callable[[], object] | None = None,
) -> float:
    """The median wall time of ``repeats`` calls after ``warmup`` untimed ones, in ms.

    ``sync`` (``torch.cuda.synchronize`` for CUDA work) is called before the first timed call
    and inside each timed region after the call, so a figure covers the device's work too.

    Raises:
        ValueError: ``repeats`` is not an int >= 1 or ``warmup`` not an int >= 0.

    >>> median_ms(lambda: None, repeats=3, warmup=1) >= 0
    True
    """
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"median_ms: {name} must be an int >= {low}, got {value!r}")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
