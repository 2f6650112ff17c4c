"""The comparison core on synthetic values: first-mismatch order, margins, classification."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lifexport.errors import ValidationError
from lifexport.validation import (
    Mismatch,
    ProviderReport,
    ValidationReport,
    assert_valid,
    default_tolerances,
)
from lifexport.validation._compare import differences, first_mismatch, margin_at, summarize

T, B, N = 4, 2, 3
TOL = dict(rtol=1e-4, atol=1e-5, numerical_margin=1e-5)


def run(torch_values, onnx_values, stepped=None, membrane=None, spikes=("y",), owners=None):
    return first_mismatch(
        torch_values,
        onnx_values,
        stepped=set(torch_values) if stepped is None else stepped,
        spike_names=set(spikes),
        owners={"y": 3, "next_state.1.v": 1, "next_state.3.v": 3} if owners is None else owners,
        membrane={} if membrane is None else membrane,
        kinds={name: KINDS[name.partition(".")[0]] for name in torch_values},
        **TOL,
    )


#: What each output holds, by its name's first part (as GraphContract.output_kind says).
KINDS = {"y": "y", "next_state": "state", "grad": "gradient", "loss": "loss"}


def spikes_and_states() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "y": (rng.random((T, B, N)) > 0.5).astype(np.float32),
        "next_state.1.v": rng.random((T, B, N)).astype(np.float32),
        "next_state.3.v": rng.random((T, B, N)).astype(np.float32),
    }


def test_equal_values_have_no_mismatch():
    values = spikes_and_states()
    assert run(values, {k: v.copy() for k, v in values.items()}) is None


def test_state_within_tolerance_is_no_mismatch():
    values = spikes_and_states()
    onnx = {k: v.copy() for k, v in values.items()}
    onnx["next_state.1.v"] += 1e-6
    assert run(values, onnx) is None


@pytest.mark.parametrize("margin, numerical", [(3e-8, True), (1e-5, True), (0.2, False)])
def test_a_flip_is_numerical_when_torch_v_sat_within_the_margin(margin, numerical):
    values = spikes_and_states()
    onnx = {k: v.copy() for k, v in values.items()}
    onnx["y"][2, 1, 0] = 1 - onnx["y"][2, 1, 0]
    membrane = np.full((T, B, N), 0.5)
    membrane[2, 1, 0] = -margin  # signed v - v_th; the margin is its magnitude
    found = run(values, onnx, membrane={3: membrane})
    assert found == Mismatch(
        "y", 2, 3, (1, 0), values["y"][2, 1, 0], onnx["y"][2, 1, 0], margin, numerical, "spike"
    )


def test_earliest_step_wins_then_lowest_layer_then_spikes():
    values = spikes_and_states()
    onnx = {k: v.copy() for k, v in values.items()}
    onnx["y"][1, 0, 0] = 1 - onnx["y"][1, 0, 0]  # layer 3, step 1
    onnx["next_state.3.v"][1, 0, 0] += 1.0  # layer 3, step 1: the spike comes first
    onnx["next_state.1.v"][2, 0, 1] += 1.0  # layer 1, but a later step
    assert run(values, onnx).name == "y"
    onnx["next_state.1.v"][1, 1, 2] += 1.0  # layer 1 at step 1: the flip below causes y's
    found = run(values, onnx)
    assert (found.name, found.step, found.layer, found.index, found.kind) == (
        "next_state.1.v",
        1,
        1,
        (1, 2),
        "value",
    )
    assert found.margin is None and not found.numerical  # no record for layer 1


def test_final_values_come_after_every_step_and_take_the_smallest_margin():
    values = {"y": np.zeros((T, B, N)), "next_state.3.v": np.zeros((B, N)), "loss": np.array(2.0)}
    onnx = {k: v.copy() for k, v in values.items()}
    onnx["next_state.3.v"][1, 1] = 0.5
    onnx["loss"] = np.array(3.0)
    membrane = np.full((T, B, N), 0.5)
    membrane[2, 1, 1] = 2e-7
    found = run(values, onnx, stepped={"y"}, membrane={3: membrane})
    assert (found.name, found.step, found.index, found.margin) == (
        "next_state.3.v",
        None,
        (1, 1),
        2e-7,
    )
    assert found.numerical
    onnx["y"][3, 0, 0] = 1.0
    assert run(values, onnx, stepped={"y"}, membrane={3: membrane}).name == "y"


def test_a_loss_or_gradient_mismatch_is_never_numerical():
    values = {"loss": np.array(1.0), "grad.0.weight": np.ones((N, 4))}
    onnx = {"loss": np.array(1.0), "grad.0.weight": np.ones((N, 4)) * 1.01}
    found = run(values, onnx, stepped=set(), owners={})
    assert (found.name, found.index, found.margin, found.numerical) == (
        "grad.0.weight",
        (0, 0),
        None,
        False,
    )


def test_shapes_that_differ_are_a_mismatch_first():
    values = spikes_and_states()
    onnx = {**values, "next_state.3.v": values["next_state.3.v"][:, :1]}
    found = run(values, onnx)
    assert (found.name, found.kind, found.numerical) == ("next_state.3.v", "shape", False)


@pytest.mark.parametrize(
    "record, step, index, expected",
    [
        (None, 0, (0, 0), None),
        (np.array([[[-0.25, 0.5]], [[0.125, -1e-7]]]), 1, (0, 1), 1e-7),
        (np.array([[[-0.25, 0.5]], [[0.125, -1e-7]]]), None, (0, 0), 0.125),
        (np.zeros((2, 1, 2)), 5, (0, 0), None),  # beyond the record
        (np.zeros((2, 1, 2)), 0, (0, 0, 0), None),  # another shape
    ],
)
def test_margin_at(record, step, index, expected):
    assert margin_at(record, step, index) == expected


def test_differences_and_summary():
    a = np.array([1.0, 0.0, np.nan, 4.0])
    b = np.array([1.5, 1e-3, np.nan, 4.0])
    assert differences(a, b) == (0.5, 0.5)  # relative only where torch is not 0
    assert differences(a, b[:2]) == (math.inf, math.inf)
    assert differences(np.array([1.0]), np.array([np.nan])) == (math.inf, math.inf)
    y = np.array([[0.0, 1.0], [1.0, 1.0]])
    max_abs, max_rel, flips, failed = summarize(
        {"y": y, "v": a}, {"y": 1 - y, "v": a}, ["y", "v"], {"y"}, 1e-4, 1e-5
    )
    assert (max_abs, flips, failed) == ({"y": 1.0, "v": 0.0}, 4, ("y",))


def report(mismatch: Mismatch | None, providers=True) -> ValidationReport:
    cpu = ProviderReport(
        "CPUExecutionProvider",
        spikes_equal=mismatch is None,
        first_mismatch=mismatch,
        max_abs={"y": 1.0 if mismatch else 0.0, "next_state.0.v": math.nan},
    )
    return ValidationReport(
        path="m.onnx",
        graph="step",
        mode="inference",
        steps=T,
        batch=B,
        providers={"CPUExecutionProvider": cpu} if providers else {},
        unavailable={"CUDAExecutionProvider": "not here"},
        spikes={"y": 3},
        rtol=1e-4,
        atol=1e-5,
        numerical_margin=1e-5,
    )


@pytest.mark.parametrize("numerical", [True, False])
def test_assert_valid_raises_only_on_a_real_mismatch(numerical):
    flip = Mismatch("y", 7, 0, (1, 2), 1.0, 0.0, 1e-7 if numerical else 0.3, numerical)
    result = report(flip)
    assert result.passed is numerical
    text = result.format()
    assert "first mismatch: y[1, 2] at step 7, layer 0" in text
    assert ("numerical" in text) is numerical
    assert "CUDAExecutionProvider: unavailable: not here" in text
    json.dumps(result.to_dict(), allow_nan=False)  # strict JSON: NaN written as "nan"
    if numerical:
        assert_valid(result)
        result.assert_valid()
    else:
        with pytest.raises(ValidationError, match=r"y\[1, 2\] at step 7"):
            assert_valid(result)


def test_assert_valid_raises_when_no_provider_ran():
    result = report(None, providers=False)
    assert not result.passed
    with pytest.raises(
        ValidationError, match="none of the requested.*CUDAExecutionProvider: not here"
    ):
        assert_valid(result)
    assert_valid(report(None))


def test_a_run_that_failed_is_not_passed():
    failed = ProviderReport("CUDAExecutionProvider", False, None, error="no kernel for Scan")
    assert not failed.passed
    assert failed.format() == "CUDAExecutionProvider: FAILED to run: no kernel for Scan"
    assert failed.to_dict()["error"] == "no kernel for Scan"


def test_default_tolerances_follow_the_dtype():
    """float32's, in as many ulps of coarser types; finer types keep float32's (the exporter
    writes Python float constants in float32, see test_exporter_quirks.py)."""
    f32 = (1e-4, 1e-5, 1e-5)
    assert default_tolerances(torch.float32) == f32
    assert default_tolerances(torch.float64) == f32
    assert default_tolerances(torch.float16) == tuple(t * 2**13 for t in f32)
    assert default_tolerances(torch.bfloat16) == tuple(t * 2**16 for t in f32)
