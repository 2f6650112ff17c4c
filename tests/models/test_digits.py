"""The shipped digits network: target accuracy in torch, the same predictions in onnxruntime,
weights shipped as package data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport import digits


@pytest.fixture(scope="module")
def shipped():
    model, cfg = digits.load_trained()
    _, _, x_test, y_test = digits.load_split(cfg)
    return model, cfg, digits.encode(x_test, cfg), y_test


def test_weights_are_package_data_found_through_importlib_resources():
    """The weights lie inside the package, not in the repository around it, so an installed
    package finds them."""
    weights = resources.files("lifexport.digits") / "digits.pt"
    assert weights.is_file()
    assert weights == digits.WEIGHTS
    assert Path(str(weights)).is_relative_to(Path(lifexport.__file__).parent)


def test_weights_are_declared_package_data():
    """A wheel holds the weights only if pyproject.toml declares them."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(lifexport.__file__).parents[1] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    assert "digits.pt" in data["lifexport.digits"]


def test_load_trained_reads_the_shipped_weights_with_weights_only(monkeypatch):
    seen = []
    load = torch.load

    def spy(file, **kwargs):
        seen.append(kwargs)
        return load(file, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    model, cfg = digits.load_trained()
    assert seen == [{"weights_only": True}]
    assert cfg == digits.DigitsConfig()


def test_save_and_load_trained_round_trip(tmp_path):
    model, cfg = digits.load_trained()
    digits.save(model, cfg, tmp_path / "d.pt")
    again, cfg_again = digits.load_trained(tmp_path / "d.pt")
    assert cfg_again == cfg
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_encoding_is_a_deterministic_rate_code():
    cfg = digits.DigitsConfig(steps=8, max_rate=0.5)
    images = torch.tensor([[0.0, 8.0, 16.0]])  # rates 0, 0.25, 0.5 spikes per step
    spikes = digits.encode(images, cfg)[:, 0]  # (T, 3)
    assert spikes.sum(0).tolist() == [0.0, 2.0, 4.0]
    assert spikes[:, 2].tolist() == [0.0, 1.0] * 4  # a spike every other step
    assert torch.equal(digits.encode(images, cfg), digits.encode(images, cfg))


def test_split_is_stratified_and_fixed():
    cfg = digits.DigitsConfig()
    _, y_train, x_test, y_test = digits.load_split(cfg)
    assert len(x_test) == 360 and len(y_train) == 1437
    counts = torch.bincount(y_test, minlength=10).float()
    train_counts = torch.bincount(y_train, minlength=10).float()
    torch.testing.assert_close(counts / 360, train_counts / 1437, atol=0.01, rtol=0)
    assert torch.equal(digits.load_split(digits.DigitsConfig(seed=5))[2], x_test)


def test_shipped_weights_reach_target_accuracy(shipped):
    model, cfg, xs, y_test = shipped
    with torch.no_grad():
        pred = digits.readout(model(xs)[0]).argmax(1)
    accuracy = (pred == y_test).float().mean().item()
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f} is below the 97% target"


def test_onnxruntime_makes_the_same_prediction_on_every_test_image(shipped, tmp_path):
    model, cfg, xs, y_test = shipped
    exported = lifexport.export.to_onnx(model, xs[:, :2], tmp_path / "d.onnx", with_state=False)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(exported.path), options, providers=["CPUExecutionProvider"])
    (potentials,) = session.run(["y"], {"x": xs.numpy()})
    with torch.no_grad():
        torch_potentials = model(xs)[0]
    ort_pred = np.asarray(potentials).max(0).argmax(1)
    torch_pred = digits.readout(torch_potentials).argmax(1).numpy()
    assert (ort_pred == torch_pred).all()
    np.testing.assert_allclose(potentials, torch_potentials.numpy(), atol=1e-5, rtol=0)


def test_training_a_few_steps_lowers_the_loss():
    cfg = digits.DigitsConfig(hidden=64)
    losses = []
    digits.train(
        cfg,
        digits.TrainConfig(epochs=2, compile=False),
        lambda done, total, text: losses.append(float(text.split()[-1])),
    )
    assert losses[-1] < losses[0] < 2.4
