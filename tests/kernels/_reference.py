"""Layers with random per-neuron parameters, inputs that spike often, and the comparison of
``backend="triton"`` against ``backend="scan"`` (the step function, eager)."""

from __future__ import annotations

import torch

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


def layer(model: str, n: int, method: str = "super", per_neuron: bool = True,
          dtype: torch.dtype = torch.float32, backend: str = "scan", trainable: bool = True):
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
    """A random state (rho counting down in some neurons), requiring grad."""
    g = torch.Generator().manual_seed(seed)
    rest = layer.initial_state(x[0])
    leaves = torch.utils._pytree.tree_leaves(rest)
    new = [torch.rand(t.shape, generator=g, dtype=torch.float64).to(t) for t in leaves]
    if len(new) == 3:  # rho: 0, 1 or 2
        new[2] = torch.floor(new[2] * 3)
    new = [t.requires_grad_() for t in new]
    return torch.utils._pytree.tree_unflatten(new, torch.utils._pytree.tree_structure(rest))


def run(layer, x, state, weights):
    """Outputs, final state, and the gradients of a weighted sum of both w.r.t. the input,
    the initial state and every trainable parameter."""
    x = x.detach().requires_grad_()
    y, final = layer(x, state)
    leaves = torch.utils._pytree.tree_leaves(final)
    loss = (y * weights[0]).sum() + sum((s * w).sum() for s, w in zip(leaves, weights[1:]))
    wrt = [x, *torch.utils._pytree.tree_leaves(state), *layer.parameters()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)
    return y, leaves, grads


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, rtol: float = 1e-6):
    """Within ``rtol`` of the largest magnitude of ``expected`` (sums of many terms, in
    another order, differ by rounding relative to the terms, not to a small total)."""
    scale = expected.abs().max().item()
    assert torch.isfinite(expected).all(), f"{what}: the reference is not finite"
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}"
    )


def compare(model, method, x, per_neuron=True, dtype=torch.float32):
    """Assert triton == scan on ``x``: outputs bit-equal, states and gradients close."""
    n = x.shape[-1]
    scan = layer(model, n, method, per_neuron, dtype, "scan").to(x.device)
    fused = layer(model, n, method, per_neuron, dtype, "triton").to(x.device)
    state = initial_state(scan, x)
    g = torch.Generator().manual_seed(2)
    shapes = [x.shape, *(t.shape for t in torch.utils._pytree.tree_leaves(state))]
    weights = [torch.randn(s, generator=g, dtype=torch.float64).to(x) for s in shapes]
    y_scan, final_scan, grads_scan = run(scan, x, state, weights)
    y_fused, final_fused, grads_fused = run(fused, x, state, weights)
    if model == "li":
        assert_close(y_fused, y_scan, "v")
    else:
        assert torch.equal(y_fused, y_scan), "spikes differ"
        assert 0 < y_scan.mean() < 1, "the input should make neurons spike, not always"
    for name, a, b in zip(("v", "i", "rho"), final_fused, final_scan):
        assert_close(a, b, f"final {name}")
    names = ["x", "v0", "i0", "rho0"][: 1 + len(final_scan)]
    names += [name for name, _ in scan.named_parameters()]
    for name, a, b in zip(names, grads_fused, grads_scan):
        assert_close(a, b, f"gradient w.r.t. {name}", GRAD_RTOL.get(method, 1e-6))
    return y_scan
