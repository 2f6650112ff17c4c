"""Layers with random per-neuron parameters, inputs that spike often, and the comparison of
the fused kernels against the step function's ``scan`` loop (eager).

The reference for a float16/bfloat16 input is what the kernels promise for it: the float32
layer on ``x.float()``, its spikes cast to ``x``'s dtype (``LI``'s potential stays float32),
and the autograd of that (so ``x``'s gradient is the float32 one rounded to ``x``'s dtype).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

from lifexport import kernels
from lifexport.functional import LIFParameters, LIFRefracParameters, LIParameters
from lifexport.modules import LI, LIF, LIFRefrac

TRAINABLE = {
    "lif_refrac": ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset", "rho_reset"),
    "lif": ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset"),
    "li": ("tau_syn_inv", "tau_mem_inv", "v_leak"),
}

# Surrogate widths that keep gradients from growing over time: triangle's peak is alpha, and
# circ's width grows with alpha (its peak is 1); the others narrow as alpha grows.
ALPHA = {"triangle": 0.5, "circ": 0.1}

# circ's gradient is Norse's difference of two terms, which cancel away from the threshold:
# there one ulp of r2 ** 1.5 moves it by 1e-5 relative. torch's CPU pow (Sleef) and the
# interpreter's (numpy) differ by an ulp in a few elements; on CUDA both are libdevice's.
GRAD_RTOL = {"circ": 1e-4}

SEQUENCES = {
    "lif_refrac": kernels.lif_refrac_sequence,
    "lif": kernels.lif_sequence,
    "li": kernels.li_sequence,
}
HALF = (torch.float16, torch.bfloat16)

# Gradients above this, from a loss with unit-sized weights, have exploded: the surrogate's
# slope compounds through v over hundreds of steps (circ and heavi_erfc at T = 257 on CUDA
# reach 1e9, or overflow to inf). See `compare`'s `exploded`.
EXPLODED = 1e6


def parameters(model: str, n: int, method: str, per_neuron: bool, dtype: torch.dtype):
    """Parameters of ``model``: per-neuron tensors ``(n,)`` (or numbers)."""
    g = torch.Generator().manual_seed(n)

    def value(low: float, high: float) -> torch.Tensor | float:
        if not per_neuron:
            return (low + high) / 2
        return (low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)).to(dtype)

    lif = dict(
        tau_syn_inv=value(150.0, 250.0),
        tau_mem_inv=value(60.0, 140.0),
        v_leak=value(-0.1, 0.1),
    )
    if model == "li":
        return LIParameters(**lif)
    lif.update(v_th=value(0.6, 1.2), v_reset=value(-0.2, 0.1))
    p = LIFParameters(**lif, method=method, alpha=ALPHA.get(method, 50.0))
    if model == "lif":
        return p
    return LIFRefracParameters(p, value(2.0, 6.0))


def layer(
    model: str,
    n: int,
    method: str = "super",
    per_neuron: bool = True,
    dtype: torch.dtype = torch.float32,
    backend: str = "scan",
    trainable: bool = True,
):
    """A sequence layer of ``model`` with every parameter trainable."""
    cls = {"lif_refrac": LIFRefrac, "lif": LIF, "li": LI}[model]
    p = parameters(model, n, method, per_neuron, dtype)
    names = TRAINABLE[model] if trainable else ()
    return cls(p, trainable=names, backend=backend).to(dtype)


def inputs(t: int, b: int, n: int, dtype=torch.float32, device="cpu", seed: int = 0):
    """Input currents that make most neurons spike every few steps."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, b, n, generator=g, dtype=torch.float64) * 40.0 + 15.0
    return x.to(dtype=dtype, device=device)


def initial_state(layer: torch.nn.Module, x: torch.Tensor, seed: int = 1):
    """A random state (rho counting down in some neurons) in ``x``'s dtype, requiring grad."""
    g = torch.Generator().manual_seed(seed)
    rest = layer.initial_state(x[0])
    leaves, spec = tree_flatten(rest)
    new = [torch.rand(t.shape, generator=g, dtype=torch.float64).to(t) for t in leaves]
    if len(new) == 3:  # rho: 0, 1 or 2
        new[2] = torch.floor(new[2] * 3)
    return tree_unflatten([t.requires_grad_() for t in new], spec)


