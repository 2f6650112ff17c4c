"""The fused sequences as torch custom ops: ``lifexport::<model>_sequence`` and its backward.

Each op has a fake kernel (shapes only, so ``torch.compile`` traces it with a symbolic T and
no graph break) and an autograd formula that calls the backward op, itself a custom op so a
compiled backward holds it as one node. The real kernels are Triton's, imported on first use
(:mod:`lifexport.kernels._triton`), so defining the ops needs no Triton.

Schema, for ``model`` in ``li``, ``lif``, ``lif_refrac``::

    <model>_sequence(Tensor x, Tensor state, Tensor a_mem, Tensor a_syn, Tensor v_leak
                     [, Tensor v_th, Tensor v_reset][, Tensor rho_reset][, Tensor alpha,
                     str method], int chunk) -> (Tensor y, Tensor final_state, Tensor checkpoints)
    <model>_sequence_backward(Tensor grad_y, Tensor grad_final, Tensor x, Tensor checkpoints,
                              <the parameters, alpha and method as above>, int chunk)
                              -> (Tensor grad_x, Tensor grad_state, Tensor grad_params)

``x`` is ``(T, *neurons)``, ``state`` the stacked state ``(NS, *neurons)`` (``v, i[, rho]``),
each parameter 1-D: one value, or one per neuron repeating over the leading neuron dims (see
:func:`lifexport.kernels.per_neuron`). ``a_mem = dt * tau_mem_inv`` and
``a_syn = -dt * tau_syn_inv`` are computed by the caller in torch, as the step functions do.
The state, parameters and ``alpha`` share one dtype, the one the steps compute in; ``x`` has
it too, or is float16/bfloat16 over a float32 state. ``y`` has ``x``'s dtype for spiking
models and the state's for ``li`` (:meth:`KernelModel.output_dtype`). ``chunk`` is the
checkpoint interval: 1 keeps every step's state for the backward, :data:`CHUNK` one in 32;
``checkpoints`` is ``(ceil(T / chunk), NS, M)`` in the state's dtype, ``M`` the neurons.
``grad_params`` is ``(6, M)``: each neuron's share of each parameter slot's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CHUNK = 32
"""Checkpoint interval (steps) of the ``recompute`` memory mode; ``store`` uses 1."""

METHOD_CODES: dict[str, int] = {
    "heaviside": 0,
    "super": 1,
    "triangle": 2,
    "tanh": 3,
    "circ": 4,
    "heavi_erfc": 5,
}
"""The spike methods the kernels implement, and each one's code (a constexpr argument of the
backward kernel, which computes that surrogate's formula); other methods run the ``scan``
loop."""


def lif_params(p, dt: float) -> list:
    """The LIF parameter slots ``a_mem, a_syn, v_leak, v_th, v_reset`` of the kernels from a
    ``LIFParameters`` ``p`` (or the first three from an ``LIParameters``), ``a_mem`` and
    ``a_syn`` computed in torch as the step functions compute them."""
    decays = [dt * p.tau_mem_inv, -dt * p.tau_syn_inv, p.v_leak]
    return [*decays, p.v_th, p.v_reset] if hasattr(p, "v_th") else decays


@dataclass(frozen=True)
class KernelModel:
    """One neuron model's fused op: its name, kernel code, state and parameter names."""

    name: str
    code: int
    states: tuple[str, ...]
    params: tuple[str, ...]
    spikes: bool

    def output_dtype(self, x: torch.dtype, state: torch.dtype) -> torch.dtype:
        """The dtype of ``y``: spikes (0 and 1, exact) in the input's, a potential in the
        state's (for half-precision ``x`` over a float32 state, float32)."""
        return x if self.spikes else state


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


def parameter_grads(grad_params: Tensor, params: tuple[Tensor, ...]) -> list[Tensor]:
    """Each parameter's gradient from the kernels' per-neuron shares ``(6, M)``: summed over
    the neurons that share it (the parameter repeats over the leading neuron dims)."""
    return [g.reshape(-1, p.numel()).sum(0) for g, p in zip(grad_params, params)]


def _flat(t: Tensor, rows: int) -> Tensor:
    """``t`` as a contiguous ``(rows, M)`` view or copy."""
    return t.reshape(rows, -1).contiguous()


