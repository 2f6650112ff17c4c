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

A new surrogate family joins through :func:`register_surrogate` (its ``method`` name and
gradient formula; the ops are defined from them), after which every layer accepts its
``method``; its ONNX translation is a row of the export domain (see ``docs/extending.md``).

Norse 1.1.0's SuperSpike backward ignores ``alpha`` (it computes :math:`1/(|x|+1)^2`); this
module follows the fixed formula of the paper and of Norse's main branch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "SURROGATES",
    "METHODS",
    "Surrogate",
    "define_surrogate",
    "heaviside",
    "methods",
    "register_surrogate",
    "sign",
    "spike",
    "threshold",
    "unregister_surrogate",
]


def heaviside(x: Tensor) -> Tensor:
    r"""The Heaviside step: 1 where ``x > 0``, else 0, in ``x``'s dtype (NaN gives 0).

    Examples:
        >>> heaviside(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0., 0., 1.])
    """
    return torch.gt(x, 0.0).to(x.dtype)


# Each formula maps (grad_output, x, alpha) to the gradient w.r.t. x, in Norse's op order,
# so that gradients agree with Norse to the last bits where the formulas coincide.
def _super_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    return g / (alpha * x.abs() + 1.0).pow(2)


def _triangle_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    return g * alpha * torch.relu(1.0 - x.abs())


def _tanh_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    return g * (1.0 - (x * alpha).tanh().pow(2))


def _circ_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    # Norse's expression (equal to alpha^3 / r^1.5), kept for its bits; it gives inf/inf where
    # r overflows and may cancel to a tiny negative, hence the where and the clamp.
    r2 = alpha**2 + x.pow(2)
    dz = (-(x.pow(2) / (2.0 * r2.pow(1.5))) + 1.0 / (2.0 * r2.sqrt())) * 2.0 * alpha
    return g * torch.where(torch.isinf(r2), 0.0, dz).clamp_min(0.0)


def _heavi_erfc_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    return (2.0 * torch.exp(-(alpha * x).pow(2))) / math.sqrt(math.pi) * g


@dataclass(frozen=True)
class Surrogate:
    """One surrogate family: its ``method`` name and torch ops.

    Each family has two pairs of custom ops that compute the same thing and differ only in
    how they take ``alpha``:

    - ``spike``/``spike_grad`` take it as a 0-dim tensor: what eager and compiled code run.
      A tensor is read at run time, so a new alpha neither recompiles nor is baked into a
      graph (a ``float`` in the schema would be a compile-time constant, and a symbolic float
      fails the schema; torch 2.13).
    - ``spike_attr``/``spike_attr_grad`` take it as a ``float``: what an export records while
      tracing (see :func:`threshold`), so that the ONNX node carries it as its ``alpha``
      attribute.

    Attributes:
        method: the ``method`` string that selects it, as in Norse (``"super"``).
        grad_formula: ``(grad_output, x, alpha) -> grad_x`` in plain torch.
        spike: ``lifexport::<method>_spike(Tensor x, Tensor alpha) -> Tensor``.
        spike_grad: ``lifexport::<method>_spike_grad(Tensor grad, Tensor x, Tensor alpha)``.
        spike_attr: ``lifexport::<method>_spike_attr(Tensor x, float alpha) -> Tensor``.
        spike_attr_grad: ``lifexport::<method>_spike_attr_grad(Tensor grad, Tensor x,
            float alpha)``.
    """

    method: str
    grad_formula: Callable[[Tensor, Tensor, Tensor | float], Tensor]
    spike: torch._ops.OpOverload
    spike_grad: torch._ops.OpOverload
    spike_attr: torch._ops.OpOverload
    spike_attr_grad: torch._ops.OpOverload


