"""read_graph treats a file as data: every metadata value is checked, and the contract is held to
what the graph itself shows; each error names the metadata key or the input."""

from __future__ import annotations

import re

import onnx
import pytest
import torch

import lifexport
from lifexport.graph import read_graph, weight_types
from tests.graph.tamper import edited


def network() -> lifexport.SequentialState:
    torch.manual_seed(0)
    return lifexport.SequentialState(torch.nn.Linear(3, 4), lifexport.LIFRefrac())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, lifexport.GraphFile]:
    """One sequence, one step and one int8 sequence file of the same small network."""
    folder = tmp_path_factory.mktemp("checks")
    net, xs = network(), torch.rand(5, 2, 3)
    return {
        "sequence": lifexport.to_onnx(net, xs, folder / "sequence.onnx"),
        "step": lifexport.to_onnx(net, xs[0], folder / "step.onnx", graph="step"),
        "int8": lifexport.to_onnx(
            net, xs, folder / "int8.onnx", quantize="int8", calibration=xs * 3
        ),
    }


def refused(path, message: str) -> None:
    """read_graph raises one ValueError naming the file, matching ``message``."""
    with pytest.raises(ValueError, match=re.escape(f"onnx_path {str(path)!r}") + ".*" + message):
        read_graph(path)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("lifexport.state_names", "[1, 2]", "lifexport.state_names must be a JSON list of"),
        ("lifexport.state_names", '"state.1.v"', "lifexport.state_names must be a JSON list"),
        ("lifexport.state_names", '["state.1.v", "state.1.v"]', ".* list of distinct state names"),
        ("lifexport.state_names", '["state.1.v", "v"]', "lifexport.state_names: 'v' is not a"),
        ("lifexport.state_names", "[[[[" * 1000, "lifexport.state_names must be a JSON list"),
        ("lifexport.example_shape", '"abc"', "lifexport.example_shape must be a JSON list of at"),
        ("lifexport.example_shape", "[5, -2, 3]", r".* at least 2 positive ints \(\(T, B, ...\)"),
        ("lifexport.example_shape", "[5.0, 2, 3]", "lifexport.example_shape must be a JSON"),
        ("lifexport.example_shape", "[2]", "lifexport.example_shape must be a JSON"),
        (
            "lifexport.example_shape",
            "[100000, 100000, 3]",
            r"metadata lifexport.example_shape of shape \(100000, 100000, 3\) has 30000000000 "
            r"elements, over the limit of \d+ \(lifexport.limits.LIMITS.max_elements",
        ),
        ("lifexport.graph", "loop", r"lifexport.graph must be one of \('step', 'sequence'\)"),
        ("lifexport.mode", "eval", r"lifexport.mode must be one of"),
        ("lifexport.dtype", "int32", r"lifexport.dtype must be one of \('float16'"),
        ("lifexport.target_rank", '"2"', "lifexport.target_rank must be null or a non-negative"),
        ("lifexport.parameters", '["w"]', "an inference graph takes no parameters"),
        ("lifexport.layers", "5", "lifexport.layers must be a JSON list of objects"),
        ("lifexport.inputs", "{}", "lifexport.inputs must be a JSON list of names"),
        ("lifexport.quantize", "fp4", "lifexport.quantize must describe int8 weights"),
    ],
)
def test_a_bad_metadata_value_is_named_by_its_key(files, tmp_path, key, value, message):
    path = edited(files["sequence"].path, tmp_path / "bad.onnx", {key: value})
    refused(path, "has bad metadata: " + message)


def test_a_long_metadata_value_is_cut_in_the_message(files, tmp_path):
    path = edited(files["sequence"].path, tmp_path / "long.onnx", {"lifexport.mode": "x" * 10**5})
    with pytest.raises(ValueError, match="lifexport.mode must be one of") as error:
        read_graph(path)
    assert len(str(error.value)) < 400 and "\n" not in str(error.value)


def x_type(elem_type: int):
    def edit(model: onnx.ModelProto) -> None:
        model.graph.input[0].type.tensor_type.elem_type = elem_type

    return edit


@pytest.mark.parametrize(
    "elem_type, metadata, message",
    [
        (onnx.TensorProto.INT32, {}, "input x must be a float tensor .*, got INT32"),
        (onnx.TensorProto.STRING, {}, "input x must be a float tensor .*, got STRING"),
        (onnx.TensorProto.INT32, {"lifexport.dtype": "int32"}, "lifexport.dtype must be one of"),
        (onnx.TensorProto.DOUBLE, {}, "x is float64, its metadata lifexport.dtype says float32"),
    ],
)
def test_x_must_be_the_float_tensor_the_metadata_records(
    files, tmp_path, elem_type, metadata, message
):
    path = edited(files["sequence"].path, tmp_path / "x.onnx", metadata, x_type(elem_type))
    refused(path, message)


def test_a_relabelled_graph_kind_is_refused(files, tmp_path):
    as_step = edited(files["sequence"].path, tmp_path / "as_step.onnx", {"lifexport.graph": "step"})
    refused(
        as_step, "metadata lifexport.graph says 'step', but the graph holds a time loop \\(Scan\\)"
    )
    as_sequence = edited(
        files["step"].path,
        tmp_path / "as_sequence.onnx",
        {"lifexport.graph": "sequence", "lifexport.example_shape": "[5, 2, 3]"},
    )
    refused(as_sequence, "metadata lifexport.graph says 'sequence', but the graph holds no time")


@pytest.mark.parametrize("shape", ["[5, 2, 4]", "[5, 2, 3, 1]", "[5, 2]"])
def test_an_example_shape_that_is_not_the_graphs_x_is_refused(files, tmp_path, shape):
    path = edited(
        files["sequence"].path, tmp_path / "shape.onnx", {"lifexport.example_shape": shape}
    )
    refused(path, re.escape("input x has shape ['T', 'B', 3], but a sequence graph"))


def test_an_int8_claim_is_held_to_the_graphs_weights(files, tmp_path):
    """A float file claiming int8 is refused (it would be judged on the flip budget); the int8
    file to_onnx wrote holds its weights as DequantizeLinear of int8 initializers."""
    float_weights = weight_types(onnx.load(files["sequence"].path))
    assert float_weights.float == ("model.0.weight",) and float_weights.int8 == ()
    int8_weights = weight_types(onnx.load(files["int8"].path))
    assert int8_weights.int8 == ("model.0.weight_DequantizeLinear_Output",)
    assert int8_weights.float == ()
    assert read_graph(files["int8"].path).contract.quantize.startswith("int8 QDQ")

    claim = {"lifexport.quantize": files["int8"].contract.quantize}
    path = edited(files["sequence"].path, tmp_path / "claims_int8.onnx", claim)
    refused(
        path, r"metadata lifexport.quantize claims int8 weights .* float weights model.0.weight"
    )


@pytest.mark.parametrize("path", [b"model.onnx", 3, None])
def test_onnx_path_must_be_a_text_path(path):
    with pytest.raises(TypeError, match="onnx_path must be a str or os.PathLike of a text path"):
        read_graph(path)
