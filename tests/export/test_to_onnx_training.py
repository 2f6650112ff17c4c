"""``to_onnx`` in training mode: loss, outputs and parameter gradients in one ONNX graph,
against torch autograd, for every surrogate.

The model is a stack ``Linear -> LIFRefrac -> Linear -> LIFRefracRecurrent`` with the first
layer's per-neuron ``v_th`` trainable; its two neuron layers use the same surrogate with
different widths (``alpha`` and ``2 * alpha``), so the graph must carry each layer's own.
Sequence graphs are exported once per surrogate and loss (B=2, T=10) and run with B=3 over 60
steps from a warmed-up state.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

import lifexport
import lifexport.functional as F
from lifexport.export import DOMAIN_OPS, LIFEXPORT, ExportedModel, op_types, to_onnx
from lifexport.export._graph import iter_nodes
from lifexport.modules._time import flatten_state

B, STEPS, WARMUP = 3, 60, 15
# alpha of the first neuron layer (the second has twice it): surrogate slopes of O(1) where
# v - v_th lies, so that gradients neither vanish nor explode over 60 steps.
METHOD_ALPHA = {"super": 1.0, "triangle": 1.0, "tanh": 2.0, "circ": 0.5, "heavi_erfc": 2.0}
PARAMETERS = [
    "0.weight",
    "0.bias",
    "1.v_th",
    "2.weight",
    "2.bias",
    "3.input_weights",
    "3.recurrent_weights",
]
STATE = [f"state.1.{f}" for f in ("v", "i", "rho")] + [
    f"state.3.{f}" for f in ("z", "v", "i", "rho")
]


def refrac_p(n: int, method: str, alpha: float) -> F.LIFRefracParameters:
    lif = F.LIFParameters(v_th=torch.linspace(0.4, 0.8, n), method=method, alpha=alpha)
    return F.LIFRefracParameters(lif, rho_reset=2.0)


def build(method: str) -> lifexport.SequentialState:
    alpha = METHOD_ALPHA[method]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return lifexport.SequentialState(
            torch.nn.Linear(4, 6),
            lifexport.LIFRefrac(refrac_p(6, method, alpha), trainable=("v_th",)),
            torch.nn.Linear(6, 3),
            lifexport.LIFRefracRecurrent(3, 3, refrac_p(3, method, 2 * alpha)),
        )


def drive(t: int, b: int, seed: int) -> torch.Tensor:
    return 3.0 * torch.rand(t, b, 4, generator=torch.Generator().manual_seed(seed))


def spike_count_mse(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A custom loss: spike counts ``(B, 3)`` against a batch-first target."""
    return ((y.sum(0) - target) ** 2).mean()


def target(b: int) -> torch.Tensor:
    return torch.arange(3.0).repeat(b, 1) + 1.0  # (B, 3)


def warm_state(model: torch.nn.Module, b: int) -> list[torch.Tensor]:
    with torch.no_grad():
        _, state = model(drive(WARMUP, b, seed=100))
    return flatten_state(state)[0]


