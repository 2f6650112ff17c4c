"""validate() on exported models: passing runs, providers, real and numerical mismatches,
training graphs; every check compares numbers from onnxruntime with eager torch."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import torch

import lifexport
import lifexport.functional as F
from lifexport.errors import ValidationError
from lifexport.validation import assert_valid, validate

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
HAS_CUDA = CUDA in ort.get_available_providers()
ONE_ULP_BELOW_1 = torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()


@pytest.mark.parametrize(
    "name, graph, state_names",
    [
        ("lif_refrac", "sequence", ["next_state.0.v", "next_state.0.i", "next_state.0.rho"]),
        ("stack_step", "step", ["next_state.1.v", "next_state.1.i", "next_state.1.rho"]),
        ("recurrent", "sequence", ["next_state.0.z", "next_state.0.v", "next_state.0.i"]),
        ("recurrent_step", "step", ["next_state.0.z", "next_state.0.v", "next_state.0.rho"]),
    ],
)
def test_exported_model_passes_on_cpu_over_200_steps(exported, nets, name, graph, state_names):
    model, path = exported(name)
    report = validate(model, path)
    cpu = report.providers[CPU]
    shape = (report.graph, report.mode, report.steps, report.batch)
    assert shape == (graph, "inference", 200, nets.B)
    assert report.passed and cpu.passed and cpu.spikes_equal
    assert cpu.first_mismatch is None and cpu.flips == 0 and cpu.failed == ()
    # the comparison had something to compare: spikes, but not everywhere
    assert 0 < report.spikes["y"] < 200 * nets.B * nets.HIDDEN
    assert set(state_names) <= set(cpu.max_abs) and "y" in cpu.max_abs
    assert cpu.max_abs["y"] == 0
    assert all(0 <= value < 1e-4 for value in cpu.max_abs.values())
    assert all(0 <= value < 1e-4 for value in cpu.max_rel.values())
    assert_valid(report)
    json.dumps(report.to_dict(), allow_nan=False)
    assert report.format().splitlines()[3].startswith(f"{CPU} (defaults): passed, spikes equal")


def test_validation_leaves_the_model_as_it_was(exported):
    model, path = exported("stack_step")
    validate(model, path, steps=5, providers=CPU)
    assert all("step" not in vars(layer) for layer in model)  # wrappers removed


def test_given_inputs_are_the_drive(exported, nets):
    model, path = exported("lif_refrac")
    silent = validate(model, path, torch.zeros(30, 5, nets.FEATURES), providers=[CPU])
    assert (silent.steps, silent.batch, silent.spikes) == (30, 5, {"y": 0})
    assert silent.passed


@pytest.mark.skipif(HAS_CUDA, reason="onnxruntime offers CUDA here")
def test_unavailable_cuda_is_reported_not_dropped(exported):
    model, path = exported("lif_refrac")
    report = validate(model, path, steps=20)  # the default asks for CPU and CUDA
    assert list(report.providers) == [CPU]
    assert "onnxruntime.get_available_providers()" in report.unavailable[CUDA]
    assert "onnxruntime-gpu" in report.unavailable[CUDA]
    assert f"{CUDA}: unavailable" in report.format()
    assert report.passed  # the providers that ran passed


@pytest.mark.skipif(not HAS_CUDA, reason="onnxruntime has no CUDAExecutionProvider here")
@pytest.mark.parametrize("name", ["lif_refrac", "stack_step", "recurrent"])
def test_cuda_provider_matches_torch(exported, name):
    model, path = exported(name)
    report = validate(model, path, providers=[CUDA])
    assert list(report.providers) == [CUDA]
    assert_valid(report)


def test_no_available_provider_fails_the_assert(exported):
    missing = [p for p in ort.get_all_providers() if p not in ort.get_available_providers()]
    model, path = exported("lif_refrac")
    report = validate(model, path, providers=missing[:1], steps=5)
    assert report.providers == {} and list(report.unavailable) == missing[:1]
    assert not report.passed
    with pytest.raises(ValidationError, match="none of the requested execution providers"):
        assert_valid(report)


@pytest.mark.parametrize("name", ["lif_refrac", "stack_step"])
def test_a_different_model_is_a_real_mismatch(exported, nets, name):
    _, path = exported(name)
    torch.manual_seed(0)
    if name == "lif_refrac":  # another threshold
        other = lifexport.LIFRefrac(nets.refrac_p(v_th=0.8))
    else:  # other weights
        linear = torch.nn.Linear(nets.FEATURES, nets.HIDDEN)
        other = lifexport.SequentialState(linear, lifexport.LIFRefracCell())
    report = validate(other, path, providers=[CPU])
    cpu = report.providers[CPU]
    assert not cpu.spikes_equal and cpu.flips > 0 and "y" in cpu.failed
    assert not cpu.passed and not report.passed
    found = cpu.first_mismatch
    assert isinstance(found.step, int) and len(found.index) == 2 and not found.numerical
    if name == "lif_refrac":  # the threshold moved: the first sign is a spike
        assert (found.name, found.kind, found.layer) == ("y", "spike", 0)
        assert {found.torch_value, found.onnx_value} == {0.0, 1.0}
        assert found.margin > 1e-3
    else:  # the weights: the currents differ before any spike does
        assert found.name in ("next_state.1.v", "next_state.1.i")
        assert (found.kind, found.layer) == ("value", 1)
        assert abs(found.torch_value - found.onnx_value) > 1e-3
    with pytest.raises(
        ValidationError, match=r"first mismatch: .* at step \d+, layer \d+: .* real"
    ):
        assert_valid(report)


@pytest.mark.parametrize(
    "name, method", [("lif_refrac", "super"), ("lif_refrac_heaviside", "heaviside")]
)
def test_a_flip_on_the_threshold_is_numerical(exported, nets, name, method):
    """torch's v_th is 1 ulp below the graph's, and the drive puts v exactly on 1.0 at step 0:
    torch spikes, onnxruntime does not, and v - v_th was one ulp."""
    _, path = exported(name)
    model = lifexport.LIFRefrac(nets.refrac_p(method, v_th=ONE_ULP_BELOW_1))
    xs = torch.rand(50, nets.B, nets.FEATURES, generator=torch.Generator().manual_seed(0)) * 3
    xs[0] = 10.0  # v = dt * tau_mem_inv * 10 = 1.0 after the first step
    report = validate(model, path, xs, providers=[CPU])
    cpu = report.providers[CPU]
    assert not cpu.spikes_equal
    found = cpu.first_mismatch
    assert (found.name, found.step, found.layer, found.index) == ("y", 0, 0, (0, 0))
    assert (found.torch_value, found.onnx_value) == (1.0, 0.0)
    assert 0 < found.margin < 1e-7 and found.numerical
    assert cpu.passed and report.passed
    assert_valid(report)  # reported, not raised
    assert "numerical" in report.format()
    tight = validate(model, path, xs, providers=[CPU], numerical_margin=1e-9)
    with pytest.raises(ValidationError):
        assert_valid(tight)


@pytest.mark.parametrize("name", ["two_layers", "two_layers_step"])
def test_a_hidden_layer_flip_is_located_in_its_layer(exported, nets, name):
    """Layer 1's v_th is 1 ulp lower in torch: it flips at step 0 and makes layer 3 (y) flip in
    the same step; the first mismatch is layer 1's, for step and sequence graphs alike."""
    _, path = exported(name)
    model = nets.two_spiking_layers(v_th_hidden=ONE_ULP_BELOW_1)
    xs = torch.rand(40, nets.B, nets.FEATURES, generator=torch.Generator().manual_seed(1)) * 3
    xs[0] = 10.0
    report = validate(model, path, xs, providers=[CPU])
    found = report.providers[CPU].first_mismatch
    assert "y" in report.providers[CPU].failed
    assert (found.name, found.step, found.layer, found.index) == ("next_state.1.v", 0, 1, (0, 0))
    assert found.numerical and report.passed


