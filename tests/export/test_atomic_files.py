"""Files are replaced whole: a reader never sees half a model."""

from __future__ import annotations

import os
import stat

import pytest

from lifexport.export import atomic_write


def test_writes_and_replaces(tmp_path):
    path = tmp_path / "model.onnx"
    assert atomic_write(path, b"old") == path
    atomic_write(str(path), b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.onnx"
    atomic_write(path, b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_permissions_follow_the_umask(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "model.onnx", b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