def _split(args: tuple, model: KernelModel) -> tuple[tuple[Tensor, ...], Tensor | None, str, int]:
    """``(params, alpha, method, chunk)`` from the tail of an op's arguments."""
    n = len(model.params)
    params = tuple(args[:n])
    if model.spikes:
        return params, args[n], args[n + 1], args[-1]
    return params, None, "heaviside", args[-1]


def _define(model: KernelModel) -> torch._ops.OpOverload:
    """Define ``lifexport::<model>_sequence`` and its backward; return the forward op.

    Long because the four registrations of one op (forward, fake, backward op, autograd)
    share the closure over ``model`` and are read together.
    """
    params = ", ".join(f"Tensor {p}" for p in model.params)
    tail = ", Tensor alpha, str method" if model.spikes else ""
    name = f"lifexport::{model.name}_sequence"
    ns = len(model.states)

    @torch.library.custom_op(
        name,
        mutates_args=(),
        schema=f"(Tensor x, Tensor state, {params}{tail}, int chunk) -> (Tensor, Tensor, Tensor)",
    )
    def forward(x: Tensor, state: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        ps, _, _, chunk = _split(args, model)
        y, final, checkpoints = _kernels().launch_forward(
            _flat(x, x.shape[0]), _flat(state, ns), _six(ps), model.code, chunk,
            model.output_dtype(x.dtype, state.dtype),
        )  # fmt: skip
        return y.view(x.shape), final.view(state.shape), checkpoints

    @forward.register_fake
    def _(x: Tensor, state: Tensor, *args) -> tuple[Tensor, Tensor, Tensor]:
        chunk = args[-1]
        chunks = (x.shape[0] + chunk - 1) // chunk
        checkpoints = state.new_empty((chunks, ns, x[0].numel()))
        y = x.new_empty(x.shape, dtype=model.output_dtype(x.dtype, state.dtype))
        return y, torch.empty_like(state), checkpoints

    @torch.library.custom_op(
        f"{name}_backward",
        mutates_args=(),
        schema=f"(Tensor grad_y, Tensor grad_final, Tensor x, Tensor checkpoints, {params}"
        f"{tail}, int chunk) -> (Tensor, Tensor, Tensor)",
    )
    def backward_op(
        grad_y: Tensor, grad_final: Tensor, x: Tensor, checkpoints: Tensor, *args
    ) -> tuple[Tensor, Tensor, Tensor]:
        ps, alpha, method, chunk = _split(args, model)
        alpha = ps[0] if alpha is None else alpha  # LI: no spike, the kernel never reads it
        grad_x, grad_init, grad_params = _kernels().launch_backward(
            _flat(grad_y, x.shape[0]), _flat(grad_final, ns), _flat(x, x.shape[0]),
            checkpoints, _six(ps), alpha, model.code, method, chunk,
        )  # fmt: skip
        return grad_x.view(x.shape), grad_init.view(grad_final.shape), grad_params

    @backward_op.register_fake
    def _(grad_y, grad_final, x, checkpoints, *args) -> tuple[Tensor, Tensor, Tensor]:
        grad_params = checkpoints.new_empty((6, x[0].numel()))
        return torch.empty_like(x), torch.empty_like(grad_final), grad_params

    def setup_context(ctx, inputs, output) -> None:
        x, state, *args = inputs
        ps, alpha, method, chunk = _split(tuple(args), model)
        ctx.method = method
        ctx.chunk = chunk
        ctx.save_for_backward(x, output[2], *ps, *([] if alpha is None else [alpha]))

    def backward(ctx, grad_y: Tensor, grad_final: Tensor, _grad_checkpoints: Tensor):
        x, checkpoints, *rest = ctx.saved_tensors
        n = len(model.params)
        ps, alpha = rest[:n], rest[n:]
        tail = (*alpha, ctx.method) if model.spikes else ()
        grad_x, grad_init, grad_params = backward_op(
            grad_y.contiguous(), grad_final.contiguous(), x, checkpoints, *ps, *tail, ctx.chunk
        )
        grads = parameter_grads(grad_params, ps)
        return grad_x, grad_init, *grads, *((None, None) if model.spikes else ()), None

    forward.register_autograd(backward, setup_context=setup_context)
    return getattr(torch.ops.lifexport, f"{model.name}_sequence").default


OPS: dict[str, torch._ops.OpOverload] = {name: _define(m) for name, m in MODELS.items()}
"""The fused sequence op of each model, by name."""
