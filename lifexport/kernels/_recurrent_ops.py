"""The fused recurrent sequences as torch custom ops: ``lifexport::<model>_recurrent_sequence``
and its backward, for ``model`` in ``lif``, ``lif_refrac`` (as :mod:`lifexport.kernels._ops`
defines the feed-forward ones: a fake kernel, so ``torch.compile`` traces a symbolic T, and an
autograd formula calling the backward op).

Schema::

    <model>_recurrent_sequence(Tensor a, Tensor state, Tensor w, Tensor a_mem, Tensor a_syn,
        Tensor v_leak, Tensor v_th, Tensor v_reset[, Tensor rho_reset], Tensor alpha,
        str method, int chunk) -> (Tensor zs, Tensor final, Tensor checkpoints)

``a`` ``(T, B, H)`` is the input projection ``x @ W_in^T``; ``state`` ``(1 + NS, B, H)`` the
stacked state ``z, v, i[, rho]`` in the dtype the steps compute in; ``w`` the recurrent weights
``(H, H)`` as the step multiplies by them (autapses masked) in ``a``'s dtype (half precision
under autocast). ``zs`` ``(T + 1, B, H)``, in ``a``'s dtype, holds the initial spikes then
every step's; ``final`` is the final ``(v, i[, rho])`` (the final ``z`` is ``zs[-1]``).
Parameters, ``alpha``, ``method`` and ``chunk`` as the feed-forward ops'. The backward gives
the gradients w.r.t. ``a``, the whole initial state, ``w`` and the parameters; ``w``'s and the
initial ``z``'s are torch products of the kernel's gradient w.r.t. ``a``. The backward op
reads ``a`` only to recompute states (``chunk > 1``): with stored states it is given an empty
tensor, so ``a`` is not kept for the backward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lifexport.kernels._ops import MODELS, KernelModel, _six, _split, parameter_grads

RECURRENT_MODELS = ("lif", "lif_refrac")
"""The models with a fused recurrent op."""


def _kernels():
    """The recurrent Triton kernels module, imported on first use."""
    from lifexport.kernels import _triton_recurrent

    return _triton_recurrent


def _define(model: KernelModel) -> torch._ops.OpOverload:
    """Define ``lifexport::<model>_recurrent_sequence`` and its backward; return the forward.

    Long for the reason :func:`lifexport.kernels._ops._define` is."""
    params = ", ".join(f"Tensor {p}" for p in model.params)
    tail = "Tensor alpha, str method, int chunk"
    name = f"lifexport::{model.name}_recurrent_sequence"
    ns = len(model.states)

    @torch.library.custom_op(
        name,
        mutates_args=(),
        schema=f"(Tensor a, Tensor state, Tensor w, {params}, {tail}) -> (Tensor, Tensor, Tensor)",
    )
    def forward(a: Tensor, state: Tensor, w: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        ps, _, _, chunk = _split(args, model)
        return _kernels().launch_forward(a, state, w, _six(ps), model.code, chunk)

    @forward.register_fake
    def _(a: Tensor, state: Tensor, w: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        chunk = args[-1]
        T, B, H = a.shape
        checkpoints = state.new_empty(((T + chunk - 1) // chunk, ns, B, H))
        return a.new_empty((T + 1, B, H)), state.new_empty((ns, B, H)), checkpoints

    @torch.library.custom_op(
        f"{name}_backward",
        mutates_args=(),
        schema=f"(Tensor grad_zs, Tensor grad_final, Tensor a, Tensor zs, Tensor checkpoints, "
        f"Tensor w, {params}, {tail}) -> (Tensor, Tensor, Tensor)",
    )
    def backward_op(
        grad_zs: Tensor, grad_final: Tensor, a: Tensor, zs: Tensor, checkpoints: Tensor,
        w: Tensor, *args,
    ) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
        ps, alpha, method, chunk = _split(args, model)
        return _kernels().launch_backward(
            grad_zs, grad_final, a, zs, checkpoints, w, _six(ps), alpha, model.code, method, chunk
        )

    @backward_op.register_fake
    def _(grad_zs, grad_final, a, zs, checkpoints, w, *args) -> tuple[Tensor, Tensor, Tensor]:
        grad_params = grad_final.new_empty((6, zs.shape[1] * zs.shape[2]))
        return torch.empty_like(zs[1:]), torch.empty_like(grad_final), grad_params

    def setup_context(ctx, inputs, output) -> None:
        a, state, w, *args = inputs
        ps, alpha, method, chunk = _split(tuple(args), model)
        ctx.method, ctx.chunk, ctx.state_dtype = method, chunk, state.dtype
        # Only a recomputation reads a again: with stored states it is not kept alive.
        kept = a if chunk != 1 else a.new_empty((0,))
        ctx.save_for_backward(kept, output[0], output[2], w, *ps, alpha)

    def backward(ctx, grad_zs: Tensor, grad_final: Tensor, _grad_checkpoints: Tensor):
        a, zs, checkpoints, w, *rest = ctx.saved_tensors
        ps, alpha = rest[: len(model.params)], rest[-1]
        grad_a, grad_state, grad_params = backward_op(
            grad_zs.contiguous(), grad_final.contiguous(), a, zs, checkpoints, w, *ps, alpha,
            ctx.method, ctx.chunk,
        )  # fmt: skip
        H = zs.shape[-1]
        # z before step 0 meets w in step 0's product only; w meets every step's z.
        grad_z0 = (grad_a[0] @ w).to(ctx.state_dtype)
        grad_w = grad_a.reshape(-1, H).t() @ zs[:-1].reshape(-1, H)
        grads = parameter_grads(grad_params, ps)
        grad_init = torch.cat([grad_z0.unsqueeze(0), grad_state])
        return grad_a, grad_init, grad_w, *grads, None, None, None

    forward.register_autograd(backward, setup_context=setup_context)
    return getattr(torch.ops.lifexport, f"{model.name}_recurrent_sequence").default


RECURRENT_OPS: dict[str, torch._ops.OpOverload] = {
    name: _define(MODELS[name]) for name in RECURRENT_MODELS
}
"""The fused recurrent sequence op of each model, by name."""