def test_training_graph_gradients_match_autograd(exported):
    model, path = exported("training")
    report = validate(model, path, providers=[CPU])
    cpu = report.providers[CPU]
    assert report.mode == "training" and report.spikes["y"] > 0
    names = ["loss", "y", "next_state.1.v", "next_state.1.i", "next_state.1.rho"]
    assert list(cpu.max_abs) == [*names, "grad.0.weight", "grad.0.bias"]
    assert cpu.passed and cpu.first_mismatch is None
    assert cpu.max_rel["grad.0.weight"] < 1e-4 and cpu.max_rel["loss"] < 1e-6
    assert all(p.requires_grad for p in model.parameters())
    # the gradients are real numbers compared: with no tolerance at all, they differ in the
    # last bits (the backward Scan sums in another order than autograd)
    exact = validate(model, path, providers=[CPU], rtol=0.0, atol=0.0)
    assert "grad.0.weight" in exact.providers[CPU].failed


def test_training_graph_with_other_parameters_still_matches(exported):
    """Parameters are graph inputs: validation feeds the model's current values."""
    model, path = exported("training")
    with torch.no_grad():
        model[0].weight.mul_(1.5)
    model[0].weight.requires_grad_(False)  # frozen now, still an input of the graph
    report = validate(model, path, steps=60, providers=[CPU])
    assert_valid(report)
    assert not model[0].weight.requires_grad  # restored


