"""The time loop: one visible construct that runs a step function over ``(T, ...)`` inputs.

Eager, it is a plain Python loop. Under ``torch.compile`` and ``torch.export`` it is
``torch._higher_order_ops.scan``: the step is traced once whatever T is, so compile time does
not grow with T, T stays symbolic, and the ONNX exporter writes one ``Scan`` node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._higher_order_ops.scan import scan
from torch.utils._pytree import tree_flatten, tree_unflatten

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
    if _SCAN_NEEDS_TRACKED_CARRIES and torch.is_grad_enabled() and torch.compiler.is_dynamo_compiling():
        carry = [tracked(t, _ANCHOR) for t in carry]

    def body(carry: list[Tensor], x: Tensor) -> tuple[list[Tensor], Tensor]:
        y, new_state = step(x, unflatten(carry))
        # torch 2.13: inductor rejects a scan whose outputs may alias its inputs ("scan
        # might be aliasing the input or the output", e.g. z as both spike and state of a
        # recurrent step); the copies fuse into the step's kernel.
        return [t.clone() for t in flatten_state(new_state)[0]], y.clone()

    final, ys = scan(body, carry, xs)
    return ys, unflatten(final)


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
