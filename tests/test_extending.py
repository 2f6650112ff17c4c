"""Extending lifexport through its declared points only (``docs/extending.md``): a toy
integrate-and-fire layer (``NeuronModule``'s protocol) and a toy surrogate
(``register_surrogate`` and its ONNX row, ``DomainOp.register``), held to a hand-written loop,
compiled, exported in both graph shapes and both modes, and validated in onnxruntime.

The registrations live for this module only (a module-scoped fixture undoes them), so the
other tests see the built-in surrogates alone.
"""

from __future__ import annotations

import re
from typing import NamedTuple, TypeVar, Union

import onnx
import pytest
import torch
from onnxscript import DOUBLE, FLOAT, script
from onnxscript import opset18 as op
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode

import lifexport
from lifexport import kernels
from lifexport.export import LIFEXPORT, DomainOp, op_types
from lifexport.functional import (
    SURROGATES,
    LIFParameters,
    methods,
    register_surrogate,
    spike,
    unregister_surrogate,
)
from lifexport.modules import LIF, FeedForwardCell, SequenceLayer

TOY = "toy_sigmoid"
ALPHA = 4.0
T, B, N = 12, 2, 3

# -- the toy surrogate: d spike / dx = alpha * s * (1 - s), s = sigmoid(alpha * x) ---------------


def toy_grad(g: Tensor, x: Tensor, alpha: Tensor | float) -> Tensor:
    s = torch.sigmoid(x * alpha)
    return g * alpha * s * (1.0 - s)


F = TypeVar("F", bound=Union[FLOAT, DOUBLE])  # noqa: UP007 (onnxscript reads typing.Union)


@script(LIFEXPORT)
def ToySigmoidSpikeGrad(grad: F, x: F, alpha: float) -> F:
    """ToySigmoidSpikeGrad(grad: T, x: T, alpha: float) -> T"""
    a = op.CastLike(alpha, x)
    one = op.CastLike(1.0, x)
    s = op.Sigmoid(op.Mul(x, a))
    return op.Mul(op.Mul(op.Mul(grad, a), s), op.Sub(one, s))


@pytest.fixture(scope="module", autouse=True)
def toy_surrogate():
    """The toy surrogate and its ONNX row, registered for this module's tests."""
    surrogate = register_surrogate(TOY, toy_grad)
    row = DomainOp(TOY, "ToySigmoidSpike", ToySigmoidSpikeGrad).register()
    yield surrogate
    row.unregister()
    unregister_surrogate(TOY)


# -- the toy layer: v += x; spike where v > v_th; reset to 0 --------------------------------------


class IFState(NamedTuple):
    v: Tensor


class IFCell(FeedForwardCell):
    """Integrate-and-fire neurons: one step on an input current ``(B, ...)``."""

    parameter_names = ("v_th",)
    value_rules = {"v_th": "positive"}  # stricter than the built-in "finite"
    state_classes = (IFState,)
    spike_fields = ()  # the spikes are the output only
    membrane_call = 0  # the one spike call thresholds v - v_th

    def __init__(self, v_th=1.0, method=TOY, alpha=ALPHA, dt=1.0, trainable=()):
        values = {"v_th": v_th}
        super().__init__(values=values, method=method, alpha=alpha, dt=dt, trainable=trainable)

    def state_at_rest(self, x: Tensor) -> IFState:
        return IFState(torch.zeros_like(x))

    def dynamics(self, x: Tensor, state: IFState) -> tuple[Tensor, IFState]:
        v = state.v + x
        z = spike(v - self.v_th, self.method, self.surrogate_alpha())
        return z, IFState((1 - z) * v)


class IF(SequenceLayer, IFCell):
    """Integrate-and-fire neurons over a time-major sequence ``(T, B, ...)``."""


# -- an independent reference: the loop by hand, the surrogate as an autograd.Function ---------


class _ToySpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        s = 1.0 / (1.0 + torch.exp(-ALPHA * x))
        return g * ALPHA * s * (1.0 - s)


def reference_loop(xs: Tensor, v_th: Tensor) -> tuple[Tensor, Tensor]:
    v = torch.zeros_like(xs[0])
    zs = []
    for x in xs:
        v = v + x
        z = _ToySpike.apply(v - v_th)
        v = (1 - z) * v
        zs.append(z)
    return torch.stack(zs), v


def drive(seed: int = 0, steps: int = T) -> Tensor:
    """Currents that make every neuron spike every two to four steps."""
    return torch.rand(steps, B, N, generator=torch.Generator().manual_seed(seed)) * 0.8


def weights(seed: int = 1) -> Tensor:
    return torch.randn(T, B, N, generator=torch.Generator().manual_seed(seed))


