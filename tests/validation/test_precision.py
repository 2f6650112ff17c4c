"""Validation precision: strict float32 by default, deployment settings on a flip budget, and
the teacher-forced diagnosis that tells a graph bug from precision drift."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport.validation import validate
from lifexport.validation._precision import provider_settings, strict_float32

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def stack(seed: int = 0) -> lifexport.SequentialState:
    torch.manual_seed(seed)
    return lifexport.SequentialState(
        torch.nn.Linear(8, 16),
        lifexport.LIFRefracRecurrent(16, 16),
        torch.nn.Linear(16, 4),
        lifexport.LI(),
    ).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    net = stack()
    path = tmp_path_factory.mktemp("precision") / "net.onnx"
    return net, lifexport.to_onnx(net, torch.rand(5, 4, 8), path).path


def test_cuda_runs_without_tf32_unless_a_deployment_is_validated() -> None:
    assert provider_settings([CPU, CUDA], "strict", None) == {CPU: {}, CUDA: {"use_tf32": "0"}}
    assert provider_settings([CUDA], "deployment", None) == {CUDA: {"use_tf32": "1"}}
    options = {CUDA: {"use_tf32": "1", "cudnn_conv_algo_search": "DEFAULT"}}
    assert provider_settings([CUDA], "strict", options) == {
        CUDA: {"use_tf32": "1", "cudnn_conv_algo_search": "DEFAULT"}
    }


def test_options_for_a_provider_not_run_are_refused(exported) -> None:
    net, path = exported
    with pytest.raises(ValueError, match="provider_options: 'CUDAExecutionProvider' is not among"):
        validate(net, path, providers=[CPU], steps=5, provider_options={CUDA: {"use_tf32": "0"}})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(precision="tf32"), "precision must be one of"),
        (dict(flip_budget=1.5), r"flip_budget must be a number in \[0, 1\]"),
        (dict(flip_budget=True), r"flip_budget must be a number in \[0, 1\]"),
    ],
)
def test_bad_precision_arguments_are_named(exported, kwargs, match) -> None:
    net, path = exported
    with pytest.raises(ValueError, match=match):
        validate(net, path, providers=[CPU], steps=5, **kwargs)


def test_the_strict_reference_turns_tf32_off_and_restores_it() -> None:
    before = torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with strict_float32():
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before[0]
        torch.set_float32_matmul_precision(before[1])


def test_a_step_whose_own_computation_is_wrong_is_a_graph_bug(exported) -> None:
    net, path = exported
    changed = stack()
    with torch.no_grad():  # the torch model now computes something the graph does not
        changed[2].weight[0, 3] += 1e-3
    report = validate(changed, path, providers=[CPU], steps=100)
    cpu = report.providers[CPU]
    assert not report.passed
    # Teacher-forced, the first step with a local error is where the free run first differs:
    # the graph's layer-3 current, by the changed weight's share only.
    assert cpu.diagnosis.verdict == "graph bug"
    assert cpu.diagnosis.step == cpu.first_mismatch.step == cpu.first_diverging_step
    assert cpu.diagnosis.local.name == "next_state.3.i" and not cpu.diagnosis.local.numerical
    assert "graph bug: local error at step" in report.format()
    assert json.loads(json.dumps(report.to_dict()))["providers"][CPU]["diagnosis"]["step"] == (
        cpu.diagnosis.step
    )


def test_a_graph_bug_fails_a_deployment_validation_too(exported) -> None:
    net, path = exported
    changed = stack()
    with torch.no_grad():
        changed[0].weight.mul_(1.5)  # far beyond any rounding
    report = validate(changed, path, providers=[CPU], steps=60, precision="deployment")
    cpu = report.providers[CPU]
    assert cpu.diagnosis.verdict == "graph bug" and not report.passed


def test_a_float16_export_is_judged_against_a_float32_reference(tmp_path) -> None:
    net = stack(1).half()
    out = lifexport.to_onnx(net, torch.rand(5, 4, 8).half(), tmp_path / "h.onnx", graph="step")
    report = validate(net, out.path, providers=[CPU], steps=300, precision="deployment")
    cpu = report.providers[CPU]
    assert report.precision == "deployment" and cpu.flip_budget == 0.01
    assert cpu.settings == {}
    assert report.passed and cpu.flip_rate <= 0.01
    # float16 rounding makes the free run diverge from the float32 trajectory somewhere;
    # every single step, fed torch's state, is right within float16's precision.
    assert cpu.first_mismatch is not None
    assert cpu.diagnosis.verdict == "precision drift"
    assert cpu.diagnosis.step == cpu.first_diverging_step
    assert "precision drift from step" in report.format()


@pytest.mark.cuda
@pytest.mark.skipif(
    CUDA not in ort.get_available_providers(), reason="onnxruntime has no CUDAExecutionProvider"
)
def test_cuda_ep_matches_torch_exactly_without_tf32(tmp_path) -> None:
    torch.manual_seed(2)
    net = lifexport.SequentialState(
        torch.nn.Linear(100, 512), lifexport.LIFRefrac(), torch.nn.Linear(512, 10), lifexport.LI()
    ).eval()
    out = lifexport.to_onnx(net, torch.rand(5, 4, 100), tmp_path / "w.onnx")
    strict = validate(net, out.path, providers=[CUDA], steps=300)
    assert strict.providers[CUDA].settings == {"use_tf32": "0"}
    assert strict.passed and strict.providers[CUDA].first_mismatch is None
    deployment = validate(net, out.path, providers=[CUDA], steps=300, precision="deployment")
    assert deployment.providers[CUDA].settings == {"use_tf32": "1"} and deployment.passed