@pytest.fixture(
    scope="module",
    params=[(m, loss) for m in METHOD_ALPHA for loss in ("sum", "mse")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def exported(request, tmp_path_factory) -> tuple[str, str, ExportedModel]:
    method, loss = request.param
    path = tmp_path_factory.mktemp(f"{method}-{loss}") / "train.onnx"
    extra = dict(loss=spike_count_mse, target=target(2)) if loss == "mse" else {}
    out = to_onnx(build(method), drive(10, 2, seed=0), path, mode="training", **extra)
    return method, loss, out


def test_names_follow_the_documented_interface(exported):
    _, loss, out = exported
    x = ["x", "target"] if loss == "mse" else ["x"]
    assert list(out.input_names) == [*PARAMETERS, *x, *STATE]
    assert list(out.output_names) == [
        "loss",
        "y",
        *(f"next_{n}" for n in STATE),
        *(f"grad.{n}" for n in PARAMETERS),
    ]
    assert list(out.state_names) == STATE
    model = onnx.load(out.path)
    assert [i.name for i in model.graph.input] == list(out.input_names)
    assert [o.name for o in model.graph.output] == list(out.output_names)
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["lifexport.graph"], meta["lifexport.mode"]) == ("sequence", "training")
    assert json.loads(meta["lifexport.inputs"]) == list(out.input_names)
    assert json.loads(meta["lifexport.outputs"]) == list(out.output_names)
    alphas = [layer["alpha"] for layer in json.loads(meta["lifexport.layers"])]
    assert alphas == [METHOD_ALPHA[exported[0]], 2 * METHOD_ALPHA[exported[0]]]


def test_graph_holds_named_surrogate_ops_with_their_alpha_and_functions(exported):
    method, _, out = exported
    model = onnx.load(out.path)
    onnx.checker.check_model(model, full_check=True)
    name, alpha = DOMAIN_OPS[method].spike, METHOD_ALPHA[method]
    ops = op_types(model)
    assert {d for d, _ in ops} == {"", LIFEXPORT.domain}
    assert {t for d, t in ops if d == LIFEXPORT.domain} == {name, f"{name}Grad"}
    assert ("", "Greater") not in ops  # every spike is the named op, none inlined
    custom = [n for n in iter_nodes(model.graph) if n.domain == LIFEXPORT.domain]
    widths = Counter(
        (n.op_type, onnx.helper.get_attribute_value(a)) for n in custom for a in n.attribute
    )
    assert {a.name for n in custom for a in n.attribute} == {"alpha"}
    # each layer's own alpha (exact in float32) on its spikes and on their gradients
    assert {k for k in widths} == {
        (t, a) for t in (name, f"{name}Grad") for a in (alpha, 2 * alpha)
    }
    functions = {(f.domain, f.name) for f in model.functions}
    assert functions == {(LIFEXPORT.domain, name), (LIFEXPORT.domain, f"{name}Grad")}
    # forward and backward time loops of both sequence layers
    assert [n.op_type for n in model.graph.node].count("Scan") == 4


def test_onnxruntime_matches_autograd_over_60_steps(exported, ort_session):
    method, loss_name, out = exported
    model = build(method)
    with torch.no_grad():  # other values than at export: parameters are graph inputs
        model[1].v_th += 0.05
        model[2].bias += 0.1
    xs, state = drive(STEPS, B, seed=1), warm_state(model, B)
    assert all(t.abs().sum() > 0 for n, t in zip(STATE, state) if n != "state.3.z")

    y, final = model(xs, flatten_state(model.initial_state(xs[0]))[1](state))
    loss = spike_count_mse(y, target(B)) if loss_name == "mse" else y.sum()
    params = dict(model.named_parameters())
    assert list(params) == PARAMETERS
    grads = torch.autograd.grad(loss, list(params.values()))

    feeds = {n: p.detach().numpy() for n, p in params.items()}
    feeds |= {"x": xs.numpy(), **{n: t.numpy() for n, t in zip(STATE, state, strict=True)}}
    if loss_name == "mse":
        feeds["target"] = target(B).numpy()
    result = ort_session(out.path)(feeds)

    spikes = y.detach().numpy()
    assert 0 < spikes.sum() < spikes.size  # the output layer spikes, not always
    np.testing.assert_array_equal(result["y"], spikes)
    np.testing.assert_allclose(result["loss"], loss.item(), rtol=1e-6)
    for name, t in zip(STATE, flatten_state(final)[0], strict=True):
        np.testing.assert_allclose(result[f"next_{name}"], t.detach().numpy(), rtol=0, atol=1e-5)
    for name, grad in zip(PARAMETERS, grads, strict=True):
        scale = grad.abs().max().item()
        assert 0 < scale < 1e4, name  # a live, finite gradient
        # Tolerance relative to the tensor's scale, not to each element: onnxruntime's
        # backward Scan accumulates 60 steps in another order than autograd, and the surrogate
        # slope amplifies the ~1e-6 forward differences in v. Against a float64 torch
        # reference (tanh, alpha 2 and 4), float32 torch is off by up to 8e-6 x scale and
        # onnxruntime by up to 5e-5 x scale, e.g. 2e-5 on an element of 1e-2.
        np.testing.assert_allclose(
            result[f"grad.{name}"], grad.numpy(), rtol=1e-4, atol=1e-4 * scale, err_msg=name
        )


# -- the training step graph and other wrappers ------------------------------------------


def test_step_training_graph_matches_autograd_step_by_step(tmp_path, ort_session):
    """One step per run, state fed back: each step's loss and gradients (w.r.t. the
    parameters, the state being an input) equal autograd's."""
    model = build("super")
    out = to_onnx(model, drive(1, 2, 0)[0], tmp_path / "step.onnx", graph="step", mode="training")
    assert list(out.input_names) == [*PARAMETERS, "x", *STATE]
    run = ort_session(out.path)
    params = dict(model.named_parameters())
    feeds = {n: p.detach().numpy() for n, p in params.items()}
    state, total = warm_state(model, B), 0.0
    unflatten = flatten_state(model.initial_state(drive(1, B, 0)[0]))[1]
    for t, x in enumerate(drive(STEPS, B, seed=2)):
        y, new_state = model.step(x, unflatten(state))
        grads = torch.autograd.grad(y.sum(), list(params.values()), materialize_grads=True)
        result = run({**feeds, "x": x.numpy(), **dict(zip(STATE, (s.numpy() for s in state)))})
        np.testing.assert_array_equal(result["y"], y.detach().numpy(), err_msg=f"step {t}")
        np.testing.assert_allclose(result["loss"], y.sum().item())
        for name, grad in zip(PARAMETERS, grads, strict=True):
            np.testing.assert_allclose(
                result[f"grad.{name}"], grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=f"{name}, {t}"
            )
        state = [torch.from_numpy(result[f"next_{n}"]) for n in STATE]
        for mine, theirs in zip(flatten_state(new_state)[0], state, strict=True):
            np.testing.assert_allclose(theirs, mine.detach().numpy(), rtol=0, atol=1e-5)
        total += y.sum().item()
    assert total > 0


@pytest.mark.parametrize("wrapper", ["cells", "time_loop"])
def test_parameters_keep_the_models_own_names(tmp_path, wrapper):
    """Cells exported as a sequence run in a TimeLoop that to_onnx adds; a user's TimeLoop
    exported as a step runs its inner stack: neither wrapper shows in the names."""
    p = refrac_p(3, "super", 1.0)
    stack = lifexport.SequentialState(
        torch.nn.Linear(4, 3), lifexport.LIFRefracRecurrentCell(3, 3, p)
    )
    model = stack if wrapper == "cells" else lifexport.TimeLoop(stack)
    x = drive(10, 2, 0) if wrapper == "cells" else drive(1, 2, 0)[0]
    graph = "sequence" if wrapper == "cells" else "step"
    out = to_onnx(model, x, tmp_path / "m.onnx", graph=graph, mode="training")
    names = [n for n, _ in model.named_parameters()]
    assert list(out.input_names[: len(names)]) == names
    assert list(out.output_names[-len(names) :]) == [f"grad.{n}" for n in names]


def test_training_file_does_not_depend_on_the_example_length(tmp_path):
    layer = build("tanh")[3]  # one recurrent layer: the shortest training trace
    files = [
        to_onnx(layer, torch.rand(t, 2, 3), tmp_path / f"t{t}.onnx", mode="training").path
        for t in (10, 1000)
    ]
    short, long = (onnx.load(f) for f in files)
    assert short.graph == long.graph
    assert short.functions == long.functions


def test_examples_may_be_views_of_a_larger_batch(tmp_path, ort_session):
    """``xs[:, :2]`` of a bigger batch keeps that batch's strides, which the training trace
    took for a constraint on B (torch 2.13); to_onnx exports a contiguous copy."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        lif = lifexport.LIFRefrac(refrac_p(3, "super", 1.0))
        model = lifexport.SequentialState(torch.nn.Linear(4, 3), lif)
    xs, tgt = drive(10, 50, seed=0)[:, :2], target(50)[:2]  # the Linear reshapes (T, B) to T * B
    assert not xs.is_contiguous()
    path = tmp_path / "m.onnx"
    kwargs = dict(mode="training", with_state=False, loss=spike_count_mse, target=tgt)
    out = to_onnx(model, xs, path, **kwargs)
    assert list(out.input_names) == ["0.weight", "0.bias", "x", "target"]

    xs = drive(STEPS, B, seed=1)
    loss = spike_count_mse(model(xs)[0], target(B))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    feeds = {n: p.detach().numpy() for n, p in model.named_parameters()}
    result = ort_session(path)({**feeds, "x": xs.numpy(), "target": target(B).numpy()})
    np.testing.assert_allclose(result["loss"], loss.item(), rtol=1e-6)
    for name, grad in zip(["0.weight", "0.bias"], grads):
        assert grad.abs().max() > 0
        np.testing.assert_allclose(
            result[f"grad.{name}"], grad.numpy(), rtol=1e-4, atol=1e-4 * grad.abs().max().item()
        )


def test_cross_entropy_gradients_at_another_batch_size(tmp_path):
    """A mean-reduced cross-entropy (nll_loss) trains the same in onnxruntime at any batch:
    the exporter's own nll_loss backward would scale the gradients by the batch size."""
    torch.manual_seed(0)
    net = lifexport.SequentialState(
        torch.nn.Linear(4, 8),
        lifexport.LIFRefrac(F.LIFRefracParameters(F.LIFParameters(method="triangle", alpha=1.0))),
        torch.nn.Linear(8, 3),
        lifexport.LI(),
    )

    def loss(y, target):
        return torch.nn.functional.cross_entropy(y.max(0).values, target)

    x = 3 * torch.rand(20, 2, 4)
    exported = lifexport.to_onnx(
        net,
        x,
        tmp_path / "ce.onnx",
        mode="training",
        with_state=False,
        loss=loss,
        target=torch.tensor([0, 2]),
    )
    drive, target = 3 * torch.rand(20, 7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    report = lifexport.validate(
        net, exported.path, drive, ["CPUExecutionProvider"], target=target, loss=loss
    )
    assert report.passed, report.format()
    assert (
        max(
            report.providers["CPUExecutionProvider"].max_abs[f"grad.{n}"]
            for n, _ in net.named_parameters()
        )
        < 1e-4
    )
