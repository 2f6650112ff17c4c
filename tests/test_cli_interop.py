"""`lifexport nir export|import`, `lifexport export --quantize int8` and `validate --precision`."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lifexport.cli import EXIT_OK, main
from lifexport.graph import read_graph
from tests.cli_models import small_lif_stack
from tests.nets import altered_nir
from tests.test_cli import usage_error

STACK = "tests.cli_models:small_lif_stack"
REPO = Path(__file__).resolve().parents[1]


def test_a_model_goes_through_a_nir_file_into_onnx(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
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
    rest = {
        n: np.zeros((3, 8 if n.startswith("state.1") else 3), np.float32) for n in info.state_names
    }
    (y,) = session.run(["y"], {"x": xs.numpy(), **rest})
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-7)


def test_export_int8_then_validate_judges_it_on_a_flip_budget(
    tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(REPO)
    calibration = tmp_path / "calibration.pt"
    torch.save(torch.rand(20, 4, 6) * 2, calibration)
    out = tmp_path / "int8.onnx"
    argv = ["export", STACK, str(out), "--shape", "5,2,6", "--quantize", "int8"]
    assert main([*argv, "--calibration", str(calibration)]) == EXIT_OK
    assert "int8 QDQ" in capsys.readouterr().out
    assert read_graph(out).contract.quantize.startswith("int8 QDQ")
    check = ["validate", str(out), "--model", STACK, "--steps", "50", "--json"]
    code = main([*check, "--providers", "CPUExecutionProvider"])
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
def test_bad_interop_arguments_are_one_line_usage_errors(
    argv, words, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    usage_error(argv, capsys, *words)


# -- files are data: bounded work, one line, exit 2 -----------------------------------------


@pytest.fixture(scope="module")
def stack_nir(tmp_path_factory) -> Path:
    """small_lif_stack as a NIR file: Affine '0' (6 -> 8), CubaLIF '1', Affine '2', CubaLI '3'."""
    import nir

    from lifexport.nir import to_nir

    path = tmp_path_factory.mktemp("nir") / "stack.nir"
    nir.write(path, to_nir(small_lif_stack()))
    return path


def test_nir_import_of_a_huge_compressed_dataset_stops_before_reading_it(
    stack_nir, tmp_path, capsys
) -> None:
    huge = dict(shape=(10**9,), dtype="f8", compression="gzip", chunks=(2**20,))
    path = altered_nir(stack_nir, tmp_path, "nodes/1/tau_mem", **huge)
    assert path.stat().st_size < 200_000  # 8 GB declared
    out = tmp_path / "o.onnx"
    usage_error(
        ["nir", "import", str(path), str(out), "--shape", "5,2,6"],
        capsys,
        f"lifexport nir import: error: nir file '{path}': dataset '/node/nodes/1/tau_mem' of "
        "shape (1000000000,) has 1000000000 elements, over the limit of",
    )
    assert not out.exists()


def test_nir_import_names_the_node_and_key_of_a_value_that_is_not_a_number(
    stack_nir, tmp_path, capsys
) -> None:
    import h5py

    key = "nodes/1/metadata/lifexport.alpha"
    path = altered_nir(stack_nir, tmp_path, key, data="wide", dtype=h5py.string_dtype())
    usage_error(
        ["nir", "import", str(path), str(tmp_path / "o.onnx"), "--shape", "5,2,6"],
        capsys,
        "node '1' (CubaLIF): metadata 'lifexport.alpha' must be a number or an array of "
        "numbers, got str 'wide'",
    )


@pytest.mark.parametrize(
    "shape, words",
    [
        (
            "5,2,7",
            "layer 0 (Linear) takes 6 input features (last dimension), got 7: the input "
            "has shape (5, 2, 7)",
        ),
        # 2.4e8 inputs pass; the first layer's 3.2e8 outputs do not (computed on meta tensors)
        (
            "10000,4000,6",
            "--shape 10000,4000,6: layer 0 (Linear)'s output of shape "
            "(10000, 4000, 8) has 320000000 elements, over the limit",
        ),
    ],
)
def test_nir_import_checks_each_layer_against_the_shape(stack_nir, tmp_path, capsys, shape, words):
    argv = ["nir", "import", str(stack_nir), str(tmp_path / "o.onnx"), "--shape", shape]
    usage_error(argv, capsys, words)


def test_export_calibration_of_another_shape(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    calibration = tmp_path / "calibration.pt"
    torch.save(torch.zeros(3, 2, 5), calibration)
    argv = ["export", STACK, str(tmp_path / "q.onnx"), "--shape", "5,2,6", "--quantize", "int8"]
    usage_error(
        [*argv, "--calibration", str(calibration)],
        capsys,
        "--calibration holds a tensor of shape (3, 2, 5); expected (T, B, 6), as --shape 5,2,6 "
        "(T and B may differ)",
    )
    # A saved view can declare any size over a tiny storage: bounded like --shape.
    torch.save(torch.zeros(1, 1, 6).expand(10**9, 1, 6), calibration)
    assert calibration.stat().st_size < 10_000
    usage_error(
        [*argv, "--calibration", str(calibration)],
        capsys,
        f"--calibration '{calibration}': a tensor of shape (1000000000, 1, 6) has 6000000000 "
        "elements, over the limit",
    )


def _write_argv(kind: str, target: Path, stack_nir: Path) -> list[str]:
    if kind == "export":
        return ["export", STACK, str(target), "--shape", "5,2,6"]
    if kind == "nir export":
        return ["nir", "export", STACK, str(target)]
    return ["nir", "import", str(stack_nir), str(target), "--shape", "5,2,6"]


WRITERS = ["export", "nir export", "nir import"]


@pytest.mark.parametrize("kind", WRITERS)
def test_output_under_a_regular_file_is_one_line(kind, stack_nir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    notes = tmp_path / "file.txt"
    notes.write_text("mine")
    target = notes / "out.onnx"
    usage_error(
        _write_argv(kind, target, stack_nir),
        capsys,
        f"output '{target}': its folder '{notes}' is a file, not a folder",
    )
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("kind", WRITERS)
def test_an_unwritable_folder_names_the_target_not_the_temporary_file(
    kind, stack_nir, tmp_path, capsys, monkeypatch
) -> None:
    # Tests run as root, where a folder's mode does not stop writes: the folder refuses
    # every new file here as a read-only one would (each command writes a temporary file
    # beside the target, then renames it).
    monkeypatch.chdir(REPO)
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_open = os.open

    def refusing_open(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    target = folder / "out.onnx"
    line = usage_error(
        _write_argv(kind, target, stack_nir),
        capsys,
        f"error: cannot write output '{target}': Permission denied",
    )
    assert ".tmp" not in line and line.endswith("Permission denied")
    assert list(folder.iterdir()) == []
