"""Pins of the exporter quirks that :mod:`lifexport.export._quirks` and the docs work around.

Each test asserts that the quirk is still there (torch 2.13, onnxscript 0.7.2, onnx_ir 1.1.0).
When one fails after an upgrade, the quirk is gone upstream: drop its workaround and this test.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch._higher_order_ops.scan import scan

import lifexport.functional as lx
from lifexport.export import LIFEXPORT, export_program, op_types, trace_training_step
from lifexport.export._domain import Spike
from lifexport.export._quirks import exporter_context
from lifexport.functional.threshold import SURROGATES


class Detach(torch.nn.Module):
    def forward(self, x):
        return torch.ops.aten.detach_copy.default(x) * 2.0


class Count(torch.nn.Module):
    """Counts input steps above 1 with a ``scan``; the switches break its tracing rules."""

    def __init__(self, alias_init: bool = False, clone_output: bool = True) -> None:
        super().__init__()
        self.alias_init, self.clone_output = alias_init, clone_output
        self.scale = torch.nn.Parameter(torch.ones(3))

    def forward(self, xs):  # (T, B, 3)
        def combine(carry, x):
            z = lx.threshold(x * self.scale - 1.0, "super", 1.0)
            carry = (carry[0] + z, z)
            return carry, (z.clone() if self.clone_output else z)

        zero = xs.new_zeros(xs.shape[1:])
        init = (zero, zero if self.alias_init else xs.new_zeros(xs.shape[1:]))
        return scan(combine, init, xs)[1]


# torch 2.13: the plain exporter warns from its own pytree code on every export.
raw = pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning")


def raw_export(module, args, **kwargs):
    return torch.onnx.export(module.eval(), args, dynamo=True, verbose=False, **kwargs)


@raw
def test_exporter_lacks_detach_copy():
    with pytest.raises(Exception, match="No ONNX function found for .*detach_copy"):
        raw_export(Detach(), (torch.rand(3),))
    export_program(Detach(), (torch.rand(3),), mode="inference")


@raw
def test_exporter_inlines_a_translation_to_an_onnx_function():
    # why training translations emit bare nodes and attach the functions afterwards
    table = {SURROGATES["super"].spike_attr: Spike}
    program = raw_export(
        Count(), (torch.rand(4, 2, 3),), custom_translation_table=table, opset_version=18
    )
    assert not program.model_proto.functions
    assert LIFEXPORT.domain not in {d for d, _ in op_types(program.model_proto)}


@raw
def test_exporter_fails_on_backward_scan_when_grad_is_enabled():
    step = trace_training_step(Count(), (torch.rand(4, 2, 3),))
    args = [a.requires_grad_() if i == 0 else a for i, a in enumerate(step.args)]
    with pytest.raises(Exception, match="no autograd formula was registered"):
        raw_export(step.module, tuple(args))
    export_program(step.module, tuple(args), mode="training")  # under no_grad


def test_exporter_warns_about_its_own_pytree_code_and_shared_dims():
    class Add(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    B = torch.export.Dim("B")
    args, dims = (torch.rand(2, 3), torch.rand(2, 3)), ({0: B}, {0: B})
    with (
        pytest.warns(FutureWarning, match="LeafSpec"),
        pytest.warns(UserWarning, match="axis name: B will not be used"),
    ):
        raw_export(Add(), args, dynamic_shapes=dims)
    with exporter_context():
        raw_export(Add(), args, dynamic_shapes=dims)  # silent: warnings are errors here


class ConstantOutput(torch.nn.Module):
    """A scan whose body returns a constant as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("c", torch.ones(3))

    def forward(self, xs):
        return scan(lambda carry, x: (carry + x, torch.zeros_like(self.c)), xs[0].clone(), xs)


@raw
def test_exporter_logs_missing_torchvision_and_scan_body_initializers(caplog):
    with caplog.at_level(logging.WARNING):
        raw_export(ConstantOutput(), (torch.rand(4, 3),))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "torchvision is not installed" in messages
    assert "Skipped deduplication of initializer" in messages
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        export_program(ConstantOutput(), (torch.rand(4, 3),), mode="inference")
    assert not caplog.records


def test_scan_refuses_an_output_that_aliases_a_carry():
    with pytest.raises(Exception, match="aliasing"):
        torch.export.export(Count(clone_output=False), (torch.rand(4, 2, 3),))


@raw
def test_exporter_refuses_initial_carries_that_alias_each_other():
    with pytest.raises(Exception, match="aliasing"):
        raw_export(Count(alias_init=True), (torch.rand(4, 2, 3),))


def test_scan_refuses_a_named_tuple_carry():
    def forward(xs):
        def combine(state, x):
            return lx.LIFFeedForwardState(state.v + x, state.i), x.clone()

        zero = xs.new_zeros(xs.shape[1:])
        return scan(combine, lx.LIFFeedForwardState(zero, zero.clone()), xs)[1]

    with pytest.raises(Exception, match="must consist of tensors"):
        export_program(forward, (torch.rand(4, 2, 3),), mode="inference")


def _cross_entropy_grad(weight, x, target):
    logits = x @ weight.t()
    loss = torch.nn.functional.cross_entropy(logits, target)
    return (loss, *torch.autograd.grad(loss, [weight]))


def test_exporter_drops_the_mean_of_nll_loss_backward(ort_session):
    """torch 2.13 / onnxscript 0.7.2: exported as is, the backward of a mean cross-entropy
    forgets the division by the batch (onnxruntime's gradient is B times torch's), which is
    why training steps are traced with ``TRAINING_DECOMPOSITIONS``."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from lifexport.export._quirks import TRAINING_DECOMPOSITIONS

    weight = torch.randn(3, 4, requires_grad=True)
    x, target = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    (expected,) = torch.autograd.grad(
        torch.nn.functional.cross_entropy(x @ weight.t(), target), [weight]
    )
    feeds = {"weight": weight.detach().numpy(), "x": x.numpy(), "target": target.numpy()}
    grads = {}
    for name, table in (("raw", None), ("decomposed", TRAINING_DECOMPOSITIONS)):
        traced = make_fx(_cross_entropy_grad, decomposition_table=table)(weight, x, target)
        model = export_program(
            traced,
            (weight.detach(), x, target),
            mode="inference",
            input_names=["weight", "x", "target"],
            output_names=["loss", "grad"],
        )
        grads[name] = ort_session(model)(feeds)["grad"]
    torch.testing.assert_close(torch.from_numpy(grads["raw"]), 5 * expected)  # the quirk
    torch.testing.assert_close(torch.from_numpy(grads["decomposed"]), expected)


def test_exporter_writes_python_float_constants_in_float32(ort_session):
    """torch 2.13 / onnxscript 0.7.2: ``x * 0.1`` of a float64 ``x`` multiplies by
    float32(0.1): a float64 graph is only float32-accurate in its Python float constants
    (``dt``), which is why validation keeps float32's tolerances for float64 graphs."""
    x = torch.rand(4, dtype=torch.float64) + 1.0
    model = export_program(lambda x: x * 0.1, (x,), mode="inference", input_names=["x"])
    (out,) = ort_session(model)({"x": x.numpy()}).values()
    np.testing.assert_array_equal(out, x.numpy() * np.float64(np.float32(0.1)))
    assert np.abs(out - (x * 0.1).numpy()).max() > 1e-9  # float64 would be within 1e-16
