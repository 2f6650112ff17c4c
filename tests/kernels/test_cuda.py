"""The compiled kernels on CUDA against the scan path on CUDA, at sizes of many blocks."""

from __future__ import annotations

import pytest
import torch

import lifexport
from lifexport.functional import METHODS
from lifexport.modules import LIFRefrac
from tests.kernels._reference import compare, inputs

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", ("lif_refrac", "lif"))
def test_every_method(model, method):
    compare(model, method, inputs(257, 8, 1000, device="cuda"))


@pytest.mark.parametrize("t", (1, 100))
def test_leaky_integrator(t):
    compare("li", None, inputs(t, 8, 1000, device="cuda"))


def test_float64_on_cuda_takes_scan_or_says_why():
    # A float64 kernel does not compile for the GPU (libdevice's float32 exp/tanh/pow; triton
    # 3.6 on an H200): auto runs scan, and an explicit triton backend names the dtype.
    x = inputs(64, 4, 777, torch.float64, "cuda")
    assert not lifexport.kernels.use_kernel("auto", x)
    with pytest.raises(RuntimeError, match="computes CUDA tensors in float32, got torch.float64"):
        lifexport.kernels.use_kernel("triton", x)


def test_auto_runs_the_kernel_on_cuda():
    assert lifexport.kernels.use_kernel("auto", torch.zeros(2, 3, device="cuda"))


def test_compiled_with_cuda_graphs_equals_eager():
    layer = LIFRefrac(backend="triton").cuda()
    x = inputs(50, 16, 512, device="cuda")
    z_ref, _ = layer(x)
    compiled = torch.compile(layer, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # warm-up, record, replay
        z, _ = compiled(x)
    assert torch.equal(z, z_ref)
