"""Helpers shared by the export tests: running a model in onnxruntime."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@pytest.fixture
def ort_session() -> Callable[[onnx.ModelProto], Run]:
    """``ort_session(model)(feeds) -> {output name: array}``, on onnxruntime's CPU provider."""
    import onnxruntime as ort

    def session(model: onnx.ModelProto) -> Run:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return lambda feeds: dict(zip(names, sess.run(names, feeds)))

    return session
