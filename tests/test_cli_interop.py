"""`lifexport nir export|import`, `lifexport export --quantize int8` and `validate --precision`."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lifexport.cli import EXIT_OK, main
from lifexport.graph import read_graph
from tests.cli_models import small_lif_stack
from tests.test_cli import usage_error

STACK = "tests.cli_models:small_lif_stack"


def test_a_model_goes_through_a_nir_file_into_onnx(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    nir_file, onnx_file = tmp_path / "net.nir", tmp_path / "net.onnx"
    assert main(["nir", "export", STACK, str(nir_file), "--json"]) == EXIT_OK
    written = json.loads(capsys.readouterr().out)
    assert sorted(written["nodes"].values()).count("CubaLIF") == 1
    assert main(["nir", "import", str(nir_file), str(onnx_file), "--shape", "5,2,6"]) == EXIT_OK
    assert "LIF" in capsys.readouterr().out
    # lifexport's own NIR round trip is exact: the ONNX graph computes the original model.
    model = small_lif_stack()
    xs = torch.rand(40, 3, 6) * 2
    with torch.no_grad():
        expected = model(xs)[0].numpy()
    info = read_graph(onnx_file)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    rest = {n: np.zeros((3, 8 if n.startswith("state.1") else 3), np.float32) for n in info.state_names}
    (y,) = session.run(["y"], {"x": xs.numpy(), **rest})
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_export_int8_then_validate_judges_it_on_a_flip_budget(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    calibration = tmp_path / "calibration.pt"
    torch.save(torch.rand(20, 4, 6) * 2, calibration)
    out = tmp_path / "int8.onnx"
    argv = ["export", STACK, str(out), "--shape", "5,2,6", "--quantize", "int8"]
    assert main([*argv, "--calibration", str(calibration)]) == EXIT_OK
    assert "int8 QDQ" in capsys.readouterr().out
    assert read_graph(out).contract.quantize.startswith("int8 QDQ")
    code = main(["validate", str(out), "--model", STACK, "--steps", "50", "--json",
                 "--providers", "CPUExecutionProvider"])
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "deployment"
    assert report["providers"]["CPUExecutionProvider"]["flip_budget"] == 0.01
    assert code == (EXIT_OK if report["passed"] else 1)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["export", STACK, "o.onnx", "--shape", "5,2,6", "--quantize", "int8"], ["go together"]),
        (["validate", "missing.onnx", "--flip-budget", "2"], ["--flip-budget", "[0, 1]"]),
        (["nir", "import", "missing.nir", "o.onnx", "--shape", "5,2,6"], ["does not exist"]),
        (["nir", "export", STACK, "o.nir", "--dt", "0"], ["--dt", "positive"]),
    ],
)
def test_bad_interop_arguments_are_one_line_usage_errors(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    usage_error(argv, capsys, *words)
