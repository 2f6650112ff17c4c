"""Fused time loops: a whole sequence in one Triton kernel per direction.

The step functions of :mod:`lifexport.functional` run one time step per call; a sequence layer
on the ``scan`` backend launches a few kernels per step and moves every state tensor through
memory each time. Here one program per block of neurons loops over T with the state in
registers: only ``x`` is read and the output written, and the backward runs in reverse time in
one kernel too, from the states the forward kept (:data:`MEMORY_MODES`; see
:mod:`lifexport.kernels._triton`). The arithmetic is the step functions', in their order, so
float32 spikes are bit-equal to the ``scan`` path and states and gradients agree to rounding.
The recurrent layers' kernels (:func:`lif_refrac_recurrent_sequence`,
:func:`lif_recurrent_sequence`; :mod:`lifexport.kernels._triton_recurrent`) add the recurrent
product to each step inside the loop, summed in another order than torch's matmul.

Precision (:data:`DTYPES`, :data:`HALF_DTYPES`): the state and parameters have one dtype, the
compute dtype. ``x`` has it too, or is float16/bfloat16 over a float32 state (a float32 layer
under ``torch.autocast``): the kernels read the half-precision ``x`` and compute in float32
registers, which is exactly the float32 steps on ``x.float()``, and write spikes in ``x``'s
dtype (``LI``'s output, its potential, in float32); ``x``'s gradient leaves in ``x``'s dtype,
rounded to nearest even, the state's and the parameters' in float32.

Each sequence is a torch custom op (``lifexport::lif_refrac_sequence``, ``lif_sequence``,
``li_sequence``, each with a backward op), so it runs eagerly and inside
``torch.compile(fullgraph=True)`` without a graph break, and a new T does not recompile.

Triton is optional: the kernels module is imported on the first kernel call, never at package
import. On CUDA tensors the kernels are compiled, their block size tuned on the first call for
each size (outside CUDA graph capture; see :mod:`lifexport.kernels._triton`); on CPU tensors
they run in Triton's interpreter, which must be switched on with ``TRITON_INTERPRET=1`` before
triton is first imported (``torch._dynamo`` imports it, so before importing lifexport; triton
3.9 reads it then): the test suite does so in its root ``conftest.py``.

Which loop a sequence layer runs is its ``backend``: see :func:`use_kernel`. Nothing falls back
to the ``scan`` loop except where ``backend="auto"``'s rules say so. The kernels implement the
built-in spike methods (:data:`KERNEL_METHODS`); a layer whose surrogate was registered with
:func:`lifexport.functional.register_surrogate` runs the ``scan`` loop.
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
from lifexport.kernels._ops import CHUNK, METHOD_CODES, OPS, lif_params
from lifexport.kernels._recurrent import lif_recurrent_sequence, lif_refrac_recurrent_sequence

__all__ = [
    "BACKENDS",
    "DTYPES",
    "HALF_DTYPES",
    "KERNEL_METHODS",
    "MEMORY_MODES",
    "STORE_LIMIT_BYTES",
    "check_backend",
    "check_memory",
    "li_sequence",
    "lif_recurrent_sequence",
    "lif_refrac_recurrent_sequence",
    "lif_refrac_sequence",
    "lif_sequence",
    "per_neuron",
    "stores_states",
    "supports_method",
    "triton_available",
    "use_kernel",
]

BACKENDS: tuple[str, ...] = ("auto", "scan", "triton")
"""The time loops a feed-forward sequence layer can run: ``scan`` (the step function, every
device), ``triton`` (the fused kernel) and ``auto`` (``triton`` where :func:`use_kernel`'s
rules say, else ``scan``)."""

DTYPES = (torch.float32, torch.float64)
"""The dtypes the kernels compute in (the state's and parameters'). On the GPU only float32:
libdevice's ``exp``/``tanh``/``pow`` the kernels call are float32 functions, and a float64
kernel does not compile (triton 3.6, H200); float64 runs in the interpreter only, with a
float64 ``x``."""

HALF_DTYPES = (torch.float16, torch.bfloat16)
"""The input dtypes the kernels also read, over a float32 state (a float32 layer under
``torch.autocast``): ``x`` is converted to float32 in registers, exactly. Not over a state of
another dtype: a layer converted with ``.to(torch.bfloat16)`` computes in bfloat16, which
kernels that keep float32 in registers do not equal."""

KERNEL_METHODS: tuple[str, ...] = tuple(METHOD_CODES)
"""The spike methods whose surrogate gradients the kernels implement: the built-in ones."""

MEMORY_MODES: tuple[str, ...] = ("auto", "store", "recompute")
"""What the forward keeps for the backward: ``store``, the state before every step (``NS``
state tensors of ``x``'s size: 3 for LIF-refrac, 2 otherwise; the fastest backward);
``recompute``, the state before every 32nd step (``NS / 32`` of it; the backward recomputes
the steps in between, one more read of ``x``); ``auto``, ``store`` while the stored states
take at most :data:`STORE_LIMIT_BYTES`, else ``recompute`` (:func:`stores_states`). Both give
bit-equal results."""

STORE_LIMIT_BYTES = 2**31
"""The most bytes of stored states (``T * NS * neurons * state element size``) for which
``memory="auto"`` stores every step's state: 2 GiB. Above it the states are recomputed, from
checkpoints of ``1 / 32`` of that size."""


def check_backend(backend: object) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}"
        )
    return backend


def check_memory(memory: object) -> str:
    """Return ``memory`` if it is one of :data:`MEMORY_MODES`, else raise ``ValueError``."""
    if not isinstance(memory, str) or memory not in MEMORY_MODES:
        raise ValueError(
            f"memory must be one of {', '.join(map(repr, MEMORY_MODES))}; got {memory!r}"
        )
    return memory


def stores_states(memory: str, T: int, M: int, ns: int, dtype: torch.dtype) -> bool:
    """Whether a kernel's forward keeps every step's state (else one in 32) for ``memory``.

    Args:
        memory: one of :data:`MEMORY_MODES`.
        T: time steps (a symbolic size under ``torch.compile``: ``auto`` then adds a guard on
            it, which every T on the same side of the limit passes).
        M: neurons per step (batch times features).
        ns: state tensors per neuron (3 for LIF-refrac, 2 otherwise).
        dtype: the state's dtype.

    Returns:
        ``True`` for ``store``, ``False`` for ``recompute``; for ``auto``, whether
        ``T * ns * M`` elements of ``dtype`` take at most :data:`STORE_LIMIT_BYTES`.

    Raises:
        ValueError: ``memory`` is not one of :data:`MEMORY_MODES`.

    Examples:
        >>> stores_states("auto", 1000, 32 * 512, 3, torch.float32)
        True
        >>> stores_states("auto", 100_000, 32 * 512, 3, torch.float32)
        False
    """
    check_memory(memory)
    if memory != "auto":
        return memory == "store"
    return T * ns * M * dtype.itemsize <= STORE_LIMIT_BYTES


def supports_method(method: str | None) -> bool:
    """Whether the kernels implement ``method`` (``None``: a layer that does not spike)."""
    return method is None or method in METHOD_CODES


def _method_error(method: str | None) -> str | None:
    """Why the kernels cannot run ``method``, or ``None`` when they can."""
    if supports_method(method):
        return None
    return (
        f"the fused kernels implement the surrogates {', '.join(map(repr, KERNEL_METHODS))}, "
        f"not method {method!r}"
    )


def triton_available() -> bool:
    """Whether Triton is installed (it is not imported by this check)."""
    return "triton" in sys.modules or importlib.util.find_spec("triton") is not None


def _interpreted() -> bool:
    """Whether the kernels run (or, once defined, will run) in Triton's interpreter."""
    module = sys.modules.get("lifexport.kernels._triton")
    if module is not None:
        return module.INTERPRETED
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def use_kernel(
    backend: str,
    x: Tensor,
    compute_dtype: torch.dtype | None = None,
    method: str | None = None,
    dtypes: tuple[torch.dtype, ...] = DTYPES,
) -> bool:
    """Whether a sequence layer with ``backend`` runs the fused kernel on input ``x``.

    Never while exporting (``torch.compiler.is_exporting()``): exported graphs always hold the
    step function's loop, whatever the backend. ``scan``: never. ``auto``: on CUDA tensors
    when Triton is installed, the compute dtype is float32, ``x`` is float32, float16 or
    bfloat16 and the kernels implement the layer's spike ``method`` (:data:`KERNEL_METHODS`);
    else ``scan`` (CPU tensors, float64, a layer converted to half precision, a surrogate
    registered with :func:`lifexport.functional.register_surrogate`). ``triton``: always,
    or a clear error.

    Args:
        backend: one of :data:`BACKENDS`.
        x: the input ``(T, B, ...)``.
        compute_dtype: the dtype of the layer's state and parameters (``None``: ``x``'s).
        method: the layer's spike method (``None``: the layer does not spike).
        dtypes: the compute dtypes the layer's kernel has (:data:`DTYPES`; the recurrent
            kernels: float32 only).

    Raises:
        RuntimeError: ``backend="triton"`` where the kernels cannot run: a ``method`` they do
            not implement, Triton not installed, a CPU tensor without Triton's interpreter,
            half-precision ``x`` with a compute dtype other than float32, a compute dtype
            other than float32 on CUDA (or not in ``dtypes`` in the interpreter), or ``x``
            of another dtype than the compute dtype that is not float16 or bfloat16.
    """
    # torch 2.11 also reports is_exporting() under torch.compile; dynamo compiles the layer's
    # forward only there (exports trace it without dynamo), so that case keeps the kernel.
    exporting = torch.compiler.is_exporting() and not torch.compiler.is_dynamo_compiling()
    if exporting or backend == "scan":
        return False
    compute = x.dtype if compute_dtype is None else compute_dtype
    if backend == "auto":
        return (
            x.is_cuda
            and compute == torch.float32
            and x.dtype in (torch.float32, *HALF_DTYPES)
            and supports_method(method)
            and triton_available()
        )
    unsupported = _method_error(method)
    if unsupported is not None:
        raise RuntimeError(
            f"backend='triton' cannot run this layer: {unsupported}; use backend='scan' or "
            "'auto' (which runs the scan loop for it)"
        )
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
    if x.dtype in HALF_DTYPES and compute != torch.float32:
        raise RuntimeError(
            f"backend='triton' reads {x.dtype} input only into a float32 layer (the kernels "
            f"keep float32 in registers), but this layer computes in {compute}; run a float32 "
            "layer under torch.autocast instead of converting it, or use backend='scan'"
        )
    if x.is_cuda and compute != torch.float32:
        raise RuntimeError(
            f"backend='triton' computes CUDA tensors in float32, got {compute} (a float64 "
            "kernel does not compile for the GPU); convert the input, or use backend='scan' "
            "or 'auto'"
        )
    if compute not in dtypes or x.dtype not in (compute, *HALF_DTYPES):
        names = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise RuntimeError(
            f"backend='triton' computes in {names}, got input of dtype {x.dtype}"
            + ("" if compute == x.dtype else f" for a layer computing in {compute}")
            + "; convert the input, or use backend='scan' or 'auto'"
        )
    return True


def per_neuron(p: float | Tensor, shape: torch.Size, like: Tensor) -> Tensor:
    """A parameter as the kernels take it: 1-D, one value, or the values of the trailing
    neuron dims it spans (it repeats over the leading ones), or, for any other broadcast, one
    value per neuron. ``p`` must broadcast to ``shape`` (the module checks it); a number
    becomes a tensor of ``like``'s dtype and device (the state's: the compute dtype)."""
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
    name: str,
    x: Tensor,
    states: tuple[Tensor, ...],
    params: list,
    surrogate: tuple[float | Tensor, str] | None,
    memory: str,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Stack the state, lay out the parameters (and ``alpha``, ``surrogate[0]``) in its dtype,
    choose the checkpoint interval, run op ``name``; unstack the final state.

    Raises:
        ValueError: a spike method (``surrogate[1]``) the kernels do not implement.
    """
    unsupported = None if surrogate is None else _method_error(surrogate[1])
    if unsupported is not None:
        raise ValueError(f"p.method: {unsupported}; run such a layer with backend='scan'")
    shape = x.shape[1:]
    state = torch.stack([s.expand(shape) for s in states]).contiguous()  # (NS, *neurons)
    ps = [per_neuron(p, shape, state) for p in params]
    extra = () if surrogate is None else (alpha_tensor(surrogate[0], state), surrogate[1])
    stored = stores_states(memory, x.shape[0], state[0].numel(), len(states), state.dtype)
    chunk = 1 if stored else CHUNK
    y, final, _ = OPS[name](x.contiguous(), state, *ps, *extra, chunk)
    return y, tuple(final.unbind(0))


def lif_refrac_sequence(
    x: Tensor,
    state: LIFRefracFeedForwardState,
    p: LIFRefracParameters,
    dt: float,
    memory: str = "auto",
) -> tuple[Tensor, LIFRefracFeedForwardState]:
    """The feed-forward LIF-refrac step over ``x`` ``(T, B, ...)`` in one kernel.

    Equal to running :func:`lifexport.functional.lif_refrac_feed_forward_step` over the time
    axis (float32 spikes bit-equal); for float16/bfloat16 ``x`` over a float32 state, to
    running it on ``x.float()`` and casting the spikes to ``x``'s dtype. Arguments other than
    ``memory`` are not checked here: the layers check them.

    Args:
        x: input currents ``(T, B, ...)``, in the state's dtype or float16/bfloat16.
        state: the state before the first step; its dtype is the one the steps compute in.
        p: parameters (numbers, or tensors in the state's dtype).
        dt: integration step in seconds.
        memory: what the backward works from, one of :data:`MEMORY_MODES`.

    Returns:
        ``(spikes (T, B, ...) in x's dtype, final state)``.

    Raises:
        ValueError: ``memory`` is not one of :data:`MEMORY_MODES`, or ``p.lif.method`` is
            not one of :data:`KERNEL_METHODS`.
    """
    lif = p.lif
    states = (state.lif.v, state.lif.i, state.rho)
    params = [*lif_params(lif, dt), p.rho_reset]
    z, (v, i, rho) = _run("lif_refrac", x, states, params, (lif.alpha, lif.method), memory)
    return z, LIFRefracFeedForwardState(LIFFeedForwardState(v, i), rho)


def lif_sequence(
    x: Tensor, state: LIFFeedForwardState, p: LIFParameters, dt: float, memory: str = "auto"
) -> tuple[Tensor, LIFFeedForwardState]:
    """The feed-forward LIF step over ``x`` ``(T, B, ...)`` in one kernel (as
    :func:`lif_refrac_sequence`, for :func:`lifexport.functional.lif_feed_forward_step`)."""
    z, (v, i) = _run("lif", x, tuple(state), lif_params(p, dt), (p.alpha, p.method), memory)
    return z, LIFFeedForwardState(v, i)


def li_sequence(
    x: Tensor, state: LIState, p: LIParameters, dt: float, memory: str = "auto"
) -> tuple[Tensor, LIState]:
    """The leaky-integrator step over ``x`` ``(T, B, ...)`` in one kernel (as
    :func:`lif_refrac_sequence`, for :func:`lifexport.functional.li_feed_forward_step`);
    returns every step's ``v`` (in the state's dtype, whatever ``x``'s) and the final state."""
    y, (v, i) = _run("li", x, tuple(state), lif_params(p, dt), None, memory)
    return y, LIState(v, i)
