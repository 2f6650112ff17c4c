"""The fused kernels against the step function's ``scan`` loop, in Triton's interpreter on CPU
tensors: spikes bit-equal, states and gradients within 1e-6 relative. ``memory="auto"`` stores
every step's state at these sizes; :mod:`tests.kernels.test_memory` runs ``recompute``."""

from __future__ import annotations

import pytest
import torch

from lifexport.functional import METHODS
from tests.kernels._reference import compare, inputs

pytestmark = pytest.mark.usefixtures("interpreter")

MODELS = ("lif_refrac", "lif", "li")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", ("lif_refrac", "lif"))
def test_every_method(model, method):
    # N = 150 over B = 2: 300 neurons, one full block of 256 and a partial one.
    compare(model, method, inputs(40, 2, 150))


def test_leaky_integrator():
    compare("li", None, inputs(40, 2, 150))


@pytest.mark.parametrize("model", MODELS)
def test_scalar_parameters_and_float64(model):
    compare(model, "triangle", inputs(20, 3, 5), per_neuron=False)
    compare(model, "tanh", inputs(20, 3, 5, dtype=torch.float64), dtype=torch.float64)


def test_feature_maps():
    # (T, B, C, H, W) with per-channel parameters (C, 1, 1) and per-pixel ones (H, W), through
    # the layers' backend switch.
    from lifexport.functional import LIFParameters, LIFRefracParameters
    from lifexport.modules import LIFRefrac

    x = inputs(12, 2, 4 * 3 * 5).reshape(12, 2, 4, 3, 5)
    p = LIFRefracParameters(
        LIFParameters(v_th=torch.linspace(0.7, 1.1, 4).reshape(4, 1, 1), v_reset=torch.rand(3, 5)),
        rho_reset=torch.tensor([[2.0], [3.0]]).reshape(2, 1, 1, 1),  # per sample: a full copy
    )
    names = ("v_th", "v_reset", "rho_reset")
    scan = LIFRefrac(p, trainable=names, backend="scan")
    fused = LIFRefrac(p, trainable=names, backend="triton")
    z_scan, s_scan = scan(x)
    z_fused, s_fused = fused(x)
    assert torch.equal(z_fused, z_scan)
    assert torch.equal(s_fused.rho, s_scan.rho)
    (z_scan.sum() + s_scan.lif.v.sum()).backward()
    (z_fused.sum() + s_fused.lif.v.sum()).backward()
    for a, b in zip(fused.parameters(), scan.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6 * b.grad.abs().max())