def test_a_different_model_of_the_same_shape_is_caught_in_a_sequence(exported, nets):
    _, path = exported("recurrent")
    torch.manual_seed(99)  # other random weights
    other = lifexport.LIFRefracRecurrent(nets.FEATURES, nets.HIDDEN)
    report = validate(other, path, providers=[CPU])
    found = report.providers[CPU].first_mismatch
    assert found is not None and found.step is not None and not found.numerical
    with pytest.raises(ValidationError):
        report.assert_valid()


def test_lif_refrac_model_is_the_default_reference(exported, nets):
    """A fresh model with the same (default) parameters is the same model."""
    _, path = exported("lif_refrac")
    assert validate(nets.lif_refrac(), path, steps=100, providers=[CPU]).passed


def test_a_target_graph_with_its_loss_matches_autograd(with_target, nets):
    net, path, graph = with_target
    gen = torch.Generator().manual_seed(0)
    targets = [torch.rand(nets.B, nets.HIDDEN, generator=gen).round()]  # every step
    if graph == "step":  # or one per step
        targets.append(torch.rand(30, nets.B, nets.HIDDEN, generator=gen).round())
    for target in targets:
        report = validate(net, path, providers=CPU, steps=30, target=target, loss=nets.mse)
        cpu = report.providers[CPU]
        assert report.graph == graph and report.spikes["y"] > 0
        assert {"loss", "grad.0.weight", "grad.0.bias"} <= set(cpu.max_abs)
        assert cpu.max_rel["grad.0.weight"] < 1e-4
        report.assert_valid()
    # another loss than the exported one is caught, and it is no numerical matter
    other = validate(
        net, path, providers=CPU, steps=30, target=target, loss=lambda y, t: 2 * nets.mse(y, t)
    )
    assert other.providers[CPU].first_mismatch.name in ("loss", "grad.0.weight")
    assert not other.providers[CPU].first_mismatch.numerical and not other.passed


def test_validate_compares_the_model_in_its_own_mode(tmp_path, nets):
    """An eval-mode model with Dropout stays in eval mode through to_onnx and validate, and
    passes; the same model in train mode drops currents, which validate reports as a real
    mismatch, naming the mode."""
    torch.manual_seed(0)
    model = lifexport.SequentialState(
        nets.linear(nets.FEATURES, nets.HIDDEN, seed=7), torch.nn.Dropout(0.5), nets.lif_refrac()
    ).eval()
    path = tmp_path / "dropout.onnx"
    lifexport.to_onnx(model, torch.rand(5, nets.B, nets.FEATURES), path)
    assert not any(m.training for m in model.modules())
    report = validate(model, path, steps=50, providers=[CPU])
    assert not any(m.training for m in model.modules())
    assert report.model_mode == "eval" and report.to_dict()["model_mode"] == "eval"
    assert report.passed and report.spikes["y"] > 0
    assert report.format().splitlines()[1] == "torch ran the model in its own eval mode"
    assert report.mode_dependent == ()

    model.train()
    dropped = validate(model, path, steps=50, providers=[CPU])
    cpu = dropped.providers[CPU]
    assert model.training and model[1].training
    assert dropped.model_mode == "train" and not dropped.passed
    assert dropped.mode_dependent == ("1",)
    assert not cpu.first_mismatch.numerical
    mode_line = dropped.format().splitlines()[1]
    assert mode_line.startswith("torch ran the model in its own train mode; 1 act as in training")
    assert "call model.eval()" in mode_line

    model.eval()
    model[2].train()  # the neuron layer has no mode-dependent behaviour
    mixed = validate(model, path, steps=50, providers=[CPU])
    assert (mixed.model_mode, mixed.train_modules) == ("mixed", ("2",))
    assert mixed.passed and "in train mode: 2" in mixed.format()
    assert mixed.mode_dependent == () and "model.eval()" not in mixed.format()


