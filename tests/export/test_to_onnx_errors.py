"""``to_onnx`` on bad input: clear errors that name the culprit, and no half-written file."""

from __future__ import annotations

import os
import re
import types

import pytest
import torch

import lifexport
from lifexport.export import _files, to_onnx
from lifexport.limits import LIMITS


def stack() -> lifexport.SequentialState:
    return lifexport.SequentialState(torch.nn.Linear(4, 3), lifexport.LIFRefrac())


def sequence() -> torch.Tensor:
    return torch.rand(10, 2, 4)


def with_lstm() -> torch.nn.Module:
    model = stack()
    model.append(torch.nn.LSTM(3, 3))  # nn.Sequential.append skips the constructor's check
    return model


def cells_with_gru() -> lifexport.SequentialState:
    model = lifexport.SequentialState(lifexport.LIFRefracCell())
    model.append(torch.nn.GRU(4, 4))
    return model


@pytest.mark.parametrize(
    "model, match",
    [
        (with_lstm, r"layer 2 \(LSTM\) is not supported in a SequentialState"),
        (lambda: torch.nn.Sequential(torch.nn.Linear(4, 3), lifexport.LIFRefrac()), "Sequential"),
        (lambda: torch.nn.GRU(4, 3), "got GRU"),
        (
            lambda: lifexport.TimeLoop(cells_with_gru()),
            r"layer 1 \(GRU\) is not supported in a SequentialState",
        ),
    ],
    ids=["lstm_in_stack", "nn_sequential", "gru", "gru_in_time_loop"],
)
@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_unsupported_model_or_layer_is_named(tmp_path, model, match, graph):
    x = sequence() if graph == "sequence" else sequence()[0]
    with pytest.raises(lifexport.ExportError, match=match):
        to_onnx(model(), x, tmp_path / "m.onnx", graph=graph)
    assert not os.listdir(tmp_path)


def test_missing_folder_is_named(tmp_path):
    folder = tmp_path / "no" / "such"
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        to_onnx(stack(), sequence(), folder / "m.onnx")
    assert not (tmp_path / "no").exists()


def test_folder_as_path_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        to_onnx(stack(), sequence(), tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(graph="unrolled"), "graph must be one of"),
        (dict(mode="eval"), "mode must be one of"),
        (dict(mode="training", loss=torch.nn.functional.mse_loss), "loss and target go together"),
        (dict(mode="training", target=torch.rand(2, 3)), "loss and target go together"),
    ],
    ids=["graph", "mode", "loss_without_target", "target_without_loss"],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_onnx(stack(), sequence(), tmp_path / "m.onnx", **kwargs)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "model, x, graph, match",
    [
        (stack, torch.rand(10, 2, 5), "sequence", r"shape \(10, 2, 5\) does not fit the model"),
        (stack, torch.rand(2, 5), "step", r"shape \(2, 5\) does not fit the model"),
        (stack, torch.rand(4), "sequence", r"takes a sequence \(T, B, ...\); got .* \(4,\)"),
        (stack, torch.ones(10, 2, 4, dtype=torch.int64), "sequence", "floating-point tensor"),
        (
            lambda: lifexport.LIFRefracRecurrentCell(3, 2),
            torch.rand(2, 4),
            "step",
            "input_weights must have shape",
        ),
    ],
    ids=["features_sequence", "features_step", "no_time_axis", "integer", "recurrent_features"],
)
def test_example_input_that_does_not_fit_is_refused(tmp_path, model, x, graph, match):
    with pytest.raises(ValueError, match=match):
        to_onnx(model(), x, tmp_path / "m.onnx", graph=graph)


def test_training_without_trainable_parameter_names_the_model(tmp_path):
    with pytest.raises(ValueError, match="LIFRefrac has no parameter with requires_grad=True"):
        to_onnx(lifexport.LIFRefrac(), torch.rand(10, 2, 3), tmp_path / "m.onnx", mode="training")


def failing_exports(path) -> list:
    """Calls of to_onnx that fail at different stages, before anything reaches ``path``."""
    return [
        lambda: to_onnx(with_lstm(), sequence(), path),
        lambda: to_onnx(stack(), sequence(), path, graph="unrolled"),
        lambda: to_onnx(stack(), torch.rand(10, 2, 5), path),
        lambda: to_onnx(lifexport.LIFRefrac(), sequence(), path, mode="training"),
    ]