def run(model, xs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Spikes, final v, and the gradients w.r.t. ``xs`` and ``v_th`` of a weighted sum."""
    xs = xs.detach().clone().requires_grad_()
    ys, state = model(xs)
    loss = (ys * weights()[: len(ys)]).sum() + state.v.sum()
    gx, gth = torch.autograd.grad(loss, (xs, model_layer(model).v_th))
    return ys.detach(), state.v.detach(), gx, gth


def model_layer(model) -> IF:
    return getattr(model, "module", model)


@pytest.fixture(scope="module")
def model() -> IF:
    return IF(v_th=1.0, trainable=("v_th",))


@pytest.fixture(scope="module")
def compiled(model):
    return lifexport.compile(model)


# -- the protocol: what a layer must declare, and the errors when it does not ------------------


def test_layers_declare_spike_fields_and_the_membrane_call():
    assert (IF.spike_fields, IF.membrane_call) == ((), 0)
    assert (lifexport.LIFRefrac.spike_fields, lifexport.LIFRefrac.membrane_call) == ((), 0)
    assert lifexport.LIFRefracRecurrentCell.spike_fields == ("z",)
    assert lifexport.LIFRecurrent.membrane_call == 0
    assert (lifexport.LI.spike_fields, lifexport.LI.membrane_call) == ((), None)


def test_a_layer_missing_pieces_is_refused_when_defined():
    message = (
        "Half does not implement the neuron-layer protocol: it does not define spike_fields, "
        "membrane_call, dynamics()"
    )
    with pytest.raises(TypeError, match=re.escape(message)):

        class Half(FeedForwardCell):
            parameter_names = ("v_th",)
            state_classes = (IFState,)

            def state_at_rest(self, x):
                return IFState(torch.zeros_like(x))


@pytest.mark.parametrize(
    "attributes, message",
    [
        ({"parameter_names": ("gain",)}, "value_rules has no rule for parameters ['gain']"),
        ({"value_rules": {"v_th": "big"}}, "value_rules must map to one of"),
        ({"parameter_names": ()}, "parameter_names must be a non-empty tuple of names"),
        ({"parameter_names": ("dt",)}, "parameter_names must be distinct identifiers"),
        ({"spike_fields": ("z",)}, "spike_fields ['z'] are not fields of the state ['v']"),
        ({"spike_fields": "v"}, "spike_fields must be a tuple of field names"),
        ({"membrane_call": -1}, "membrane_call must be None or an int >= 0, got -1"),
        ({"state_classes": (dict,)}, "state_classes must be a non-empty tuple of NamedTuple"),
        ({"state_classes": (IFState, IFState)}, "are not the annotated type of a field of"),
    ],
)
def test_wrong_declarations_are_named(attributes, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        type("Wrong", (IFCell,), attributes)


def test_an_abstract_base_is_checked_in_its_subclasses():
    class Base(FeedForwardCell, abstract=True):
        parameter_names = ("v_th",)

    with pytest.raises(TypeError, match="it does not define state_classes, spike_fields"):
        type("Concrete", (Base,), {})


def test_bad_construction_is_named():
    with pytest.raises(ValueError, match=r"p\.v_th must be positive and finite, got -1\.0"):
        IFCell(v_th=-1.0)  # the layer's own rule: VALUE_RULES would take -1 ("finite")
    with pytest.raises(ValueError, match=f"p.method must be one of .*'{TOY}'; got 'nope'"):
        IFCell(method="nope")
    with pytest.raises(ValueError, match=r"declares spikes .* but was given no method"):
        IFCell(method=None)


def test_surrogate_registration_errors():
    with pytest.raises(ValueError, match="method 'super' is registered already"):
        register_surrogate("super", toy_grad)
    with pytest.raises(ValueError, match="method 'super' is built in"):
        unregister_surrogate("super")
    with pytest.raises(ValueError, match="lower-case Python identifier"):
        register_surrogate("Not A Name", toy_grad)
    with pytest.raises(ValueError, match=f"method '{TOY}' has a row already"):
        DomainOp(TOY, "ToySigmoidSpike", ToySigmoidSpikeGrad).register()
    with pytest.raises(ValueError, match="'unknown' is not a registered surrogate"):
        DomainOp("unknown", "UnknownSpike", ToySigmoidSpikeGrad).register()
    assert TOY in methods() and SURROGATES[TOY].grad_formula is toy_grad


def test_a_surrogate_registered_after_a_compile_reaches_inductor():
    # torch 2.13 caches inductor's decomposition table at the first compile; a surrogate
    # registered later must be in it, or compiling its layer fails in lowering.
    from torch._inductor.decomposition import select_decomp_table

    select_decomp_table()  # what the first compile of the process does
    late = register_surrogate("late_toy", toy_grad)
    try:
        table = select_decomp_table()
        assert late.spike in table and late.spike_grad in table
    finally:
        unregister_surrogate("late_toy")


# -- values: eager against the hand loop, compiled against eager -------------------------------


def test_eager_equals_the_reference_loop(model):
    xs = drive()
    ys, v, gx, gth = run(model, xs)
    th = torch.tensor(1.0, requires_grad=True)
    xr = xs.clone().requires_grad_()
    ys_ref, v_ref = reference_loop(xr, th)
    gx_ref, gth_ref = torch.autograd.grad((ys_ref * weights()).sum() + v_ref.sum(), (xr, th))
    assert 0.2 < ys.mean() < 0.6  # every neuron spikes, not every step
    assert torch.equal(ys, ys_ref) and torch.equal(v, v_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(gth, gth_ref, rtol=1e-6, atol=1e-7)
    # the cell, stepped by hand, is the sequence layer's step
    cell, state, zs = IFCell(), None, []
    for x in xs:
        z, state = cell(x, state)
        zs.append(z)
    assert torch.equal(torch.stack(zs), ys) and torch.equal(state.v, v)


def test_compiled_equals_eager(model, compiled):
    for steps in (T, 5):  # one graph for every T
        xs = drive(seed=steps, steps=steps)
        eager, fast = run(model, xs), run(compiled, xs)
        assert torch.equal(fast[0], eager[0]) and torch.equal(fast[1], eager[1])
        torch.testing.assert_close(fast[2], eager[2], rtol=1e-5, atol=1e-6)  # fused math
        torch.testing.assert_close(fast[3], eager[3], rtol=1e-5, atol=1e-5)


# -- ONNX: step and sequence graphs, inference and training, validated -------------------------


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The three files: inference step and sequence graphs, a training sequence graph."""
    folder = tmp_path_factory.mktemp("extending")
    xs = drive()
    return {
        "step": lifexport.to_onnx(model, xs[0], folder / "step.onnx", graph="step"),
        "sequence": lifexport.to_onnx(model, xs, folder / "sequence.onnx"),
        "training": lifexport.to_onnx(model, xs, folder / "train.onnx", mode="training"),
    }


def domain_ops(path) -> set[str]:
    return {t for d, t in op_types(onnx.load(path)) if d == LIFEXPORT.domain}


@pytest.mark.parametrize("kind", ["step", "sequence", "training"])
def test_exported_graphs_validate_on_the_cpu_provider(model, exported, kind):
    path = exported[kind].path
    want = {"ToySigmoidSpike", "ToySigmoidSpikeGrad"} if kind == "training" else set()
    assert domain_ops(path) == want
    assert exported[kind].state_names == ("state.0.v",)
    report = lifexport.validate(model, path, drive(seed=3, steps=30), "CPUExecutionProvider")
    assert report.passed, str(report)


def test_a_training_export_needs_the_surrogates_row(model, tmp_path):
    row = lifexport.export.DOMAIN_OPS[TOY]
    row.unregister()
    try:
        path = tmp_path / "inference.onnx"
        lifexport.to_onnx(model, drive()[0], path, graph="step")  # inference needs no row
        assert domain_ops(path) == set()
        with pytest.raises(lifexport.ExportError, match=f"surrogate '{TOY}', which has no row"):
            lifexport.to_onnx(model, drive(), tmp_path / "train.onnx", mode="training")
    finally:
        row.register()


# -- kernels: a surrogate they do not implement --------------------------------------------------


def toy_lif(backend: str) -> LIF:
    return LIF(LIFParameters(method=TOY, alpha=ALPHA), backend=backend)


def test_auto_runs_scan_for_a_surrogate_the_kernels_lack():
    with FakeTensorMode():  # a CUDA tensor in shape only: what auto decides on a GPU
        x = torch.empty(T, B, N, device="cuda")
        assert not kernels.use_kernel("auto", x, method=TOY)
        assert kernels.use_kernel("auto", x, method="super") == kernels.triton_available()
    assert TOY not in kernels.KERNEL_METHODS and not kernels.supports_method(TOY)
    xs = drive() * 40.0
    assert torch.equal(toy_lif("auto")(xs)[0], toy_lif("scan")(xs)[0])


def test_triton_says_why_it_cannot_run_a_surrogate_the_kernels_lack():
    message = (
        "backend='triton' cannot run this layer: the fused kernels implement the surrogates "
        f"'heaviside', 'super', 'triangle', 'tanh', 'circ', 'heavi_erfc', not method '{TOY}'"
    )
    with pytest.raises(RuntimeError, match=re.escape(message)):
        toy_lif("triton")(drive())
    layer = toy_lif("scan")
    with pytest.raises(ValueError, match=f"p.method: the fused kernels .* not method '{TOY}'"):
        kernels.lif_sequence(drive(), layer.initial_state(drive()[0]), layer.p, layer.dt)