@dataclass
class Run:
    """A sequence's outputs, final state and the gradients of a weighted sum of both w.r.t.
    the input, the initial state and every trainable parameter (in that order)."""

    y: torch.Tensor
    final: list[torch.Tensor]
    grads: tuple[torch.Tensor, ...]

    def tensors(self) -> list[torch.Tensor]:
        return [self.y, *self.final, *self.grads]


def run(fn, params, x, state, weights) -> Run:
    """``fn(x, state) -> (y, final)`` and the gradients w.r.t. ``x``, the leaves of ``state``
    and ``params`` of ``sum(y * weights[0]) + sum(final_k * weights[k])`` (``y`` upcast to the
    weights' dtype: its gradient is ``weights[0]`` in ``y``'s dtype)."""
    x = x.detach().requires_grad_()
    y, final = fn(x, state)
    leaves = tree_leaves(final)
    loss = (y.to(weights[0].dtype) * weights[0]).sum()
    loss = loss + sum((s * w).sum() for s, w in zip(leaves, weights[1:]))
    wrt = [x, *tree_leaves(state), *params]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)
    return Run(y, leaves, grads)


@dataclass
class Case:
    """A float32 (or float64) ``scan`` layer of ``model``, an input ``x`` (of the layer's dtype
    or half precision), a random initial state and the loss weights."""

    model: str
    method: str | None
    dtype: torch.dtype
    scan: torch.nn.Module
    x: torch.Tensor
    state: object
    weights: list[torch.Tensor]

    def reference(self) -> Run:
        """The ``scan`` loop on ``x`` in the layer's dtype, spikes cast back to ``x``'s."""
        spikes = self.model != "li"

        def fn(x, state):
            y, final = self.scan(x.to(self.dtype), state)
            return (y.to(x.dtype) if spikes else y), final

        return run(fn, list(self.scan.parameters()), self.x, self.state, self.weights)

    def fused(self, memory: str = "auto", x: torch.Tensor | None = None) -> Run:
        """The kernel (``memory``) on ``x`` (default: the case's), the layer's parameters."""
        sequence, scan = SEQUENCES[self.model], self.scan

        def fn(x, state):
            return sequence(x, state, scan.p, scan.dt, memory)

        x = self.x if x is None else x
        return run(fn, list(scan.parameters()), x, self.state, self.weights)


def case(model, method, x, per_neuron=True, dtype=torch.float32) -> Case:
    """The :class:`Case` of ``model`` (a layer of ``dtype``) on ``x``."""
    n = x.shape[-1]
    scan = layer(model, n, method, per_neuron, dtype, "scan").to(x.device)
    state = initial_state(scan, x.to(dtype))
    g = torch.Generator().manual_seed(2)
    shapes = [x.shape, *(t.shape for t in tree_leaves(state))]
    weights = [torch.randn(s, generator=g, dtype=torch.float64).to(x.device, dtype) for s in shapes]
    if model != "li":  # y's gradient arrives in y's dtype (x's): use weights it holds exactly
        weights[0] = weights[0].to(x.dtype).to(dtype)
    return Case(model, method, dtype, scan, x, state, weights)


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    what: str,
    rtol: float = 1e-6,
    exploded: bool = False,
    elementwise_rtol: float = 0.0,
):
    """Within ``rtol`` of the largest magnitude of ``expected`` (sums of many terms, in
    another order, differ by rounding relative to the terms, not to a small total), plus
    ``elementwise_rtol`` of each element's own magnitude (one rounding to half precision).

    ``exploded``: compare only where ``expected`` is finite and at most :data:`EXPLODED` in
    magnitude. Beyond that the gradient has exploded (inf, or 1e9 from unit-sized weights): an
    overflowed element has no value to compare, and one exploded element would set the scale
    of every other's tolerance (1e9 times ``rtol``), so that nothing else would be checked.
    Without ``exploded``, every element must be finite."""
    if exploded:
        keep = torch.isfinite(expected) & (expected.abs() <= EXPLODED)
        actual, expected = actual[keep], expected[keep]
    else:
        assert torch.isfinite(expected).all(), f"{what}: the reference is not finite"
    if expected.numel() == 0:
        return
    scale = expected.abs().max().item()
    torch.testing.assert_close(
        actual, expected, rtol=rtol + elementwise_rtol, atol=rtol * scale,
        msg=lambda m: f"{what}: {m}",
    )  # fmt: skip


