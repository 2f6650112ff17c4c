"""The time loop: one visible construct that runs a step function over ``(T, ...)`` inputs.

Eager, it is a plain Python loop. Under ``torch.compile`` and ``torch.export`` it is
``torch._higher_order_ops.scan``: the step is traced once whatever T is, so compile time does
not grow with T, T stays symbolic, and the ONNX exporter writes one ``Scan`` node.

Inside :func:`unrolled_time_loop`, an export runs K steps per ``scan`` iteration instead, so a
runtime pays its per-iteration cost T / K times instead of T times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch._higher_order_ops.scan import scan
from torch.utils._pytree import tree_flatten, tree_unflatten

from lifexport.limits import LIMITS

Step = Callable[[Tensor, Any], tuple[Tensor, Any]]

# torch 2.13: scan's fake implementation and inductor's lowering of scan read the loop counter
# with `.item()`, which only a compile that captures scalar outputs allows. fullgraph=True turns
# that on for its own graphs; a plain `torch.compile(model)` (fullgraph=False, the default)
# fails with DataDependentOutputException. So lifexport turns it on for every compile: code
# that calls `.item()` then traces it as a symbolic scalar instead of breaking the graph there.
torch._dynamo.config.capture_scalar_outputs = True

# torch 2.11 and 2.12: autograd of a scan whose initial carries do not require grad drops the
# gradient that flows back through the carries (each step's input gets only its own step's
# share): compiled gradients come out wrong by O(1), forward values right. A state at rest, or
# one the user passes, never requires grad, so under torch.compile the carries go through
# `tracked`, whose output requires grad (export has its own pass, in lifexport.export).
# torch 2.13 differentiates correctly either way.
_SCAN_NEEDS_TRACKED_CARRIES = tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 13)
_ANCHOR = torch.zeros((), requires_grad=True)  # makes `tracked`'s output require grad


@torch.library.custom_op("lifexport::tracked", mutates_args=())
def tracked(carry: Tensor, anchor: Tensor) -> Tensor:
    """A copy of ``carry`` that requires grad (``anchor`` does), with ``carry``'s gradient."""
    return carry.clone()


@tracked.register_fake
def _(carry: Tensor, anchor: Tensor) -> Tensor:
    return torch.empty_like(carry)


def _tracked_backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
    return grad, None


def _tracked_setup(ctx, inputs, output) -> None:
    pass


tracked.register_autograd(_tracked_backward, setup_context=_tracked_setup)


_unroll = 1  # steps per scan iteration in exports; set by unrolled_time_loop


@contextmanager
def unrolled_time_loop(k: int) -> Iterator[None]:
    """Inside this, an exported time loop runs ``k`` steps per ``scan`` iteration.

    The exported graph computes the same arithmetic per step as with ``k=1``, and T stays
    dynamic: the steps are laid out as ``ceil(T / k)`` blocks of ``k`` (the last one padded
    with copies of the last input), and each step after the first of a block keeps its state
    only where it is a real step (``torch.where``, exact). Spikes and states are bit-equal to
    ``k=1`` for every T >= 1. Eager runs and ``torch.compile`` are unaffected: only code
    traced while ``torch.compiler.is_exporting()`` unrolls.

    Args:
        k: steps per iteration, >= 1 (1: the plain loop).

    Raises:
        ValueError: ``k`` is not a positive int, or exceeds
            :attr:`lifexport.limits.Limits.max_unroll`.

    Examples:
        >>> import lifexport
        >>> with unrolled_time_loop(4):
        ...     out = lifexport.to_onnx(lifexport.LIFRefrac(), torch.rand(10, 2, 3), "/tmp/u.onnx")
    """
    global _unroll
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k (steps per scan iteration) must be a positive int, got {k!r}")
    if k > LIMITS.max_unroll:  # tracing writes every step out: about a second each
        raise ValueError(
            f"k (steps per scan iteration) must be at most {LIMITS.max_unroll} "
            f"(lifexport.limits.LIMITS.max_unroll; raise it if a real use needs more), got {k}"
        )
    previous, _unroll = _unroll, k
    try:
        yield
    finally:
        _unroll = previous