def _register_inductor_decomposition(op: torch._ops.OpOverload, fn: Callable) -> None:
    """Let inductor lower ``op`` as ``fn``'s elementwise math so it fuses with its neighbours.

    Without this a custom op is an opaque extern call in inductor's code (about 2x slower
    for a LIF step on CPU); ``torch.export`` does not consult this table, so exported graphs
    still hold the named op. Seen on torch 2.13: the table is private API.
    """
    from torch._inductor import decomposition

    decomposition.register_decomposition(op)(fn)
    # Inductor caches its table at the first compile (torch 2.13: ``fast_random_decomps``);
    # a surrogate registered after a compile must reach it too, else lowering fails.
    cached = getattr(decomposition, "fast_random_decomps", None)
    if hasattr(cached, "cache_clear"):
        cached.cache_clear()


def _define_spike_ops(
    name: str, alpha_type: str, grad_formula: Callable
) -> tuple[torch._ops.OpOverload, torch._ops.OpOverload]:
    """The spike op ``lifexport::<name>`` and its backward ``lifexport::<name>_grad``, with
    ``alpha`` of schema type ``alpha_type`` (``Tensor`` or ``float``), side by side."""
    lib = torch.library

    # forward: the Heaviside step; its fake kernel only describes the output.
    @lib.custom_op(
        f"lifexport::{name}", mutates_args=(), schema=f"(Tensor x, {alpha_type} alpha) -> Tensor"
    )
    def spike(x: Tensor, alpha: Tensor | float) -> Tensor:
        return heaviside(x)

    @spike.register_fake
    def _(x: Tensor, alpha: Tensor | float) -> Tensor:
        return torch.empty_like(x)

    # backward: the surrogate derivative, itself a named op so traced backwards keep it.
    @lib.custom_op(
        f"lifexport::{name}_grad",
        mutates_args=(),
        schema=f"(Tensor grad, Tensor x, {alpha_type} alpha) -> Tensor",
    )
    def spike_grad(grad: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
        return grad_formula(grad, x, alpha)

    @spike_grad.register_fake
    def _(grad: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
        return torch.empty_like(x)

    def setup_context(ctx, inputs, output) -> None:
        x, alpha = inputs
        if isinstance(alpha, Tensor):
            ctx.save_for_backward(x, alpha)
        else:
            ctx.save_for_backward(x)
            ctx.alpha = alpha

    def backward(ctx, grad: Tensor):
        x, *alpha = ctx.saved_tensors
        alpha = alpha[0] if alpha else ctx.alpha
        return spike_grad(grad, x, alpha), None  # alpha is a hyperparameter: no gradient

    spike.register_autograd(backward, setup_context=setup_context)

    spike_op = getattr(torch.ops.lifexport, name).default
    grad_op = getattr(torch.ops.lifexport, f"{name}_grad").default
    _register_inductor_decomposition(spike_op, lambda x, alpha: heaviside(x))
    _register_inductor_decomposition(grad_op, grad_formula)
    return spike_op, grad_op


def define_surrogate(method: str, grad_formula: Callable) -> Surrogate:
    """Define both op pairs of one surrogate family (see :class:`Surrogate`), without
    registering it; :func:`register_surrogate` does both.

    Raises:
        ValueError: ``method`` is not a lower-case Python identifier, or is ``heaviside``.
        RuntimeError: ops of that name exist already (torch cannot redefine them).
    """
    if not isinstance(method, str) or not method.isidentifier() or method != method.lower():
        raise ValueError(
            f"method must be a lower-case Python identifier (it names the ops "
            f"lifexport::<method>_spike), got {method!r}"
        )
    if method == "heaviside":
        raise ValueError("method 'heaviside' is the step without gradient; choose another name")
    if hasattr(torch.ops.lifexport, f"{method}_spike"):
        raise RuntimeError(
            f"ops lifexport::{method}_spike are defined already and torch cannot redefine them; "
            "choose another method name"
        )
    return Surrogate(
        method,
        grad_formula,
        *_define_spike_ops(f"{method}_spike", "Tensor", grad_formula),
        *_define_spike_ops(f"{method}_spike_attr", "float", grad_formula),
    )


SURROGATES: dict[str, Surrogate] = {
    s.method: s
    for s in (
        define_surrogate("super", _super_grad),
        define_surrogate("triangle", _triangle_grad),
        define_surrogate("tanh", _tanh_grad),
        define_surrogate("circ", _circ_grad),
        define_surrogate("heavi_erfc", _heavi_erfc_grad),
    )
}
"""The surrogate families by ``method`` name: the built-in ones and those registered with
:func:`register_surrogate`. Read it, do not write it: registration checks what it adds."""

METHODS: tuple[str, ...] = ("heaviside", *SURROGATES)
"""The built-in ``method`` names: ``heaviside`` (no gradient) and the built-in surrogates.
:func:`methods` adds the registered ones."""

_BUILT_IN = frozenset(METHODS)

# Every family whose ops exist, registered or not: torch cannot redefine an op, so a family
# registered again (after unregister_surrogate) with the same formula takes its ops back.
_DEFINED: dict[str, Surrogate] = dict(SURROGATES)


def methods() -> tuple[str, ...]:
    """Every valid ``method`` now: ``heaviside`` and each surrogate of :data:`SURROGATES`."""
    return ("heaviside", *SURROGATES)


def register_surrogate(method: str, grad_formula: Callable) -> Surrogate:
    r"""Add a surrogate family: its ops are defined and it joins :data:`SURROGATES`, so every
    layer and step accepts ``method`` from then on.

    The forward is the Heaviside step, as for every family; only the backward differs.
    The fused kernels implement the built-in families only: a layer with another method
    runs the ``scan`` loop (``backend="auto"``; see :func:`lifexport.kernels.use_kernel`).
    A training-mode ONNX export needs the family's row in the export domain
    (``lifexport.export.DomainOp(...).register()``); inference exports need nothing more.

    Args:
        method: the new ``method`` name, a lower-case identifier (``"fast_sigmoid"``).
        grad_formula: ``(grad_output, x, alpha) -> grad_x`` in plain elementwise torch;
            ``alpha`` is a 0-dim tensor or a float.

    Returns:
        The registered :class:`Surrogate`.

    Raises:
        ValueError: ``method`` is registered already, or is not a valid name.
        RuntimeError: its ops were defined before with another ``grad_formula``.

    Examples:
        >>> def _grad(g, x, alpha):
        ...     return g * alpha * torch.exp(-alpha * x.abs())
        >>> s = register_surrogate("doc_exp", _grad)
        >>> "doc_exp" in methods()
        True
        >>> unregister_surrogate("doc_exp")
    """
    if method in SURROGATES or method == "heaviside":
        raise ValueError(f"method {method!r} is registered already; choose another name")
    if not callable(grad_formula):
        raise TypeError(
            f"grad_formula must be a function (grad, x, alpha) -> grad_x, got "
            f"{type(grad_formula).__name__}"
        )
    surrogate = _DEFINED.get(method)
    if surrogate is None:
        surrogate = _DEFINED[method] = define_surrogate(method, grad_formula)
    elif surrogate.grad_formula is not grad_formula:
        raise RuntimeError(
            f"the ops of method {method!r} were defined with another grad_formula and torch "
            "cannot redefine them; choose another method name"
        )
    SURROGATES[method] = surrogate
    return surrogate


def unregister_surrogate(method: str) -> None:
    """Remove a family added by :func:`register_surrogate` from :data:`SURROGATES` (its ops
    stay defined; registering it again with the same formula reuses them).

    Raises:
        ValueError: ``method`` is built in, or not registered.
    """
    if method in _BUILT_IN:
        raise ValueError(f"method {method!r} is built in and cannot be unregistered")
    if method not in SURROGATES:
        raise ValueError(f"method {method!r} is not registered; registered: {list(SURROGATES)}")
    del SURROGATES[method]


def check_method(method: str, name: str = "method") -> None:
    """Raise ``ValueError`` listing the valid names unless ``method`` is one of
    :func:`methods`."""
    valid = methods()
    if method not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}; got {method!r}")


def check_alpha(alpha: object, name: str = "alpha", values: bool = True) -> None:
    """``alpha`` must be one positive, finite number: a real number or a one-element tensor.

    A tensor's value is checked only in eager mode and with ``values`` (under
    ``torch.compile`` reading it would break the graph; modules check theirs at construction
    and once per call).

    Raises:
        ValueError: a tensor of more than one element (the surrogate width is one number per
            layer, not per neuron), or a value that is not positive and finite.
        TypeError: neither a real number nor a floating-point tensor.
    """
    if isinstance(alpha, Tensor):
        if alpha.numel() != 1:
            raise ValueError(
                f"{name} must be a number or a one-element tensor (one surrogate width per "
                f"layer); got a tensor of shape {tuple(alpha.shape)}"
            )
        if not alpha.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {alpha.dtype}")
        if not values or torch.compiler.is_compiling():
            return
        alpha = alpha.item()
    elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(alpha).__name__}")
    # Comparisons rather than math.isfinite: under torch.compile a float that changed between
    # calls becomes symbolic (torch 2.13, specialize_float=False) and math.isfinite breaks it.
    if not 0 < alpha < math.inf:
        raise ValueError(f"{name} must be a positive, finite number, got {alpha}")


