"""torch behaviours the modules work around, each checked on the torch that runs the tests.

Each test states the workaround's condition as a fact about this torch, so it fails when torch
changes under it (and the workaround can go, or must widen).
"""

from __future__ import annotations

import torch
from torch._higher_order_ops.scan import scan

import lifexport
from lifexport.modules import _time


def scan_carry_gradient_error() -> float:
    """The largest error of a compiled scan's input gradient when its initial carry does not
    require grad: v' = v / 2 + x, y = v * x, a weighted loss over y."""
    torch._dynamo.reset()
    xs = torch.randn(5, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()

    def body(carry, x):
        return [0.5 * carry[0] + x], carry[0] * x

    def loop(xs):
        if torch.compiler.is_compiling():
            return scan(body, [torch.zeros(3)], xs)[1]
        carry, ys = [torch.zeros(3)], []
        for x in xs:
            carry, y = body(carry, x)
            ys.append(y)
        return torch.stack(ys)

    weights = torch.arange(15.0).reshape(5, 3)
    compiled = torch.compile(loop, backend="aot_eager", fullgraph=True)(xs)
    (grad,) = torch.autograd.grad((compiled * weights).sum(), xs)
    (expected,) = torch.autograd.grad((loop(xs) * weights).sum(), xs)
    torch._dynamo.reset()
    return (grad - expected).abs().max().item()


def test_carries_are_tracked_exactly_where_scan_drops_their_gradient() -> None:
    # torch 2.11 and 2.12 (seen on 2.11.0, 2.12.1): an error of O(10); torch 2.13: exact.
    error = scan_carry_gradient_error()
    assert _time._SCAN_NEEDS_TRACKED_CARRIES == (error > 1e-4), error


def test_tracked_carries_give_eager_gradients_under_compile() -> None:
    model = lifexport.LIFRefrac()
    x = (30.0 * torch.rand(12, 2, 4, generator=torch.Generator().manual_seed(1))).requires_grad_()
    out, _ = torch.compile(model, fullgraph=True)(x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(model(x)[0].sum(), x)
    torch.testing.assert_close(grad, expected)
