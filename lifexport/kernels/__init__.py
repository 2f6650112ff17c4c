"""Fused time loops: a whole feed-forward sequence in one Triton kernel per direction.

The step functions of :mod:`lifexport.functional` run one time step per call; a sequence layer
on the ``scan`` backend launches a few kernels per step and moves every state tensor through
memory each time. Here one program per block of neurons loops over T with the state in
registers: only ``x`` is read and the output written, and the backward runs in reverse time in
one kernel too (recomputing each chunk of steps from a checkpoint; see
:mod:`lifexport.kernels._triton`). The arithmetic is the step functions', in their order, so
float32 spikes are bit-equal to the ``scan`` path and states and gradients agree to rounding.

Each sequence is a torch custom op (``lifexport::lif_refrac_sequence``, ``lif_sequence``,
``li_sequence``, each with a backward op), so it runs eagerly and inside
``torch.compile(fullgraph=True)`` without a graph break, and a new T does not recompile.

Triton is optional: the kernels module is imported on the first kernel call, never at package
import. On CUDA tensors the kernels are compiled; on CPU tensors they run in Triton's
interpreter, which must be switched on with ``TRITON_INTERPRET=1`` before triton is first
imported (``torch._dynamo`` imports it, so before importing lifexport; triton 3.9 reads it
then): the test suite does so in its root ``conftest.py``.

Which loop a sequence layer runs is its ``backend``: see :func:`use_kernel`.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch
from torch import Tensor

from lifexport.functional.leaky_integrator import LIParameters, LIState
from lifexport.functional.lif import LIFFeedForwardState, LIFParameters
from lifexport.functional.lif_refrac import LIFRefracFeedForwardState, LIFRefracParameters
from lifexport.functional.threshold import alpha_tensor
from lifexport.kernels._ops import OPS

__all__ = [
    "BACKENDS",
    "check_backend",
    "li_sequence",
    "lif_refrac_sequence",
    "lif_sequence",
    "per_neuron",
    "triton_available",
    "use_kernel",
]

BACKENDS: tuple[str, ...] = ("auto", "scan", "triton")
"""The time loops a feed-forward sequence layer can run: ``scan`` (the step function, every
device), ``triton`` (the fused kernel) and ``auto`` (``triton`` on CUDA tensors when Triton is
installed, else ``scan``)."""

DTYPES = (torch.float32, torch.float64)
"""The dtypes the kernels compute in (``auto`` takes ``scan`` for others). On the GPU only
float32: libdevice's ``exp``/``tanh``/``pow`` the kernels call are float32 functions, and a
float64 kernel does not compile (triton 3.6, H200); float64 runs in the interpreter only."""


def check_backend(backend: object) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    return backend


def triton_available() -> bool:
    """Whether Triton is installed (it is not imported by this check)."""
    return "triton" in sys.modules or importlib.util.find_spec("triton") is not None


def _interpreted() -> bool:
    """Whether the kernels run (or, once defined, will run) in Triton's interpreter."""
    module = sys.modules.get("lifexport.kernels._triton")
    if module is not None:
        return module.INTERPRETED
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def use_kernel(backend: str, x: Tensor) -> bool:
    """Whether a sequence layer with ``backend`` runs the fused kernel on input ``x``.

    Never while exporting (``torch.compiler.is_exporting()``): exported graphs always hold the
    step function's loop, whatever the backend. ``scan``: never. ``auto``: on CUDA tensors of
    a supported dtype when Triton is installed. ``triton``: always, or a clear error.

    Raises:
        RuntimeError: ``backend="triton"`` where the kernels cannot run: Triton not installed,
            a CPU tensor without Triton's interpreter, or an unsupported dtype.
    """
    # torch 2.11 also reports is_exporting() under torch.compile; dynamo compiles the layer's
    # forward only there (exports trace it without dynamo), so that case keeps the kernel.
    exporting = torch.compiler.is_exporting() and not torch.compiler.is_dynamo_compiling()
    if exporting or backend == "scan":
        return False
    if backend == "auto":
        return x.is_cuda and x.dtype == torch.float32 and triton_available()
    if not triton_available():
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install triton); or use "
            "backend='scan' or 'auto'"
        )
    if not x.is_cuda and not _interpreted():
        raise RuntimeError(
            f"backend='triton' needs a CUDA tensor, or Triton's interpreter for a tensor on "
            f"{x.device}: set TRITON_INTERPRET=1 in the environment before the process "
            "imports lifexport (or triton); or use backend='scan' or 'auto'"
        )
    if x.is_cuda and x.dtype != torch.float32:
        raise RuntimeError(
            f"backend='triton' computes CUDA tensors in float32, got {x.dtype} (a float64 "
            "kernel does not compile for the GPU); convert the input, or use backend='scan' "
            "or 'auto'"
        )
    if x.dtype not in DTYPES:
        raise RuntimeError(
            f"backend='triton' computes in float32 or float64, got input of dtype {x.dtype}; "
            "convert the input, or use backend='scan' or 'auto'"
        )
    return True


