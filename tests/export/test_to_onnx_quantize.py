"""to_onnx(quantize="int8", calibration=...) and to_onnx(unroll=k): the file, its contract,
and validate's verdict on it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport.export import op_types
from lifexport.validation import validate

CPU = "CPUExecutionProvider"


def network() -> lifexport.SequentialState:
    torch.manual_seed(0)
    net = lifexport.SequentialState(
        torch.nn.Linear(8, 16), lifexport.LIFRefrac(), torch.nn.Linear(16, 6), lifexport.LIFRefrac()
    ).eval()
    with torch.no_grad():
        net[2].weight.abs_().mul_(2.0)  # excitatory, so that the output layer spikes often
    return net


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    net = network()
    calibration = torch.rand(30, 8, 8) * 3  # seeded by network()
    path = tmp_path_factory.mktemp("int8") / "net.onnx"
    return net, lifexport.to_onnx(
        net, calibration[:, :2], path, quantize="int8", calibration=calibration
    )


def test_the_int8_file_records_its_quantization_in_the_contract(quantized) -> None:
    _, out = quantized
    assert out.contract.quantize.startswith("int8 QDQ")
    assert lifexport.read_graph(out.path).contract == out.contract
    ops = op_types(onnx.load(out.path))
    assert {("", "QuantizeLinear"), ("", "DequantizeLinear")} <= ops
    assert all(domain == "" for domain, _ in ops)


def test_validate_judges_an_int8_file_on_its_flip_rate(quantized) -> None:
    net, out = quantized
    torch.manual_seed(5)
    drive = torch.rand(100, 8, 8) * 3
    report = validate(net, out.path, drive, providers=[CPU])
    cpu = report.providers[CPU]
    assert report.precision == "deployment" and cpu.flip_budget == 0.01
    assert report.spikes["y"] > 50  # the output layer spikes: the flip rate means something
    # Independent count of the output spikes that differ, from a plain onnxruntime run.
    session = ort.InferenceSession(str(out.path), providers=[CPU])
    rest = {
        n: np.zeros((8, 16 if n.startswith("state.1") else 6), np.float32) for n in out.state_names
    }
    (y_onnx,) = session.run(["y"], {"x": drive.numpy(), **rest})
    with torch.no_grad():
        y_torch = net(drive)[0].numpy()
    flips = int(np.count_nonzero(y_onnx != y_torch))
    assert cpu.flips == flips and cpu.flip_rate == pytest.approx(flips / y_torch.size)
    bug = cpu.diagnosis is not None and cpu.diagnosis.verdict == "graph bug"
    assert report.passed == (cpu.flip_rate <= 0.01 and not bug)
    assert report.passed


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(quantize="int4", calibration=torch.rand(3, 2, 8)), "quantize must be 'int8' or None"),
        (dict(quantize="int8"), "quantize='int8' needs calibration="),
        (dict(quantize="int8", calibration=torch.rand(2, 8)), "calibration must have"),
        (dict(calibration=torch.rand(3, 2, 8)), "calibration is for quantize='int8'"),
        (dict(quantize="int8", calibration=torch.rand(3, 2, 8), mode="training"), "needs mode"),
        (dict(unroll=0), r"unroll must be an int in 1\.\.3 .* got 0"),
    ],
)
def test_bad_quantize_and_unroll_arguments_are_named(tmp_path, kwargs, match) -> None:
    net = network()
    for p in net.parameters():
        p.requires_grad_(True)
    with pytest.raises(ValueError, match=match):
        lifexport.to_onnx(net, torch.rand(3, 2, 8), tmp_path / "bad.onnx", **kwargs)
    assert not (tmp_path / "bad.onnx").exists()


def test_an_unrolled_sequence_graph_gives_the_same_values(tmp_path) -> None:
    net = network()
    one = lifexport.to_onnx(net, torch.rand(4, 2, 8), tmp_path / "k1.onnx")
    four = lifexport.to_onnx(net, torch.rand(4, 2, 8), tmp_path / "k4.onnx", unroll=4)
    drive = (torch.rand(11, 3, 8) * 3).numpy()
    runs = [
        ort.InferenceSession(str(f.path), providers=[CPU]).run(None, {"x": drive, **rest})
        for f in (one, four)
        for rest in [
            {
                n: np.zeros((3, 16 if n.startswith("state.1") else 6), np.float32)
                for n in f.state_names
            }
        ]
    ]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