def alpha_tensor(alpha: float | Tensor, like: Tensor) -> Tensor:
    """``alpha`` as the 0-dim tensor the spike ops take, in ``like``'s dtype and device.

    A Python number is rounded to ``like``'s dtype, as torch rounds a scalar operand, so the
    surrogate's arithmetic is the same either way.
    """
    if isinstance(alpha, Tensor):
        alpha = alpha if alpha.dim() == 0 else alpha.reshape(())
        return alpha.to(dtype=like.dtype, device=like.device)  # itself, if they match
    return torch.tensor(alpha, dtype=like.dtype, device=like.device)


def threshold(x: Tensor, method: str, alpha: float | Tensor) -> Tensor:
    r"""Spike where ``x > 0``, with the surrogate gradient of ``method`` in the backward.

    Args:
        x: distance to threshold, typically ``v - v_th``.
        method: one of :func:`methods`.
        alpha: surrogate width, positive; a number or a one-element tensor (a tensor is
            never read while tracing, so a new value does not recompile).

    Returns:
        A tensor of 0s and 1s of ``x``'s shape and dtype.

    Raises:
        ValueError: ``method`` is not one of :func:`methods`, or ``alpha`` is not one
            positive number.

    Examples:
        >>> x = torch.tensor([-0.5, 0.5], requires_grad=True)
        >>> z = threshold(x, "super", 1.0)
        >>> z.sum().backward()
        >>> z, x.grad
        (tensor([0., 1.], grad_fn=<...>), tensor([0.4444, 0.4444]))
    """
    check_method(method)
    check_alpha(alpha)
    return spike(x, method, alpha)


def spike(x: Tensor, method: str, alpha: float | Tensor) -> Tensor:
    """:func:`threshold` without argument checks: for steps that checked ``p`` already.

    What a neuron layer's step calls for each spike: the spike op of ``method`` (a named
    node in exported graphs), or the plain Heaviside step for ``heaviside``."""
    if method == "heaviside":
        return heaviside(x)
    surrogate = SURROGATES[method]
    # torch 2.11: is_exporting() is also true under torch.compile; there a Python float alpha
    # takes the float op too, while a symbolic one (not a float) and a module's (a tensor)
    # take the tensor op.
    if torch.compiler.is_exporting() and isinstance(alpha, (int, float)):
        return surrogate.spike_attr(x, float(alpha))  # recorded as the ONNX node's attribute
    return surrogate.spike(x, alpha_tensor(alpha, x))


def sign(x: Tensor, method: str, alpha: float | Tensor) -> Tensor:
    """``2 * threshold(x) - 1``: +1 where ``x > 0``, else -1, with the same surrogate."""
    return 2 * threshold(x, method, alpha) - 1
