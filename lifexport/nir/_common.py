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


def meta_str(value: Any) -> str:
    """A string metadata value as written, or as read back from HDF5 (bytes)."""
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def meta_float(value: Any) -> float:
    """A numeric metadata value (a number, or a 0-d array read back from HDF5)."""
    return float(np.asarray(value).item())
