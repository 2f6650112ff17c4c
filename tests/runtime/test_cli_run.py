"""``lifexport run``: a file on a numpy input, held to eager torch; bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lifexport.cli import EXIT_OK, EXIT_USAGE, main


def _eager(model, xs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(xs))[0].numpy()


@pytest.mark.parametrize("kind", [0, 1], ids=["step", "sequence"])
def test_run_writes_what_eager_torch_computes(model, files, xs, tmp_path, capsys, kind) -> None:
    x, y = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(x, xs)
    assert main(["run", str(files[kind]), "--input", str(x), "--out", str(y), "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["shape"] == [*xs.shape[:2], 5] and report["graph"] == ("step", "sequence")[kind]
    assert report["providers"] == ["CPUExecutionProvider"]
    np.testing.assert_allclose(np.load(y), _eager(model, xs), rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]  # no temporary


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lifexport run: error: ")
    return err


def test_bad_inputs_are_one_line_and_exit_2(files, xs, tmp_path, capsys) -> None:
    out = str(tmp_path / "y.npy")
    step = str(files[0])
    x = tmp_path / "x.npy"
    np.save(x, xs.astype(np.float64))
    assert "x must have dtype float32" in _error(
        ["run", step, "--input", str(x), "--out", out], capsys
    )
    np.save(x, xs[0])
    assert "add a time axis" in _error(["run", step, "--input", str(x), "--out", out], capsys)
    missing = str(tmp_path / "none.npy")
    assert "cannot read --input" in _error(["run", step, "--input", missing, "--out", out], capsys)
    np.savez(tmp_path / "a.npz", x=xs)
    archive = str(tmp_path / "a.npz")
    assert ".npz archive" in _error(["run", step, "--input", archive, "--out", out], capsys)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    pickled = str(tmp_path / "o.npy")
    assert "cannot read --input" in _error(["run", step, "--input", pickled, "--out", out], capsys)
    text = tmp_path / "model.onnx"
    text.write_text("not a model")
    np.save(x, xs)
    assert "onnxruntime cannot load" in _error(
        ["run", str(text), "--input", str(x), "--out", out], capsys
    )
    nowhere = str(tmp_path / "no" / "y.npy")
    assert "does not exist" in _error(["run", step, "--input", str(x), "--out", nowhere], capsys)
    assert not (tmp_path / "y.npy").exists()


def test_an_unknown_provider_names_the_available_ones(files, xs, tmp_path, capsys) -> None:
    x = tmp_path / "x.npy"
    np.save(x, xs)
    argv = ["run", str(files[0]), "--input", str(x), "--out", str(tmp_path / "y.npy")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--providers", "NoSuchExecutionProvider"])
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "unknown onnxruntime execution provider" in err and "CPUExecutionProvider" in err
