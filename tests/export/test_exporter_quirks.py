"""Pins of the exporter quirks that :mod:`lifexport.export._quirks` and the docs work around.

Each test asserts that the quirk is still there (torch 2.13, onnxscript 0.7.2, onnx_ir 1.1.0).
When one fails after an upgrade, the quirk is gone upstream: drop its workaround and this test.
Quirks of older torch versions are asserted on the versions tried (:func:`seen_on`): there,
and absent on the others tried; CI runs this file on the oldest supported torch too.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch._higher_order_ops.scan import scan

import lifexport.functional as lx
from lifexport.export import LIFEXPORT, _quirks, export_program, op_types, trace_training_step
from lifexport.export._domain import Spike
from lifexport.export._quirks import exporter_context
from lifexport.functional.threshold import SURROGATES

TORCH = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
TRIED = {(2, 10), (2, 11), (2, 13)}  # the torch versions the version-bound pins were tried on


def seen_on(*versions: tuple[int, int]) -> bool:
    """Whether this torch is one of ``versions`` (where the quirk was seen); skips the test on
    a torch none of the pins was tried on."""
    if TORCH not in TRIED:
        pytest.skip(f"torch {torch.__version__}: quirk not tried on this version")
    return TORCH in versions


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


# The plain exporter warns from its own pytree code on every export (torch 2.13), and torch.export
# warns when it traces a scan (torch 2.10): see the tests of these warnings below.
raw = pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)`:FutureWarning",
    "ignore:You are calling torch.compile inside torch.export region:UserWarning",
)


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


@raw
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

    # torch 2.10: refused too, with an internal error
    message = "must consist of tensors" if TORCH >= (2, 11) else "KeyError: example_value"
    with pytest.raises(Exception, match=message):
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


# -- quirks of older torch versions ---------------------------------------------------------


def leaky_sum_grad(w: torch.Tensor, xs: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
    """d/dw of the sum over time of ``v_t = 0.9 v_{t-1} + w x_t``, by autograd through scan."""

    def body(carry, x):
        v = 0.9 * carry[0] + w * x
        return [v.clone()], v.clone()

    (grad,) = torch.autograd.grad(scan(body, [init], xs)[1].sum(), [w])
    return grad


def test_scan_autograd_drops_the_carry_gradient_of_an_untracked_initial_carry():
    """torch 2.10, 2.11: autograd of a scan whose initial carry does not require grad gives each
    step only its own share (every state at rest or fed in is such a carry), which is why
    ``track_scan_carries`` makes training traces' initial carries require grad."""
    w, xs = torch.tensor([0.5, 2.0], requires_grad=True), torch.rand(6, 2)
    # by hand: v_t = sum over s <= t of 0.9^(t-s) w x_s, so x_s counts sum_k<6-s 0.9^k times
    expected = sum(sum(0.9**k for k in range(6 - s)) * xs[s] for s in range(6))
    untracked = leaky_sum_grad(w, xs, torch.zeros(2))
    tracked = leaky_sum_grad(w, xs, torch.zeros(2).requires_grad_())
    torch.testing.assert_close(tracked, expected)
    if seen_on((2, 10), (2, 11)):
        torch.testing.assert_close(untracked, xs.sum(0))  # no gradient through the carry
    else:
        torch.testing.assert_close(untracked, expected)


class FrozenLeak(torch.nn.Module):
    """A leaky sum over time of frozen-weighted inputs, thresholded with a trainable v_th."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((3,), 2.0), requires_grad=False)
        self.v_th = torch.nn.Parameter(torch.ones(3))

    def forward(self, xs):
        def body(carry, x):
            v = 0.9 * carry[0] + self.w * x
            return [v.clone()], lx.threshold(v - self.v_th, "super", 1.0)

        return scan(body, [xs.new_zeros(xs.shape[1:])], xs)[1]


def scan_body_inputs_returned(graph: torch.fx.GraphModule) -> int:
    scans = graph.graph.find_nodes(op="call_function", target=torch.ops.higher_order.scan)
    bodies = [getattr(graph, node.args[0].target) for node in scans]
    return sum(o.op == "placeholder" for b in bodies for o in b.graph.output_node().args[0])


@raw
def test_backward_scan_body_returns_carried_inputs(monkeypatch):
    """torch 2.11: with a frozen parameter in the step, the backward scan that autograd derives
    returns a carried input as it is, and the exporter refuses it, which is why
    ``unalias_scan_bodies`` copies such outputs."""
    unaliased = trace_training_step(FrozenLeak(), (torch.rand(5, 2, 3),))
    assert scan_body_inputs_returned(unaliased.module._graph) == 0
    export_program(unaliased.module, unaliased.args, mode="training")

    monkeypatch.setattr(_quirks, "unalias_scan_bodies", lambda graph: graph)
    step = trace_training_step(FrozenLeak(), (torch.rand(5, 2, 3),))
    if seen_on((2, 11)):
        assert scan_body_inputs_returned(step.module._graph) > 0
        with pytest.raises(Exception, match="scan might be aliasing the input or the output"):
            export_program(step.module, step.args, mode="training")
    else:
        assert scan_body_inputs_returned(step.module._graph) == 0


class Twice(torch.nn.Module):
    def forward(self, x):
        y = x + 1.0
        return y, y, 2.0 * x


@raw
def test_exporter_misnames_an_output_returned_twice():
    """torch 2.10: a tensor returned twice takes the second name, and the first goes missing,
    which is why ``export_program`` returns copies (``distinct_outputs_of``)."""
    names = ["a", "b", "c"]
    program = raw_export(Twice(), (torch.rand(3),), output_names=names)
    written = [o.name for o in program.model_proto.graph.output]
    assert written == (["b", "b_alias_1", "c"] if seen_on((2, 10)) else names)
    model = export_program(Twice(), (torch.rand(3),), mode="inference", output_names=names)
    assert [o.name for o in model.graph.output] == names


class Scan(torch.nn.Module):
    def forward(self, xs):
        return scan(lambda c, x: ((c + x).clone(), (c * x).clone()), xs[0].clone(), xs)[1]


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_torch_export_of_a_scan_warns_that_it_compiles_the_body():
    """torch 2.10: torch.export warns for each scan it traces ("torch.compile inside torch.export
    region"), an error under this suite's filters; ``tracing_context`` silences it."""
    if seen_on((2, 10)):
        with pytest.warns(UserWarning, match="torch.compile inside torch.export region"):
            torch.export.export(Scan(), (torch.rand(4, 3),))
    else:
        torch.export.export(Scan(), (torch.rand(4, 3),))  # silent: warnings are errors here
    with _quirks.tracing_context():
        torch.export.export(Scan(), (torch.rand(4, 3),))


class Spikes(torch.nn.Module):
    def forward(self, x):
        return lx.threshold(x, "super", 2.0)


@raw
def test_exporter_logs_translations_without_annotations(caplog):
    """torch 2.10: the exporter logs a warning for each translation parameter without a type
    annotation (the spike translations take any float type); ``exporter_context`` quiets it."""
    from lifexport.export import translation_table

    with caplog.at_level(logging.WARNING):
        raw_export(
            Spikes(), (torch.rand(3),), custom_translation_table=translation_table("inference")
        )
    logged = "Missing annotation for parameter" in " ".join(r.getMessage() for r in caplog.records)
    assert logged == seen_on((2, 10))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        export_program(Spikes(), (torch.rand(3),), mode="inference")
    assert not caplog.records
