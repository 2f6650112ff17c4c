"""The compiled kernels on CUDA against the scan path on CUDA, at sizes of many blocks."""

from __future__ import annotations

import pytest
import torch

import lifexport
from lifexport.functional import METHODS
from lifexport.modules import LIFRefrac
from tests.kernels import test_recurrent as recurrent
from tests.kernels._reference import (
    HALF,
    assert_close,
    assert_equal,
    case,
    check,
    compare,
    compare_half,
    inputs,
    layer,
)

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model", ("lif_refrac", "lif"))
def test_every_method(model, method):
    # Over 257 steps circ's and heavi_erfc's gradients explode on CUDA (inf, or 1e9 from unit
    # weights): those elements are left out (see assert_close).
    compare(model, method, inputs(257, 8, 1000, device="cuda"), exploded=True)


@pytest.mark.parametrize("t", (1, 100))
def test_leaky_integrator(t):
    compare("li", None, inputs(t, 8, 1000, device="cuda"))


@pytest.mark.parametrize("model", ("lif_refrac", "lif", "li"))
@pytest.mark.parametrize("t", (1, 40, 257))
def test_store_and_recompute_are_bit_equal(model, t):
    c = case(model, "super", inputs(t, 8, 1000, device="cuda"))
    recompute = c.fused("recompute")
    check(c, recompute, c.reference(), exploded=True)
    assert_equal(c.fused("store"), recompute, "store vs recompute")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(
    ("model", "method"), (("lif_refrac", "super"), ("lif", "heavi_erfc"), ("li", None))
)
def test_half_input_is_the_float32_kernel_on_the_upcast_input(model, method, dtype):
    compare_half(model, method, inputs(100, 8, 1000, device="cuda").to(dtype), exploded=True)


def test_one_neuron():
    # M == 1: Triton passes it as the constant 1 (it did not build with M.to(tl.int64)).
    compare("lif_refrac", "super", inputs(40, 1, 1, device="cuda"))
    compare("li", None, inputs(40, 1, 1, device="cuda"))


def test_float64_on_cuda_takes_scan_or_says_why():
    # A float64 kernel does not compile for the GPU (libdevice's float32 exp/tanh/pow; triton
    # 3.6 on an H200): auto runs scan, and an explicit triton backend names the dtype.
    x = inputs(64, 4, 777, torch.float64, "cuda")
    assert not lifexport.kernels.use_kernel("auto", x)
    with pytest.raises(RuntimeError, match="computes CUDA tensors in float32, got torch.float64"):
        lifexport.kernels.use_kernel("triton", x)


@pytest.mark.parametrize("dtype", (torch.float32, *HALF))
def test_auto_runs_the_kernel_on_cuda(dtype):
    x = torch.zeros(2, 3, device="cuda", dtype=dtype)
    assert lifexport.kernels.use_kernel("auto", x, compute_dtype=torch.float32)
    assert not lifexport.kernels.use_kernel("auto", x, compute_dtype=torch.bfloat16)


def test_compiled_with_cuda_graphs_equals_eager():
    layer = LIFRefrac(backend="triton").cuda()
    x = inputs(50, 16, 512, device="cuda")
    z_ref, _ = layer(x)
    compiled = torch.compile(layer, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):  # warm-up (the autotuner times its configs here), record, replay
        z, _ = compiled(x)
    assert torch.equal(z, z_ref)


def test_compiled_training_step_with_cuda_graphs_equals_eager():
    # Both kernels under CUDA graphs, per-neuron trainable parameters.
    eager = layer("lif_refrac", 512, "super", backend="triton").cuda()
    x = inputs(50, 16, 512, device="cuda")

    def grads(net):
        xg = x.detach().requires_grad_()
        z, _ = net(xg)
        (z * torch.linspace(-1, 1, 512, device="cuda")).sum().backward()
        result = [xg.grad, *(p.grad for p in net.parameters())]
        net.zero_grad()
        return z, result

    z_ref, g_ref = grads(eager)
    compiled = torch.compile(eager, fullgraph=True, mode="reduce-overhead")
    for _ in range(3):
        z, g = grads(compiled)
    assert torch.equal(z, z_ref)
    assert torch.equal(g[0], g_ref[0]), "x's gradient (the backward kernel's output)"
    # Parameter gradients: the kernel's per-neuron shares summed over the batch, a sum the
    # compiled graph may order differently.
    names = [name for name, _ in eager.named_parameters()]
    for name, a, b in zip(names, g[1:], g_ref[1:], strict=True):
        assert_close(a, b, f"gradient w.r.t. {name}")


@pytest.mark.parametrize("memory", ("store", "recompute"))
@pytest.mark.parametrize("model", ("lif_refrac", "lif"))
def test_recurrent_kernels(model, memory):
    # 40 rows: two full tiles of 16 and a partial one. The products sum in tl.dot's order and
    # cuBLAS's: flips at most 0.1%, and where there are none, states and gradients to 1e-3.
    scan, fused = (m.cuda() for m in recurrent.pair(model, memory=memory))
    x = recurrent.drive(100, 40).cuda()
    state = recurrent.start(scan, x)
    z_scan, s_scan, g_scan = recurrent.run(scan, x, state)
    z_fused, s_fused, g_fused = recurrent.run(fused, x, state)
    assert z_scan.sum() > 0.05 * z_scan.numel()
    assert recurrent.flips(z_fused, z_scan) <= 1e-3 * z_scan.numel()
    if recurrent.flips(z_fused, z_scan) == 0:
        for a, b in zip(
            [*recurrent.leaves(s_fused), *g_fused], [*recurrent.leaves(s_scan), *g_scan]
        ):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max())


def test_recurrent_auto_runs_the_kernel_under_autocast(monkeypatch):
    calls = []
    kernel = lifexport.kernels.lif_refrac_recurrent_sequence
    monkeypatch.setattr(
        lifexport.kernels, "lif_refrac_recurrent_sequence", lambda *a: calls.append(1) or kernel(*a)
    )
    scan, fused = (m.cuda() for m in recurrent.pair("lif_refrac"))
    fused.backend = "auto"
    x = recurrent.drive(50, 32).cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        z_scan, _ = scan(x)
        z_fused, _ = fused(x)
    assert z_fused.dtype == torch.bfloat16 and calls == [1]
    assert recurrent.flips(z_fused, z_scan) <= 1e-3 * z_scan.numel()
