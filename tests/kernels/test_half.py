"""float16 and bfloat16 inputs over a float32 state, in Triton's interpreter: the kernels
convert ``x`` to float32 in registers, so they compute exactly what the float32 kernel
computes on ``x.float()``, spikes leave in ``x``'s dtype (``LI``'s potential in float32), and
``x``'s gradient is the float32 one rounded to ``x``'s dtype as torch's ``.to`` rounds it."""

from __future__ import annotations

import pytest
import torch

import lifexport.kernels as kernels
from tests.kernels._reference import HALF, assert_close, compare_half, inputs, layer

triton = pytest.importorskip("triton")
tl = triton.language

pytestmark = pytest.mark.usefixtures("interpreter")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize(
    ("model", "method"), (("lif_refrac", "super"), ("lif", "heavi_erfc"), ("li", None))
)
def test_half_input_is_the_float32_kernel_on_the_upcast_input(model, method, dtype):
    # Two chunks of 32 (recompute), one partial block.
    compare_half(model, method, inputs(40, 1, 150).to(dtype))


@pytest.mark.parametrize("model", ("lif_refrac", "li"))
def test_layer_under_autocast_reads_half_input_into_the_kernel(monkeypatch, model):
    # A float32 layer under CPU autocast: the kernel gets the bfloat16 x itself (no upcast
    # copy), and equals the scan loop under autocast.
    seen = []
    op = kernels.OPS[model]
    monkeypatch.setitem(kernels.OPS, model, lambda x, *args: seen.append(x.dtype) or op(x, *args))
    x = inputs(20, 2, 150).to(torch.bfloat16)
    runs = []
    for backend in ("scan", "triton"):
        net = layer(model, 150, "super", backend=backend)
        xg = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, state = net(xg)
        leaves = torch.utils._pytree.tree_leaves(state)
        (y.float() * torch.linspace(-1, 1, 150)).sum().add(leaves[0].sum()).backward()
        runs.append((y, leaves, xg.grad, [p.grad for p in net.parameters()]))
    assert seen == [torch.bfloat16]
    (y_scan, s_scan, gx_scan, gp_scan), (y, s, gx, gp) = runs
    assert y.dtype == y_scan.dtype == (torch.float32 if model == "li" else torch.bfloat16)
    if model == "li":
        assert_close(y, y_scan, "v")
    else:
        assert torch.equal(y, y_scan)
    for k, (a, b) in enumerate(zip(s, s_scan, strict=True)):
        assert_close(a, b, f"final state {k}")
    assert gx.dtype == torch.bfloat16
    assert_close(gx.float(), gx_scan.float(), "x's gradient", elementwise_rtol=2**-7)
    for k, (a, b) in enumerate(zip(gp, gp_scan, strict=True)):
        assert_close(a, b, f"parameter gradient {k}")


@triton.jit
def _round_kernel(src, dst, n, BLOCK: tl.constexpr):
    from lifexport.kernels._triton_step import round_to

    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(dst + offs, round_to(tl.load(src + offs, mask=mask), dst.dtype.element_ty), mask=mask)


def _float32_values() -> torch.Tensor:
    """Ties, overflow, subnormals, signed zeros, inf and NaN of both half dtypes, and random
    bit patterns (NaNs with payloads among them)."""
    ties = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11)]
    edges = [65504.0, 65519.0, 65520.0, 3.3895e38, 3.4028234e38, 2**-24, 2**-25, 3 * 2**-26]
    edges += [2**-133, 2**-149, 1e-40, 0.0, -0.0, float("inf"), float("-inf"), float("nan")]
    g = torch.Generator().manual_seed(3)
    bits = torch.randint(-(2**31), 2**31, (3000,), generator=g, dtype=torch.int64)
    scaled = torch.randn(1000, generator=g) * torch.logspace(-30, 30, 1000)
    values = torch.tensor(ties + edges, dtype=torch.float32)
    return torch.cat([values, -values, bits.to(torch.int32).view(torch.float32), scaled])


@pytest.mark.parametrize("dtype", HALF)
def test_gradient_rounding_is_torchs(dtype):
    src = _float32_values()
    dst = torch.empty(src.shape, dtype=dtype)
    from lifexport.kernels._triton import _quiet

    with _quiet():  # numpy warns on overflow to inf, which is the answer here
        _round_kernel[(triton.cdiv(src.numel(), 256),)](src, dst, src.numel(), BLOCK=256)
    expected = src.to(dtype)
    nan = expected.isnan()
    assert torch.equal(dst.isnan(), nan)
    assert torch.equal(dst[~nan].view(torch.int16), expected[~nan].view(torch.int16))
