"""Helpers shared by the export tests: running a model in onnxruntime."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import onnx
import pytest

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@pytest.fixture
def ort_session() -> Callable[[onnx.ModelProto | str | os.PathLike], Run]:
    """``ort_session(model or path)(feeds) -> {output name: array}``, on onnxruntime's CPU
    provider, intra-op threads not spinning (they would compete with torch for few cores)."""
    import onnxruntime as ort

    def session(model: onnx.ModelProto | str | os.PathLike) -> Run:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        sess = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return lambda feeds: dict(zip(names, sess.run(names, feeds)))

    return session
