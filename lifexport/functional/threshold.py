r"""Spike thresholds with surrogate gradients.

The forward pass of every method is the Heaviside step :math:`H(x) = 1` for :math:`x > 0`,
else :math:`0`, in the dtype of ``x``. The backward pass replaces :math:`H'(x)`, which is zero
almost everywhere, by a surrogate derivative chosen by ``method``; the formulas are Norse's:

=============  =============================================================  ===============
method         surrogate derivative :math:`\partial z / \partial x`           torch op
=============  =============================================================  ===============
``super``      :math:`1 / (\alpha |x| + 1)^2` (SuperSpike)                    ``super_spike``
``triangle``   :math:`\alpha \max(0, 1 - |x|)`                                ``triangle_spike``
``tanh``       :math:`1 - \tanh^2(\alpha x)`                                  ``tanh_spike``
``circ``       :math:`\alpha^3 / (\alpha^2 + x^2)^{3/2}`                      ``circ_spike``
``heavi_erfc`` :math:`2 e^{-(\alpha x)^2} / \sqrt{\pi}`                        ``heavi_erfc_spike``
``heaviside``  none (the step is not differentiable)                          (plain torch)
=============  =============================================================  ===============

Each surrogate family is a pair of ``torch.library`` custom ops in the ``lifexport``
namespace: the spike ``lifexport::<name>_spike(x, alpha)`` and its backward
``lifexport::<name>_spike_grad(grad, x, alpha)``, each with a fake kernel, wired together by
``register_autograd``. That one design serves both consumers:

- ``torch.export`` (and so the ONNX exporter) keeps every spike, and every surrogate
  gradient of a traced backward, as one named node;
- ``torch.compile`` sees no graph break, and inductor decomposes both ops into the plain
  elementwise math below (see :func:`_register_inductor_decomposition`), so they fuse with
  the neuron update around them instead of running as opaque calls.

Norse 1.1.0's SuperSpike backward ignores ``alpha`` (it computes :math:`1/(|x|+1)^2`); this
module follows the fixed formula of the paper and of Norse's main branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SURROGATES", "METHODS", "Surrogate", "heaviside", "threshold", "sign"]


def heaviside(x: Tensor) -> Tensor:
    r"""The Heaviside step: 1 where ``x > 0``, else 0, in ``x``'s dtype (NaN gives 0).

    Examples:
        >>> heaviside(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 0., 1.])
    """
    return torch.gt(x, 0.0).to(x.dtype)


# Each formula maps (grad_output, x, alpha) to the gradient w.r.t. x, in Norse's op order,
# so that gradients agree with Norse to the last bits where the formulas coincide.
def _super_grad(g: Tensor, x: Tensor, alpha: float) -> Tensor:
    return g / (alpha * x.abs() + 1.0).pow(2)


def _triangle_grad(g: Tensor, x: Tensor, alpha: float) -> Tensor:
    return g * alpha * torch.relu(1.0 - x.abs())


def _tanh_grad(g: Tensor, x: Tensor, alpha: float) -> Tensor:
    return g * (1.0 - (x * alpha).tanh().pow(2))


def _circ_grad(g: Tensor, x: Tensor, alpha: float) -> Tensor:
    # Norse's expression (equal to alpha^3 / r^1.5), kept for its bits; it gives inf/inf where
    # r overflows and may cancel to a tiny negative, hence the where and the clamp.
    r2 = alpha**2 + x.pow(2)
    dz = (-(x.pow(2) / (2.0 * r2.pow(1.5))) + 1.0 / (2.0 * r2.sqrt())) * 2.0 * alpha
    return g * torch.where(torch.isinf(r2), 0.0, dz).clamp_min(0.0)


def _heavi_erfc_grad(g: Tensor, x: Tensor, alpha: float) -> Tensor:
    return (2.0 * torch.exp(-(alpha * x).pow(2))) / math.sqrt(math.pi) * g


@dataclass(frozen=True)
class Surrogate:
    """One surrogate family: its ``method`` name, ONNX op type and torch ops.

    Attributes:
        method: the ``method`` string that selects it, as in Norse (``"super"``).
        onnx_name: the op type of the spike in the ``lifexport`` ONNX domain
            (``"SuperSpike"``); its backward is ``onnx_name + "Grad"``.
        grad_formula: ``(grad_output, x, alpha) -> grad_x`` in plain torch.
        spike: the custom op ``lifexport::<method>_spike(Tensor x, float alpha) -> Tensor``.
        spike_grad: the custom op
            ``lifexport::<method>_spike_grad(Tensor grad, Tensor x, float alpha) -> Tensor``.
    """

    method: str
    onnx_name: str
    grad_formula: Callable[[Tensor, Tensor, float], Tensor]
    spike: torch._ops.OpOverload
    spike_grad: torch._ops.OpOverload


def _register_inductor_decomposition(op: torch._ops.OpOverload, fn: Callable) -> None:
    """Let inductor lower ``op`` as ``fn``'s elementwise math so it fuses with its neighbours.

    Without this a custom op is an opaque extern call in inductor's code (about 2x slower
    for a LIF step on CPU); ``torch.export`` does not consult this table, so exported graphs
    still hold the named op. Seen on torch 2.13: the table is private API.
    """
    from torch._inductor.decomposition import register_decomposition

    register_decomposition(op)(fn)


def _define_surrogate(
    method: str, onnx_name: str, grad_formula: Callable[[Tensor, Tensor, float], Tensor]
) -> Surrogate:
    """Define the forward and backward custom ops of one surrogate family, side by side."""
    name = f"lifexport::{method}_spike"
    lib = torch.library

    # forward: the Heaviside step; its fake kernel only describes the output.
    @lib.custom_op(name, mutates_args=(), schema="(Tensor x, float alpha) -> Tensor")
    def spike(x: Tensor, alpha: float) -> Tensor:
        return heaviside(x)

    @spike.register_fake
    def _(x: Tensor, alpha: float) -> Tensor:
        return torch.empty_like(x)

    # backward: the surrogate derivative, itself a named op so traced backwards keep it.
    @lib.custom_op(
        f"{name}_grad", mutates_args=(), schema="(Tensor grad, Tensor x, float alpha) -> Tensor"
    )
    def spike_grad(grad: Tensor, x: Tensor, alpha: float) -> Tensor:
        return grad_formula(grad, x, alpha)

    @spike_grad.register_fake
    def _(grad: Tensor, x: Tensor, alpha: float) -> Tensor:
        return torch.empty_like(x)

    def setup_context(ctx, inputs, output) -> None:
        x, alpha = inputs
        ctx.save_for_backward(x)
        ctx.alpha = alpha

    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        return spike_grad(grad, x, ctx.alpha), None

    spike.register_autograd(backward, setup_context=setup_context)

    spike_op = getattr(torch.ops.lifexport, f"{method}_spike").default
    grad_op = getattr(torch.ops.lifexport, f"{method}_spike_grad").default
    _register_inductor_decomposition(spike_op, lambda x, alpha: heaviside(x))
    _register_inductor_decomposition(grad_op, grad_formula)
    return Surrogate(method, onnx_name, grad_formula, spike_op, grad_op)


SURROGATES: dict[str, Surrogate] = {
    s.method: s
    for s in (
        _define_surrogate("super", "SuperSpike", _super_grad),
        _define_surrogate("triangle", "TriangleSpike", _triangle_grad),
        _define_surrogate("tanh", "TanhSpike", _tanh_grad),
        _define_surrogate("circ", "CircSpike", _circ_grad),
        _define_surrogate("heavi_erfc", "HeaviErfcSpike", _heavi_erfc_grad),
    )
}
"""The surrogate families by ``method`` name."""

METHODS: tuple[str, ...] = ("heaviside", *SURROGATES)
"""Every valid ``method``: ``heaviside`` (no gradient) and the surrogates."""


def check_method(method: str, name: str = "method") -> None:
    """Raise ``ValueError`` listing the valid names unless ``method`` is one of them."""
    if method not in METHODS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, METHODS))}; got {method!r}")


def surrogate_alpha(alpha: float | Tensor, name: str = "alpha") -> float:
    """``alpha`` as the Python float the spike ops take as an attribute.

    Raises:
        ValueError: ``alpha`` is a tensor of more than one element (the surrogate width is
            one number per layer, it is not per neuron) or is not finite.
        TypeError: ``alpha`` is neither a real number nor a tensor.
    """
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor (one surrogate width per "
                f"layer); got a tensor of shape {tuple(alpha.shape)}"
            )
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(alpha).__name__}")
    # Comparisons rather than math.isfinite: under torch.compile a float that changed between
    # calls becomes symbolic (torch 2.13, specialize_float=False) and math.isfinite breaks it.
    if not -math.inf < alpha < math.inf:
        raise ValueError(f"{name} must be finite, got {alpha}")
    return alpha if isinstance(alpha, float) else float(alpha)


def threshold(x: Tensor, method: str, alpha: float | Tensor) -> Tensor:
    r"""Spike where ``x > 0``, with the surrogate gradient of ``method`` in the backward.

    Args:
        x: distance to threshold, typically ``v - v_th``.
        method: one of :data:`METHODS`.
        alpha: surrogate width; a number or a one-element tensor (pass a Python float
            inside ``torch.compile`` to avoid reading a tensor's value while tracing).

    Returns:
        A tensor of 0s and 1s of ``x``'s shape and dtype.

    Raises:
        ValueError: ``method`` is not one of :data:`METHODS`, or ``alpha`` is not one number.

    Examples:
        >>> x = torch.tensor([-0.5, 0.5], requires_grad=True)
        >>> z = threshold(x, "super", 1.0)
        >>> z.sum().backward()
        >>> z, x.grad
        (tensor([0., 1.], grad_fn=<...>), tensor([0.4444, 0.4444]))
    """
    check_method(method)
    alpha = surrogate_alpha(alpha)
    if method == "heaviside":
        return heaviside(x)
    return SURROGATES[method].spike(x, alpha)


def sign(x: Tensor, method: str, alpha: float | Tensor) -> Tensor:
    """``2 * threshold(x) - 1``: +1 where ``x > 0``, else -1, with the same surrogate."""
    return 2 * threshold(x, method, alpha) - 1