def assert_equal(actual: Run, expected: Run, what: str):
    """Every output, state and gradient bit-equal (dtypes included)."""
    names = ["y", *(f"final {k}" for k in range(len(expected.final)))]
    names += [f"gradient {k}" for k in range(len(expected.grads))]
    for name, a, b in zip(names, actual.tensors(), expected.tensors(), strict=True):
        assert a.dtype == b.dtype, f"{what}: {name} is {a.dtype}, expected {b.dtype}"
        assert torch.equal(a, b), f"{what}: {name} differs"


def check(c: Case, fused: Run, ref: Run, exploded: bool = False):
    """Assert ``fused`` == ``ref``: outputs bit-equal (in the promised dtype), states and
    gradients close. A half-precision ``x``'s gradient is the float32 one rounded, on either
    side: the two may differ by one rounding of half precision where the float32 values
    straddle a rounding boundary."""
    y_dtype = c.x.dtype if c.model != "li" else c.dtype
    assert fused.y.dtype == ref.y.dtype == y_dtype, (fused.y.dtype, ref.y.dtype)
    assert fused.grads[0].dtype == c.x.dtype
    if c.model == "li":
        assert_close(fused.y, ref.y, "v")
    else:
        assert torch.equal(fused.y, ref.y), "spikes differ"
        assert 0 < ref.y.float().mean() < 1, "the input should make neurons spike, not always"
    for name, a, b in zip(("v", "i", "rho")[: len(ref.final)], fused.final, ref.final, strict=True):
        assert_close(a, b, f"final {name}")
    names = ["x", "v0", "i0", "rho0"][: 1 + len(ref.final)]
    names += [name for name, _ in c.scan.named_parameters()]
    rtol = GRAD_RTOL.get(c.method, 1e-6)
    half_ulp = torch.finfo(c.x.dtype).eps if c.x.dtype in HALF else 0.0
    for name, a, b in zip(names, fused.grads, ref.grads, strict=True):
        elementwise = half_ulp if name == "x" else 0.0
        assert_close(a, b, f"gradient w.r.t. {name}", rtol, exploded, elementwise)
    if exploded:
        kept = torch.isfinite(ref.grads[0]) & (ref.grads[0].abs() <= EXPLODED)
        assert kept.any(), "every gradient w.r.t. x exploded: nothing was compared"


def compare(
    model, method, x, per_neuron=True, dtype=torch.float32, memory="auto", exploded=False
) -> Case:
    """Assert the kernel (``memory``) == ``scan`` on ``x`` (see :func:`check`)."""
    c = case(model, method, x, per_neuron, dtype)
    check(c, c.fused(memory), c.reference(), exploded)
    return c


def compare_half(model, method, x, exploded=False):
    """Assert the kernel on half-precision ``x`` == ``scan`` on ``x.float()`` (see
    :func:`check`), ``store`` == ``recompute``, and, bit for bit, == the float32 kernel on the
    same values, ``x``'s gradient after its one rounding: the float32 arithmetic is the same,
    only the dtypes at the edges differ (``y``'s loss weights are exact in half precision, so
    its gradient is too)."""
    c = case(model, method, x)
    half = c.fused("store")
    check(c, half, c.reference(), exploded)
    assert_equal(c.fused("recompute"), half, "recompute vs store")
    full = c.fused("store", x=x.float())
    assert half.y.dtype == (torch.float32 if model == "li" else x.dtype)
    assert torch.equal(half.y, full.y.to(half.y.dtype))
    assert half.grads[0].dtype == x.dtype
    assert torch.equal(half.grads[0], full.grads[0].to(x.dtype)), "x's gradient, rounded"
    rest = zip([*half.final, *half.grads[1:]], [*full.final, *full.grads[1:]], strict=True)
    for k, (a, b) in enumerate(rest):
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b), f"state or gradient {k} differs from the float32 kernel's"
