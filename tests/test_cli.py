"""The ``lifexport`` command: help, exit codes, ``--json``, one-line errors, the demo pipeline.

Commands run in a subprocess (as a user runs them) where the exit code and the absence of a
traceback matter, and in-process where only the result does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lifexport.cli import EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, main

REPO = Path(__file__).resolve().parents[1]
SPEC = "models.digits:trained_model"
SHAPE = "32,1,64"


def lifexport(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lifexport.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_usage_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_help_lists_every_command():
    result = lifexport("--help")
    assert result.returncode == EXIT_OK
    for command in ("demo", "export", "validate", "bench"):
        assert command in result.stdout
    assert "exit codes: 0 ok, 1 validation mismatch, 2 usage error" in result.stdout


@pytest.mark.parametrize("argv", [[], ["nope"], ["export", SPEC, "x.onnx", "--shape", "0,1"]])
def test_argument_errors_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The shipped digits network as a sequence graph, written by `lifexport export --json`."""
    path = tmp_path_factory.mktemp("cli") / "digits.onnx"
    result = lifexport("export", SPEC, str(path), "--shape", SHAPE, "--no-state", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(path) and data["inputs"] == ["x"] and data["outputs"] == ["y"]
    return path


def test_validate_passes_with_json_report(exported):
    result = lifexport("validate", str(exported), "--steps", "40", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    report = json.loads(result.stdout)
    cpu = report["providers"]["CPUExecutionProvider"]
    assert cpu["passed"] and cpu["spikes_equal"]
    assert (
        "CUDAExecutionProvider" in report["unavailable"]
        or "CUDAExecutionProvider" in report["providers"]
    )


def test_validate_against_another_model_exits_with_code_1(exported):
    result = lifexport(
        "validate", str(exported), "--model", "tests.cli_models:perturbed_digits", "--steps", "40"
    )
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr


def test_validate_missing_file(tmp_path):
    result = lifexport("validate", str(tmp_path / "missing.onnx"))
    assert_one_line_usage_error(result, "does not exist", "missing.onnx")


def test_validate_not_an_onnx_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    assert_one_line_usage_error(lifexport("validate", str(path)), "not an ONNX model")


def test_validate_wrong_input_shape(exported, tmp_path):
    import torch

    drive = tmp_path / "drive.pt"
    torch.save(torch.zeros(10, 1, 63), drive)  # 63 features: the model takes 64
    result = lifexport("validate", str(exported), "--input", str(drive))
    assert_one_line_usage_error(result, "inputs")


def test_export_bad_model_spec(tmp_path):
    result = lifexport("export", "models.digits:nope", str(tmp_path / "a.onnx"), "--shape", SHAPE)
    assert_one_line_usage_error(result, "cannot load model spec")


def test_export_into_missing_folder(tmp_path):
    out = tmp_path / "missing" / "a.onnx"
    result = lifexport("export", SPEC, str(out), "--shape", SHAPE)
    assert_one_line_usage_error(result, "does not exist")


def test_demo_end_to_end_on_a_tiny_budget(tmp_path):
    """Train from scratch for one epoch, export, validate, compare predictions, time, draw."""
    result = lifexport("demo", "--train", "--epochs", "1", "--out", str(tmp_path), "--json")
    assert result.returncode == EXIT_OK, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["same_predictions"] is True
    assert data["onnxruntime_accuracy"] == data["torch_accuracy"] > 0.3  # 10 classes: chance 0.1
    assert data["validation_passed"] is True
    for path in data["files"].values():
        assert Path(path).stat().st_size > 0
    assert Path(data["raster"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(data["speed_ms"]) == {"torch eager", "torch compiled", "onnxruntime sequence"}