ALPHA = {"super": 1.0, "triangle": 1.0, "tanh": 2.0, "circ": 0.5, "heavi_erfc": 2.0}


@pytest.mark.parametrize("method", list(ALPHA))
def test_training_gradients_of_every_surrogate_pass_at_the_same_tolerance(tmp_path, method):
    """Linear -> LIF-refrac -> Linear -> LI, T=40, B=8: every surrogate's gradients agree with
    autograd within validate's default tolerance, and within 2e-6 of the gradient's scale.
    (With onnxruntime's float Tanh, tanh's grad.0.weight was off by 7e-4 relative on an
    element, and validate failed.)"""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        lif = F.LIFParameters(method=method, alpha=ALPHA[method])
        net = lifexport.SequentialState(
            torch.nn.Linear(16, 64),
            lifexport.LIFRefrac(F.LIFRefracParameters(lif)),
            torch.nn.Linear(64, 10),
            lifexport.LI(),
        )
    with torch.no_grad():
        net[0].weight.mul_(4.0)  # neurons far from threshold too, where 1 - tanh^2 cancels
    path = tmp_path / f"{method}.onnx"
    lifexport.to_onnx(net, torch.rand(40, 8, 16), path, mode="training")
    xs = 3 * torch.rand(40, 8, 16, generator=torch.Generator().manual_seed(0))
    report = validate(net, path, xs, providers=[CPU])
    cpu = report.providers[CPU]
    assert report.passed and cpu.failed == (), report.format()
    ys, _ = net(xs)
    params = dict(net.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(ys.sum(), list(params.values()))))
    for name in ("0.weight", "0.bias"):  # the gradients through the surrogate
        scale = grads[name].abs().max().item()
        assert 0 < scale < 1e4
        assert cpu.max_abs[f"grad.{name}"] < 2e-6 * scale, (name, cpu.max_abs[f"grad.{name}"])


def float16_lif() -> torch.nn.Module:
    """A LIF layer with per-neuron parameters; driven as below, float16 rounding puts one v
    within an ulp of v_th at step 35, where onnxruntime and torch round it apart."""
    gen = torch.Generator().manual_seed(0)
    p = F.LIFParameters(
        tau_mem_inv=80.0 + 40.0 * torch.rand(5, generator=gen),
        v_th=0.6 + 0.6 * torch.rand(5, generator=gen),
        method="super",
        alpha=50.0,
    )
    return lifexport.LIF(p).half()


@pytest.mark.parametrize("graph", ["sequence", "step"])
def test_a_float16_graph_is_validated_in_float16_ulps(tmp_path, graph):
    model, path = float16_lif(), tmp_path / f"{graph}.onnx"
    example = torch.rand(10, 2, 5, dtype=torch.float16)
    lifexport.to_onnx(model, example[0] if graph == "step" else example, path, graph=graph)
    xs = 2 * torch.rand(200, 3, 5, generator=torch.Generator().manual_seed(1)).half()
    eps = torch.finfo(torch.float16).eps

    report = validate(model, path, xs, providers=[CPU])
    assert report.dtype == "float16" and "float16" in report.format().splitlines()[0]
    assert (report.rtol, report.atol, report.numerical_margin) == (
        1e-4 * 8192,
        1e-5 * 8192,
        1e-5 * 8192,
    )
    found = report.providers[CPU].first_mismatch
    assert (found.name, found.kind, found.step) == ("y", "spike", 35)
    assert 0 < found.margin <= eps  # v was one float16 ulp from v_th
    assert found.numerical and report.passed
    # float32's tolerances call that 1-ulp flip real
    as_float32 = validate(
        model, path, xs, providers=[CPU], rtol=1e-4, atol=1e-5, numerical_margin=1e-5
    )
    assert not as_float32.passed and not as_float32.providers[CPU].first_mismatch.numerical

    # and a model that is not the graph's is still caught with float16's tolerances
    other = float16_lif()
    with torch.no_grad():
        other.v_th.mul_(0.8)
    wrong = validate(other, path, xs, providers=[CPU])
    found = wrong.providers[CPU].first_mismatch
    assert found.kind == "spike" and found.margin > 100 * eps and not found.numerical
    assert not wrong.passed