def per_neuron(p: float | Tensor, shape: torch.Size, like: Tensor) -> Tensor:
    """A parameter as the kernels take it: 1-D, one value, or the values of the trailing
    neuron dims it spans (it repeats over the leading ones), or, for any other broadcast, one
    value per neuron. ``p`` must broadcast to ``shape`` (the module checks it)."""
    if not isinstance(p, Tensor):
        return torch.tensor([p], dtype=like.dtype, device=like.device)
    if p.numel() == 1:
        return p.reshape(1)
    core = p.shape
    while len(core) > 0 and core[0] == 1:
        core = core[1:]
    if tuple(core) == tuple(shape[len(shape) - len(core) :]):
        return p.reshape(-1).contiguous()
    return p.expand(shape).reshape(-1).contiguous()


def _run(
    name: str, x: Tensor, states: tuple[Tensor, ...], params: list, extra: tuple
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Stack the state, lay out the parameters, run op ``name``; unstack the final state."""
    shape = x.shape[1:]
    state = torch.stack([s.expand(shape) for s in states]).contiguous()  # (NS, *neurons)
    ps = [per_neuron(p, shape, x) for p in params]
    y, final, _ = OPS[name](x.contiguous(), state, *ps, *extra)
    return y, tuple(final.unbind(0))


def lif_refrac_sequence(
    x: Tensor, state: LIFRefracFeedForwardState, p: LIFRefracParameters, dt: float
) -> tuple[Tensor, LIFRefracFeedForwardState]:
    """The feed-forward LIF-refrac step over ``x`` ``(T, B, ...)`` in one kernel.

    Equal to running :func:`lifexport.functional.lif_refrac_feed_forward_step` over the time
    axis (float32 spikes bit-equal). Arguments are not checked here: the layers check them.

    Returns:
        ``(spikes (T, B, ...), final state)``.
    """
    lif = p.lif
    params = [dt * lif.tau_mem_inv, -dt * lif.tau_syn_inv, lif.v_leak, lif.v_th, lif.v_reset]
    extra = (alpha_tensor(lif.alpha, x), lif.method)
    z, (v, i, rho) = _run(
        "lif_refrac", x, (state.lif.v, state.lif.i, state.rho), [*params, p.rho_reset], extra
    )
    return z, LIFRefracFeedForwardState(LIFFeedForwardState(v, i), rho)


def lif_sequence(
    x: Tensor, state: LIFFeedForwardState, p: LIFParameters, dt: float
) -> tuple[Tensor, LIFFeedForwardState]:
    """The feed-forward LIF step over ``x`` ``(T, B, ...)`` in one kernel (as
    :func:`lif_refrac_sequence`, for :func:`lifexport.functional.lif_feed_forward_step`)."""
    params = [dt * p.tau_mem_inv, -dt * p.tau_syn_inv, p.v_leak, p.v_th, p.v_reset]
    z, (v, i) = _run("lif", x, tuple(state), params, (alpha_tensor(p.alpha, x), p.method))
    return z, LIFFeedForwardState(v, i)


def li_sequence(x: Tensor, state: LIState, p: LIParameters, dt: float) -> tuple[Tensor, LIState]:
    """The leaky-integrator step over ``x`` ``(T, B, ...)`` in one kernel (as
    :func:`lif_refrac_sequence`, for :func:`lifexport.functional.li_feed_forward_step`);
    returns every step's ``v`` and the final state."""
    params = [dt * p.tau_mem_inv, -dt * p.tau_syn_inv, p.v_leak]
    y, (v, i) = _run("li", x, tuple(state), params, ())
    return y, LIState(v, i)
