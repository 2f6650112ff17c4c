"""``to_onnx`` leaves the model's mode as it was: every submodule's own ``training`` flag, for
every graph and mode, also when the export fails; inference graphs are the model in eval mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lifexport
from lifexport.errors import ExportError
from lifexport.export import to_onnx


def dropout_stack() -> lifexport.SequentialState:
    """Linear -> Dropout -> LIF-refrac: Dropout in train mode zeroes half the currents."""
    torch.manual_seed(0)
    return lifexport.SequentialState(
        torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), lifexport.LIFRefrac()
    )


def flags(model: torch.nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in model.named_modules()}


def set_flags(model: torch.nn.Module, which: str) -> None:
    model.train(which == "train")
    if which == "mixed":  # a model in eval mode with one layer in train mode, and the reverse
        model[0].train()
        model[len(model) - 1].train()


@pytest.mark.parametrize("which", ["eval", "train", "mixed"])
@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_inference_export_keeps_every_flag(tmp_path, graph, which):
    model = dropout_stack()
    set_flags(model, which)
    before = flags(model)
    assert len(set(before.values())) == (2 if which == "mixed" else 1)
    x = torch.rand(5, 2, 3)
    to_onnx(model, x[0] if graph == "step" else x, tmp_path / "m.onnx", graph=graph)
    assert flags(model) == before


@pytest.mark.parametrize("which", ["eval", "train", "mixed"])
def test_training_export_keeps_every_flag(tmp_path, which):
    model = lifexport.SequentialState(torch.nn.Linear(3, 4), lifexport.LIFRefrac())
    set_flags(model, which)
    before = flags(model)
    to_onnx(model, torch.rand(5, 2, 3), tmp_path / "m.onnx", mode="training")
    assert flags(model) == before


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_a_failed_export_keeps_every_flag(tmp_path, monkeypatch, mode):
    def fail(module, *args, **kwargs):
        assert not module.training  # the exporter is given the model in eval mode
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(torch.onnx, "export", fail)
    model = lifexport.SequentialState(torch.nn.Linear(3, 4), lifexport.LIFRefrac())
    set_flags(model, "mixed")
    before = flags(model)
    with pytest.raises(ExportError, match="exporter broke"):
        to_onnx(model, torch.rand(5, 2, 3), tmp_path / "m.onnx", mode=mode)
    assert flags(model) == before
    assert not (tmp_path / "m.onnx").exists()


def test_the_inference_graph_is_the_model_in_eval_mode(tmp_path, ort_session):
    """Exported from a model in train mode, the graph still has no Dropout: it equals the model
    in eval mode, while the model (back in train mode) drops currents."""
    model = dropout_stack()
    out = to_onnx(model, torch.rand(5, 2, 3), tmp_path / "m.onnx", with_state=False)
    assert model.training and model[1].training
    xs = 3 * torch.rand(40, 2, 3, generator=torch.Generator().manual_seed(1))
    y = ort_session(out.path)({"x": xs.numpy()})["y"]
    with torch.no_grad():
        model.eval()
        expected, _ = model(xs)
        model.train()
        dropped, _ = model(xs)
    assert 0 < expected.sum() < expected.numel()
    np.testing.assert_array_equal(y, expected.numpy())
    assert not np.array_equal(y, dropped.numpy())
