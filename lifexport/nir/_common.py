"""What the NIR writer and reader share: the lazy import of ``nir``, the ``dt`` check, the
metadata keys lifexport stores, and the discretisation both directions follow.

lifexport's neurons take one explicit Euler step of NIR's ``CubaLIF``/``CubaLI`` equations
per time step ``dt``, with the input added to the synaptic current. In NIR's terms (the
discrete convention snnTorch's exporter and Norse's importer follow)::

    tau_syn = 1 / tau_syn_inv        tau_mem = 1 / tau_mem_inv        (seconds)
    r = 1                            w_in = tau_syn / dt

so that the input gain ``r * w_in * dt / tau_syn`` of one step is 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Node metadata keys (NIR has no field for them; other tools ignore them).
RHO_RESET = "lifexport.rho_reset"  # refractory steps of a LIF-refrac layer
METHOD = "lifexport.method"  # surrogate gradient of a spiking layer
ALPHA = "lifexport.alpha"  # its width
#: Graph metadata keys.
SEQUENCE = "lifexport.sequence"  # 1: time-major sequence layers, 0: cells (one step)
DT = "lifexport.dt"  # the dt the graph was written with (seconds)

#: How close to 1 an input gain must be to need no folding into the layer before.
GAIN_TOLERANCE = 1e-6


def require_nir() -> Any:
    """The ``nir`` module, or an ``ImportError`` saying how to install it."""
    try:
        import nir
    except ImportError as error:
        raise ImportError(
            "lifexport's NIR support needs the 'nir' package: pip install nir "
            "(or pip install 'lifexport[nir]')"
        ) from error
    return nir


def check_dt(dt: Any) -> float:
    """``dt`` as a float; ``TypeError``/``ValueError`` unless a positive, finite number."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float, np.floating, np.integer)):
        raise TypeError(
            f"dt must be a number of seconds (the duration of one time step), got "
            f"{type(dt).__name__}"
        )
    dt = float(dt)
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(
            f"dt must be a positive, finite number of seconds (one time step), got {dt!r}"
        )
    return dt


def meta_str(value: Any, what: str) -> str:
    """A string metadata value as written, or as read back from HDF5 (bytes); a
    ``ValueError`` naming ``what`` for anything else."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} must be a UTF-8 string, got {show(value)}") from None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {show(value)}")
    return value


def meta_float(value: Any, what: str, rule: str = "finite") -> float:
    """A metadata value that must be one number (a 0-d array as read back from HDF5, or a
    one-element array): see :func:`numbers`."""
    array = numbers(value, what, rule)
    if array.size != 1:
        raise ValueError(f"{what} must be one number, got an array of shape {array.shape}")
    return float(array.reshape(-1)[0])


#: What :func:`numbers` checks, and how its error says it.
RULES = {
    "finite": "finite",
    "positive": "positive and finite",
    "non-negative": ">= 0 and finite",
}


def numbers(value: Any, what: str, rule: str = "finite") -> np.ndarray:
    """``value``, a number or an array of numbers as a NIR graph holds them, as float64.

    Raises:
        ValueError: naming ``what``: ``value`` is not made of real numbers (a string, an
            object array, complex numbers), or an element breaks ``rule`` (a key of
            :data:`RULES`).
    """
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":  # not bool ("b"), complex, strings or objects
        raise ValueError(f"{what} must be a number or an array of numbers, got {show(value)}")
    array = array.astype(np.float64)
    ok = bool(np.isfinite(array).all())
    if rule == "positive":
        ok = ok and bool((array > 0).all())
    elif rule == "non-negative":
        ok = ok and bool((array >= 0).all())
    if not ok:
        raise ValueError(f"{what} must be {RULES[rule]}, got {show(array)}")
    return array


def show(value: Any) -> str:
    """A value from a file in an error message: short, whatever its size."""
    if isinstance(value, np.ndarray) and value.ndim:
        if value.size <= 6:
            return f"{value.tolist()!r}"[:120]
        if value.dtype.kind in "iuf":
            finite = value[np.isfinite(value)]
            span = f"min {finite.min()}, max {finite.max()}, " if finite.size else ""
            bad = value.size - finite.size
            return f"an array of shape {value.shape} ({span}{bad} not finite)"
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.item()
    text = repr(value)
    text = text if len(text) <= 80 else f"{text[:80]}..."
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return text if numeric else f"{type(value).__name__} {text}"
