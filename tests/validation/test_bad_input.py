"""validate() refuses bad arguments up front, naming what was wrong and what it expected."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import lifexport
from lifexport.limits import LIMITS
from lifexport.validation import assert_valid, validate
from tests.graph.tamper import edited, shift_initializer

CPU = "CPUExecutionProvider"


def test_unknown_provider_is_named_with_the_known_ones(exported):
    model, path = exported("lif_refrac")
    with pytest.raises(ValueError, match="FooExecutionProvider.*known ones are .*CPU"):
        validate(model, path, providers=[CPU, "FooExecutionProvider"])
    with pytest.raises(ValueError, match="at least one execution provider"):
        validate(model, path, providers=[])


@pytest.mark.parametrize(
    "name, shape, hint",
    [
        ("lif_refrac", (20, 2, 4), r"\(T, B, 3\) for this sequence graph"),  # features
        ("lif_refrac", (20, 3), r"\(T, B, 3\) .* got \(20, 3\)"),  # rank
        ("lif_refrac", (20, 2, 3, 1), r"\(T, B, 3\)"),
        ("stack_step", (2, 3), r"\(T, B, 3\) for this step graph .* add the time dimension"),
        ("stack_step", (20, 2, 5), r"exported with example shape \(2, 3\)"),
    ],
)
def test_inputs_of_another_shape(exported, name, shape, hint):
    model, path = exported(name)
    with pytest.raises(ValueError, match="^inputs must have shape .*" + hint):
        validate(model, path, torch.rand(shape), providers=CPU)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (torch.rand(20, 2, 3, dtype=torch.float64), ValueError, "inputs must have the graph's"),
        (torch.rand(0, 2, 3), ValueError, "at least one time step"),
        ([[0.0, 1.0, 2.0]], TypeError, "inputs must be a torch.Tensor"),
    ],
)
def test_inputs_of_another_kind(exported, inputs, error, message):
    model, path = exported("lif_refrac")
    with pytest.raises(error, match=message):
        validate(model, path, inputs, providers=CPU)


def test_numpy_inputs_are_accepted(exported):
    model, path = exported("lif_refrac")
    xs = np.random.default_rng(0).random((10, 2, 3), dtype=np.float32) * 3
    assert validate(model, path, xs, providers=CPU).steps == 10


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), r"steps must be None or an int in 1\.\.65536 .* got 0"),
        (dict(steps=12, inputs=torch.rand(10, 2, 3)), "steps=12 but inputs has 10"),
        (dict(rtol=-1.0), "rtol must be a finite number"),
        (dict(numerical_margin=float("nan")), "numerical_margin must be"),
        (dict(target=torch.zeros(3)), "inference graph has no loss"),
    ],
)
def test_bad_arguments(exported, kwargs, message):
    model, path = exported("lif_refrac")
    with pytest.raises(ValueError, match=message):
        validate(model, path, providers=CPU, **kwargs)


def test_missing_file_names_the_path(exported, tmp_path):
    model, _ = exported("lif_refrac")
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        validate(model, missing, providers=CPU)
    with pytest.raises(ValueError, match="is a folder"):
        validate(model, tmp_path, providers=CPU)


@pytest.mark.parametrize("content", [b"this is not a model\n", b"\x00\xff\x10garbage", b""])
def test_a_file_that_is_not_onnx(exported, tmp_path, content):
    model, _ = exported("lif_refrac")
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + "' is not an ONNX model"):
        validate(model, path, providers=CPU)


def test_an_onnx_model_without_lifexport_metadata(exported, tmp_path):
    model, _ = exported("lif_refrac")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "B", 3])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(ValueError, match="has no lifexport metadata .*lifexport.to_onnx"):
        validate(model, path, providers=CPU)


def test_a_model_that_does_not_fit_the_graph(exported):
    _, path = exported("lif_refrac")
    with pytest.raises(ValueError, match=r"the model's states \['state.0.z'.* are not the graph's"):
        validate(lifexport.LIFRefracRecurrent(3, 3), path, providers=CPU)
    with pytest.raises(ValueError, match="^model: "):
        validate(torch.nn.Linear(3, 3), path, providers=CPU)
    with pytest.raises(TypeError, match="model must be the torch.nn.Module"):
        validate("model.pt", path, providers=CPU)


def test_a_training_graph_parameter_the_model_lacks(exported):
    _, path = exported("training")
    other = lifexport.SequentialState(torch.nn.Identity(), lifexport.LIFRefrac())
    with pytest.raises(ValueError, match=r"takes parameters \['0.weight', '0.bias'\]"):
        validate(other, path, providers=CPU)


def test_a_target_graph_needs_target_and_loss(with_target):
    net, path, _ = with_target
    with pytest.raises(ValueError, match="takes a 'target' input: pass target= and the loss="):
        validate(net, path, providers=CPU)
    with pytest.raises(ValueError, match="takes a 'target' input"):
        validate(net, path, providers=CPU, target=torch.rand(2, 4))
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        validate(net, path, providers=CPU, target=[1.0], loss=lambda y, t: y.sum())


def test_a_huge_example_shape_is_refused_before_any_drive_is_built(exported, tmp_path):
    """The file's example shape sets the synthesized drive's B: (200, 10**6, 3) would be 2.4 GB."""
    model, path = exported("lif_refrac")
    huge = edited(path, tmp_path / "huge.onnx", {"lifexport.example_shape": "[10, 1000000, 3]"})
    assert lifexport.read_graph(huge).contract.batch == 10**6  # a shape the graph can take
    with pytest.raises(
        ValueError,
        match=r"^the drive of 200 steps, its B and features from metadata "
        r"lifexport.example_shape \[10, 1000000, 3\], of shape \(200, 1000000, 3\) has "
        r"600000000 elements, over the limit of 268435456 \(lifexport.limits.LIMITS.max_elements",
    ):
        validate(model, huge, providers=CPU)
    assert validate(model, huge, torch.rand(3, 2, 3), providers=CPU).passed  # a drive given


def test_time_steps_over_the_limit_are_refused(exported, monkeypatch):
    model, path = exported("lif_refrac")
    with pytest.raises(ValueError, match=r"steps must be None or an int in 1\.\.65536 .*got 65537"):
        validate(model, path, steps=2**16 + 1, providers=CPU)
    monkeypatch.setattr(LIMITS, "max_steps", 10)
    with pytest.raises(ValueError, match="inputs has 11 time steps, over the limit of 10"):
        validate(model, path, torch.rand(11, 2, 3), providers=CPU)
    assert validate(model, path, torch.rand(10, 2, 3), providers=CPU).steps == 10


def test_a_model_of_another_input_size_is_named_with_the_files_input(exported):
    _, path = exported("stack_step")
    other = lifexport.SequentialState(torch.nn.Linear(5, 4), lifexport.LIFRefracCell())
    with pytest.raises(
        ValueError,
        match=r"^model \(SequentialState\) does not take this file's input: the graph's x is "
        r"\(B, 3\) \(metadata lifexport.example_shape \[2, 3\]\), and one step of shape "
        r"\(2, 3\) raised .*validate the model that was exported$",
    ):
        validate(other, path, providers=CPU)
    _, path = exported("lif_refrac")
    with pytest.raises(ValueError, match=r"^model \(LIFRefracRecurrent\) does not take"):
        validate(lifexport.LIFRefracRecurrent(5, 3), path, providers=CPU)


def test_a_float_file_cannot_claim_the_int8_tolerance(exported, tmp_path):
    """A weight changed by 1e-2 fails strict validation; claiming int8 in the metadata (which
    would judge it on a flip budget) does not get it through: the file is refused."""
    model, path = exported("stack_sequence")
    changed = edited(
        path, tmp_path / "changed.onnx", edit=shift_initializer("model.0.weight", 1e-2)
    )
    report = validate(model, changed, steps=50, providers=CPU)
    cpu = report.providers[CPU]
    assert not report.passed and report.precision == "strict"
    assert 1e-3 < cpu.max_abs["next_state.1.i"] < 1e-1
    claim = {"lifexport.quantize": "int8 QDQ: per-channel weights"}
    claiming = edited(changed, tmp_path / "claiming.onnx", claim)
    with pytest.raises(
        ValueError, match=r"lifexport.quantize claims int8 weights .* float weights model.0.weight"
    ):
        validate(model, claiming, steps=50, providers=CPU)


def test_onnx_path_and_report_of_another_type(exported):
    model, path = exported("lif_refrac")
    with pytest.raises(TypeError, match="^onnx_path must be a str or os.PathLike .*got bytes"):
        validate(model, str(path).encode(), providers=CPU)
    with pytest.raises(TypeError, match=r"^report must be a ValidationReport .*got str"):
        assert_valid("report")
