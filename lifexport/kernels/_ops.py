"""The fused sequences as torch custom ops: ``lifexport::<model>_sequence`` and its backward.

Each op has a fake kernel (shapes only, so ``torch.compile`` traces it with a symbolic T and
no graph break) and an autograd formula that calls the backward op, itself a custom op so a
compiled backward holds it as one node. The real kernels are Triton's, imported on first use
(:mod:`lifexport.kernels._triton`), so defining the ops needs no Triton.

Schema, for ``model`` in ``li``, ``lif``, ``lif_refrac``::

    <model>_sequence(Tensor x, Tensor state, Tensor a_mem, Tensor a_syn, Tensor v_leak
                     [, Tensor v_th, Tensor v_reset][, Tensor rho_reset][, Tensor alpha,
                     str method]) -> (Tensor y, Tensor final_state, Tensor checkpoints)

``x`` is ``(T, *neurons)``, ``state`` the stacked state ``(NS, *neurons)`` (``v, i[, rho]``),
each parameter 1-D: one value, or one per neuron repeating over the leading neuron dims (see
:func:`lifexport.kernels.per_neuron`). ``a_mem = dt * tau_mem_inv`` and
``a_syn = -dt * tau_syn_inv`` are computed by the caller in torch, as the step functions do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

#: Checkpoint interval of the forward (steps); mirrors ``_triton.CHUNK`` for the fake kernels.
CHUNK = 32


@dataclass(frozen=True)
class KernelModel:
    """One neuron model's fused op: its name, kernel code, state and parameter names."""

    name: str
    code: int
    states: tuple[str, ...]
    params: tuple[str, ...]
    spikes: bool


MODELS: dict[str, KernelModel] = {
    m.name: m
    for m in (
        KernelModel("li", 0, ("v", "i"), ("a_mem", "a_syn", "v_leak"), False),
        KernelModel("lif", 1, ("v", "i"), ("a_mem", "a_syn", "v_leak", "v_th", "v_reset"), True),
        KernelModel(
            "lif_refrac",
            2,
            ("v", "i", "rho"),
            ("a_mem", "a_syn", "v_leak", "v_th", "v_reset", "rho_reset"),
            True,
        ),
    )
}


def _kernels():
    """The Triton kernels module, imported (and the kernels defined) on first use."""
    from lifexport.kernels import _triton

    return _triton


def _six(params: tuple[Tensor, ...]) -> list[Tensor]:
    """The six parameter slots of the kernels; a model's unused ones repeat its first."""
    return [*params, *([params[0]] * (6 - len(params)))]


def _flat(t: Tensor, rows: int) -> Tensor:
    """``t`` as a contiguous ``(rows, M)`` view or copy."""
    return t.reshape(rows, -1).contiguous()


def _split(args: tuple, model: KernelModel) -> tuple[tuple[Tensor, ...], Tensor | None, str]:
    """``(params, alpha, method)`` from the tail of an op's arguments."""
    n = len(model.params)
    params = tuple(args[:n])
    if model.spikes:
        return params, args[n], args[n + 1]
    return params, None, "heaviside"


def _define(model: KernelModel) -> torch._ops.OpOverload:
    """Define ``lifexport::<model>_sequence`` and its backward; return the forward op.

    Long because the four registrations of one op (forward, fake, backward op, autograd)
    share the closure over ``model`` and are read together.
    """
    params = ", ".join(f"Tensor {p}" for p in model.params)
    tail = ", Tensor alpha, str method" if model.spikes else ""
    name = f"lifexport::{model.name}_sequence"

    @torch.library.custom_op(
        name,
        mutates_args=(),
        schema=f"(Tensor x, Tensor state, {params}{tail}) -> (Tensor, Tensor, Tensor)",
    )
    def forward(x: Tensor, state: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        ps, _, _ = _split(args, model)
        ns = len(model.states)
        y, final, checkpoints = _kernels().launch_forward(
            _flat(x, x.shape[0]), _flat(state, ns), _six(ps), model.code
        )
        return y.view(x.shape), final.view(state.shape), checkpoints

    @forward.register_fake
    def _(x: Tensor, state: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        chunks = (x.shape[0] + CHUNK - 1) // CHUNK
        checkpoints = x.new_empty((chunks, len(model.states), x[0].numel()))
        return torch.empty_like(x), torch.empty_like(state), checkpoints

    @torch.library.custom_op(
        f"{name}_backward",
        mutates_args=(),
        schema=f"(Tensor grad_y, Tensor grad_final, Tensor x, Tensor checkpoints, {params}"
        f"{tail}) -> (Tensor, Tensor, Tensor)",
    )
    def backward_op(
        grad_y: Tensor, grad_final: Tensor, x: Tensor, checkpoints: Tensor, *args
    ) -> tuple[Tensor, Tensor, Tensor]:
        ps, alpha, method = _split(args, model)
        alpha = ps[0] if alpha is None else alpha  # LI: no spike, the kernel never reads it
        grad_x, grad_init, grad_params = _kernels().launch_backward(
            _flat(grad_y, x.shape[0]), _flat(grad_final, len(model.states)), _flat(x, x.shape[0]),
            checkpoints, _six(ps), alpha, model.code, method,
        )  # fmt: skip
        return grad_x.view(x.shape), grad_init.view(grad_final.shape), grad_params

    @backward_op.register_fake
    def _(grad_y, grad_final, x, checkpoints, *args) -> tuple[Tensor, Tensor, Tensor]:
        grad_params = x.new_empty((6, x[0].numel()))
        return torch.empty_like(x), torch.empty_like(grad_final), grad_params

    def setup_context(ctx, inputs, output) -> None:
        x, state, *args = inputs
        ps, alpha, method = _split(tuple(args), model)
        ctx.method = method
        ctx.save_for_backward(x, output[2], *ps, *([] if alpha is None else [alpha]))

    def backward(ctx, grad_y: Tensor, grad_final: Tensor, _grad_checkpoints: Tensor):
        x, checkpoints, *rest = ctx.saved_tensors
        n = len(model.params)
        ps, alpha = rest[:n], rest[n:]
        tail = (*alpha, ctx.method) if model.spikes else ()
        grad_x, grad_init, grad_params = backward_op(
            grad_y.contiguous(), grad_final.contiguous(), x, checkpoints, *ps, *tail
        )
        # Each parameter's per-neuron gradient, summed over the neurons that share it.
        grads = [g.reshape(-1, p.numel()).sum(0) for g, p in zip(grad_params, ps)]
        return grad_x, grad_init, *grads, *((None, None) if model.spikes else ())

    forward.register_autograd(backward, setup_context=setup_context)
    return getattr(torch.ops.lifexport, f"{model.name}_sequence").default


OPS: dict[str, torch._ops.OpOverload] = {name: _define(m) for name, m in MODELS.items()}
"""The fused sequence op of each model, by name."""
