"""onnxruntime's CUDA execution provider against eager torch on CUDA: step, sequence and
training graphs of every layer and of the digits network (strict precision: TF32 off)."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport.digits import trained_model
from lifexport.validation import assert_valid, validate

CUDA = "CUDAExecutionProvider"
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers(),
        reason="onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)",
    ),
]
F, H = 6, 8

LAYERS = {
    "LIFRefrac": lambda: lifexport.LIFRefrac(),
    "LIFRefracCell": lambda: lifexport.LIFRefracCell(),
    "LIFRefracRecurrent": lambda: lifexport.LIFRefracRecurrent(F, H),
    "LIFRefracRecurrentCell": lambda: lifexport.LIFRefracRecurrentCell(F, H),
    "LIF": lambda: lifexport.LIF(),
    "LIFCell": lambda: lifexport.LIFCell(),
    "LIFRecurrent": lambda: lifexport.LIFRecurrent(F, H),
    "LIFRecurrentCell": lambda: lifexport.LIFRecurrentCell(F, H),
    "LI": lambda: lifexport.LI(),
    "LICell": lambda: lifexport.LICell(),
}


def network(name: str) -> lifexport.SequentialState:
    """A Linear (a matrix product, where TF32 would show) before the layer; trainable."""
    torch.manual_seed(0)
    return lifexport.SequentialState(torch.nn.Linear(F, F), LAYERS[name]())


@pytest.mark.parametrize("graph", ["step", "sequence"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_inference_graphs_on_the_cuda_ep(tmp_path, name, graph) -> None:
    model = network(name)
    example = torch.rand(5, 2, F) if graph == "sequence" else torch.rand(2, F)
    out = lifexport.to_onnx(model, example, tmp_path / "m.onnx", graph=graph)
    report = validate(model.cuda(), out.path, providers=[CUDA], steps=100)
    assert report.providers[CUDA].settings == {"use_tf32": "0"}
    assert_valid(report)


@pytest.mark.parametrize("name", ["LIFRefrac", "LIFRefracRecurrent", "LIF", "LI"])
def test_training_graphs_on_the_cuda_ep(tmp_path, name) -> None:
    model = network(name)
    out = lifexport.to_onnx(model, torch.rand(5, 2, F), tmp_path / "t.onnx", mode="training")
    assert_valid(validate(model.cuda(), out.path, providers=[CUDA], steps=50))


@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_the_digits_network_on_the_cuda_ep(tmp_path, graph) -> None:
    model = trained_model().eval()
    example = torch.rand(32, 2, 64) if graph == "sequence" else torch.rand(2, 64)
    out = lifexport.to_onnx(model, example, tmp_path / "d.onnx", graph=graph)
    assert_valid(validate(model.cuda(), out.path, providers=[CUDA], steps=32))