def test_failed_export_leaves_an_existing_file_as_it_was(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("keep me")
    for export in failing_exports(path):
        with pytest.raises((lifexport.ExportError, ValueError)):
            export()
        assert path.read_text() == "keep me"
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_failure_while_writing_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    """The model is written beside the file and renamed over it: a failure at the very end
    (the rename) leaves the old file whole and removes the temporary."""
    path = tmp_path / "m.onnx"
    path.write_text("keep me")

    def replace(src, dst):
        raise OSError("disk full")

    fake_os = types.SimpleNamespace(**{**vars(os), "replace": replace})
    monkeypatch.setattr(_files, "os", fake_os)  # only the file writer's os.replace
    with pytest.raises(OSError, match="disk full"):
        to_onnx(stack(), sequence(), path)
    assert path.read_text() == "keep me"
    assert os.listdir(tmp_path) == ["m.onnx"]
    monkeypatch.undo()
    to_onnx(stack(), sequence(), path)  # and a successful export replaces it
    assert path.read_bytes()[:20] != b"keep me"


def test_state_names_of_an_unsupported_model_is_an_export_error():
    from lifexport.export import state_names

    with pytest.raises(lifexport.ExportError, match="Linear"):
        state_names(torch.nn.Linear(3, 3), torch.rand(2, 3))


@pytest.mark.parametrize("kind", ["bytes", "int"])
def test_path_must_be_a_text_path(tmp_path, kind):
    path = bytes(tmp_path / "m.onnx") if kind == "bytes" else 3
    with pytest.raises(TypeError, match=f"^path must be a str or os.PathLike .*, got {kind}$"):
        to_onnx(stack(), sequence(), path)
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "graph, unroll, match",
    [
        ("sequence", 10**9, r"in 1\.\.10 \(.*at most T = 10, the example input's time steps\)"),
        ("sequence", 11, r"in 1\.\.10 .* got 11$"),
        ("sequence", 0, r"in 1\.\.10 .* got 0$"),
        ("sequence", 2.0, r"in 1\.\.10 .* got 2\.0$"),
        ("sequence", True, r"in 1\.\.10 .* got True$"),
        ("step", 2, r"in 1\.\.1 \(steps per Scan iteration: a step graph has no time loop\)"),
    ],
)
def test_unroll_is_an_int_from_1_to_t(tmp_path, graph, unroll, match):
    """Refused before any tracing: unroll=10**9 used to trace a Python loop of 10**9 steps."""
    x = sequence() if graph == "sequence" else sequence()[0]
    with pytest.raises(ValueError, match="^unroll must be an int " + match):
        to_onnx(stack(), x, tmp_path / "m.onnx", graph=graph, unroll=unroll)
    assert not os.listdir(tmp_path)


def test_unroll_is_capped_by_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(LIMITS, "max_unroll", 4)
    with pytest.raises(ValueError, match=r"in 1\.\.4 .*LIMITS.max_unroll = 4\), got 5$"):
        to_onnx(stack(), sequence(), tmp_path / "m.onnx", unroll=5)


@pytest.mark.parametrize(
    "calibration, match",
    [
        (torch.full((10, 2, 4), float("nan")), "be finite: it holds NaN or inf"),
        (torch.rand(10, 2, 4).index_fill(0, torch.tensor([3]), float("inf")), "be finite"),
        (torch.zeros(10, 2, 4), "vary: every element is 0.0"),
        (torch.full((6, 3, 4), 0.5), "vary: every element is 0.5"),
        (torch.rand(10, 2, 5), r"be shaped like example_input \(10, 2, 4\): .*got \(10, 2, 5\)$"),
        (torch.rand(0, 2, 4), r"be .* with features \(4,\) \(T and B may differ, but not be 0\)"),
    ],
    ids=["nan", "inf", "zeros", "constant", "features", "empty"],
)
def test_calibration_must_give_input_ranges(tmp_path, calibration, match):
    with pytest.raises(ValueError, match="^calibration must " + match):
        to_onnx(stack(), sequence(), tmp_path / "m.onnx", quantize="int8", calibration=calibration)
    assert not os.listdir(tmp_path)


def test_calibration_is_held_to_the_element_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(LIMITS, "max_elements", 50)
    with pytest.raises(ValueError, match=r"^calibration of shape \(7, 2, 4\) has 56 elements"):
        to_onnx(
            stack(),
            sequence(),
            tmp_path / "m.onnx",
            quantize="int8",
            calibration=torch.rand(7, 2, 4),
        )


def test_quantize_needs_weights_to_quantize(tmp_path):
    """Without a Linear or Conv the file would claim int8 weights it does not hold."""
    with pytest.raises(ValueError, match="^quantize='int8' needs a model with Linear or Conv"):
        to_onnx(
            lifexport.LIFRefrac(),
            sequence(),
            tmp_path / "m.onnx",
            quantize="int8",
            calibration=torch.rand(4, 2, 4),
        )
    assert not os.listdir(tmp_path)
