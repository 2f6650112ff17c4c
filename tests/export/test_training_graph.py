"""Training graphs: forward over a sequence, loss and parameter gradients in one ONNX graph.

The time loop is a ``scan`` in torch and one ``Scan`` each way (forward and backward) in ONNX;
every spike is a ``lifexport.<Name>`` node and every surrogate gradient a
``lifexport.<Name>Grad`` node whose function onnxruntime runs.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch._higher_order_ops.scan import scan

import lifexport.functional as lx
from lifexport.export import (
    DOMAIN_OPS,
    LIFEXPORT,
    export_program,
    op_types,
    trace_training_step,
)

FEATURES, N, B = 3, 6, 4
METHOD_ALPHA = {"super": 1.0, "triangle": 1.0, "tanh": 2.0, "circ": 0.5, "heavi_erfc": 2.0}


class Layer(torch.nn.Module):
    """Linear -> LIF-refrac over time (T, B, FEATURES) -> spikes (T, B, N).

    The linear weight and v_th are trainable; tau_mem_inv is a buffer.
    """

    def __init__(self, method: str, alpha: float) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.linear = torch.nn.Linear(FEATURES, N, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.rand(N, FEATURES, generator=gen) * 4.0)
        self.v_th = torch.nn.Parameter(0.4 + 0.2 * torch.rand(N, generator=gen))
        self.register_buffer("tau_mem_inv", torch.full((N,), 100.0))  # a constant, per neuron
        self.method, self.alpha = method, alpha

    def p(self) -> lx.LIFRefracParameters:
        lif = lx.LIFParameters(
            tau_mem_inv=self.tau_mem_inv, v_th=self.v_th, method=self.method, alpha=self.alpha
        )
        return lx.LIFRefracParameters(lif, rho_reset=2.0)

    def step(self, carry: tuple[torch.Tensor, ...], x: torch.Tensor):
        """One step on a flat ``(v, i, rho)`` carry: scan takes no NamedTuple carry."""
        v, i, rho = carry
        state = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(v, i), rho)
        z, s = lx.lif_refrac_feed_forward_step(self.linear(x), state, self.p())
        return z, (s.lif.v, s.lif.i, s.rho)

    def initial_state(self, xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # three distinct tensors: scan refuses carries that alias each other
        return tuple(xs.new_zeros(xs.shape[1], N) for _ in range(3))

    def forward(self, xs: torch.Tensor) -> torch.Tensor:  # (T, B, FEATURES) -> (T, B, N)
        def combine(state, x):
            z, state = self.step(state, x)
            return state, z.clone()

        _, zs = scan(combine, self.initial_state(xs), xs)
        return zs

    def reference(self, xs: torch.Tensor) -> torch.Tensor:
        """The same layer with a Python time loop, eager."""
        state, zs = self.initial_state(xs), []
        for x in xs:
            z, state = self.step(state, x)
            zs.append(z)
        return torch.stack(zs)


def inputs(t: int, seed: int, b: int = B) -> torch.Tensor:
    return torch.rand(t, b, FEATURES, generator=torch.Generator().manual_seed(seed))


def export_training(layer: Layer, path=None, t: int = 10) -> onnx.ModelProto:
    step = trace_training_step(
        layer,
        (inputs(t, 0),),
        dynamic_shapes={"xs": {0: torch.export.Dim("T"), 1: torch.export.Dim("B")}},
        output_names=["spikes"],
    )
    return export_program(
        step.module,
        step.args,
        path,
        mode="training",
        dynamic_shapes=step.dynamic_shapes,
        input_names=step.input_names,
        output_names=step.output_names,
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, onnx.ModelProto]:
    folder = tmp_path_factory.mktemp("training")
    for method, alpha in METHOD_ALPHA.items():
        export_training(Layer(method, alpha), folder / f"{method}.onnx")
    return {m: onnx.load(folder / f"{m}.onnx") for m in METHOD_ALPHA}


@pytest.mark.parametrize("method", METHOD_ALPHA)
def test_graph_holds_named_spike_and_gradient_ops_with_functions(models, method):
    model = models[method]
    name = DOMAIN_OPS[method].spike
    assert {(LIFEXPORT.domain, name), (LIFEXPORT.domain, f"{name}Grad")} <= op_types(model)
    assert {d for d, _ in op_types(model)} == {"", LIFEXPORT.domain}
    assert {f.name for f in model.functions} == {name, f"{name}Grad"}
    assert [n.op_type for n in model.graph.node].count("Scan") == 2  # forward and backward
    assert [i.name for i in model.graph.input] == ["v_th", "linear.weight", "xs"]
    xs = model.graph.input[2].type.tensor_type.shape.dim
    assert [d.dim_param for d in xs[:2]] == ["T", "B"]
    assert [o.name for o in model.graph.output] == [
        "loss",
        "spikes",
        "grad.v_th",
        "grad.linear.weight",
    ]
    onnx.checker.check_model(model, full_check=True)


@pytest.mark.parametrize("method", METHOD_ALPHA)
def check_against_autograd(model: onnx.ModelProto, layer: Layer, run) -> None:
    """ORT's loss, spikes and gradients equal autograd's; T and B other than at export."""
    xs = inputs(60, seed=1, b=3)
    spikes = layer.reference(xs)
    loss = spikes.sum()
    params = {n: p for n, p in layer.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(loss, list(params.values()))
    feeds = {n: p.detach().numpy() for n, p in params.items()}
    out = run(model)({**feeds, "xs": xs.numpy()})
    assert 0 < spikes.sum() < spikes.numel()  # the neurons do spike, not always
    np.testing.assert_array_equal(out["spikes"], spikes.detach().numpy())
    np.testing.assert_allclose(out["loss"], loss.item())
    for name, grad in zip(params, grads):
        assert grad.abs().max() > 0
        # 1e-5 relative seen: the backward Scan sums in another order than autograd
        np.testing.assert_allclose(out[f"grad.{name}"], grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHOD_ALPHA)
def test_onnxruntime_gradients_match_autograd_over_60_steps(models, ort_session, method):
    layer = Layer(method, METHOD_ALPHA[method])
    with torch.no_grad():
        layer.v_th += 0.05  # other values than at export: parameters are graph inputs
    check_against_autograd(models[method], layer, ort_session)


def test_frozen_parameter_is_a_constant_without_gradient(ort_session):
    layer = Layer("tanh", 2.0)
    layer.linear.weight.requires_grad_(False)
    model = export_training(layer)
    assert [i.name for i in model.graph.input] == ["v_th", "xs"]
    assert [o.name for o in model.graph.output] == ["loss", "spikes", "grad.v_th"]
    check_against_autograd(model, layer, ort_session)  # the weight is baked in


def test_module_without_trainable_parameter_is_refused():
    layer = Layer("super", 1.0).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        trace_training_step(layer, (inputs(5, 0),))
