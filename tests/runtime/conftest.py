"""A LIF-refrac, LIF and LI stack with non-zero leak potentials, exported as a step and a
sequence graph, and a drive that makes it spike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lifexport
from tests.runtime.stack import B, F, T, stack_model


@pytest.fixture(scope="module")
def model() -> lifexport.SequentialState:
    return stack_model()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    step = lifexport.to_onnx(model, torch.rand(B, F), folder / "step.onnx", graph="step")
    sequence = lifexport.to_onnx(model, torch.rand(T, B, F), folder / "seq.onnx")
    return step.path, sequence.path


@pytest.fixture(scope="module")
def xs() -> np.ndarray:
    return (np.random.default_rng(1).random((T, B, F), np.float32) * 2.0).astype(np.float32)