def time_loop(step: Step, xs: Tensor, state: Any) -> tuple[Tensor, Any]:
    """Run ``step(x_t, state) -> (y_t, state)`` for every ``x_t`` in ``xs``.

    Args:
        step: one time step; ``state`` may be any pytree of tensors (NamedTuples, tuples,
            ``None`` for stateless parts).
        xs: inputs, time first: ``(T, ...)``.
        state: the state before the first step.

    Returns:
        ``(ys, state)``: the stacked outputs ``(T, ...)`` and the state after the last step.
    """
    if not torch.compiler.is_compiling():
        ys = []
        for x in xs:
            y, state = step(x, state)
            ys.append(y)
        return torch.stack(ys), state

    # scan's carry must be a flat list of tensors (torch 2.13 rejects NamedTuples there).
    carry, unflatten = flatten_state(state)
    if (
        _SCAN_NEEDS_TRACKED_CARRIES
        and torch.is_grad_enabled()
        and torch.compiler.is_dynamo_compiling()
    ):
        carry = [tracked(t, _ANCHOR) for t in carry]
    if _unroll > 1 and torch.compiler.is_exporting():
        # torch 2.13: the metadata of a tensor of ceil(T / k) rows asks is_contiguous whether
        # that count is >= 2, which guards T > k (and fails Dim("T")) unless sizes are
        # treated as unbacked there.
        with torch.fx.experimental._config.patch(backed_size_oblivious=True):
            final, ys = _unrolled_scan(step, unflatten, carry, xs, _unroll)
    else:
        final, ys = scan(_step_body(step, unflatten), carry, xs)
    return ys, unflatten(final)


def _step_body(step: Step, unflatten: Callable[[list[Tensor]], Any]) -> Callable:
    """The scan body of one step: ``(carry, x_t) -> (new carry, y_t)``."""

    def body(carry: list[Tensor], x: Tensor) -> tuple[list[Tensor], Tensor]:
        y, new_state = step(x, unflatten(carry))
        # torch 2.13: inductor rejects a scan whose outputs may alias its inputs ("scan
        # might be aliasing the input or the output", e.g. z as both spike and state of a
        # recurrent step); the copies fuse into the step's kernel. Exported, they vanish
        # (the ONNX exporter drops the Identity nodes they become).
        return [t.clone() for t in flatten_state(new_state)[0]], y.clone()

    return body


def _unrolled_scan(
    step: Step,
    unflatten: Callable[[list[Tensor]], Any],
    carry: list[Tensor],
    xs: Tensor,
    k: int,
) -> tuple[list[Tensor], Tensor]:
    """``k`` steps per scan iteration over ``ceil(T / k)`` blocks, T symbolic.

    torch 2.13: a scan of a length that may be 0 (a ``T // k`` block count, or a ``T % k``
    remainder) cannot be exported with T dynamic: scan's input check and its tracer's
    ``select`` of the first slice guard the length > 0, which fails ``Dim("T")``. So one
    scan runs ``ceil(T / k) >= 1`` blocks, gathered from ``xs`` (no reshape of a T that torch
    cannot prove a multiple of k), and masks the state of the padding steps. Step ``j`` of
    each block is its own scan input and output, so the loop body slices and stacks nothing.
    """
    t = xs.shape[0]
    blocks = (t + k - 1) // k
    start = torch.arange(blocks, device=xs.device) * k  # (T/k,): each block's first step
    # No reshape or view: torch cannot prove T's multiples, and guards them (torch 2.13).
    x_steps = [xs.index_select(0, (start + j).clamp(max=t - 1)) for j in range(k)]
    real = [start + j < t for j in range(1, k)]  # padding only at the end: step 0 is real

    def body(carry: list[Tensor], inputs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        x, is_real = inputs[:k], inputs[k:]  # k x (B, ...), k - 1 x ()
        ys = []
        for j in range(k):
            y, new_state = step(x[j], unflatten(carry))
            new = flatten_state(new_state)[0]
            if j > 0:
                new = [torch.where(is_real[j - 1], n, c) for n, c in zip(new, carry)]
            carry = new
            ys.append(y)
        return [c.clone() for c in carry], [y.clone() for y in ys]  # clones: see _step_body

    final, ys = scan(body, carry, [*x_steps, *real])  # ys: k x (T/k, B, ...)
    steps = torch.arange(t, device=xs.device)
    order = (steps % k) * blocks + steps // k  # step s in the concatenation of ys
    return final, torch.cat(ys).index_select(0, order)  # (T, B, ...)


def flatten_state(state: Any) -> tuple[list[Tensor], Callable[[list[Tensor]], Any]]:
    """The tensors of a state pytree in order, and the inverse that rebuilds the pytree.

    ``None`` entries (stateless layers of a stack) hold no tensor.
    """
    leaves, spec = tree_flatten(state)
    slots = [i for i, leaf in enumerate(leaves) if leaf is not None]

    def unflatten(tensors: list[Tensor]) -> Any:
        filled = list(leaves)
        for slot, tensor in zip(slots, tensors, strict=True):
            filled[slot] = tensor
        return tree_unflatten(filled, spec)

    return [leaves[i] for i in slots], unflatten
