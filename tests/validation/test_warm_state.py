"""validate() drives a graph with state inputs from a warm state too: right only from rest is
not right. The warm state is the one torch reaches over a seeded warm-up drive."""

from __future__ import annotations

import json

import pytest
import torch

import lifexport
from lifexport.errors import ValidationError
from lifexport.validation import assert_valid, validate
from tests.graph.tamper import edited, swap_inputs

CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def swapped(exported, tmp_path_factory):
    """The Linear -> LIF-refrac sequence graph with ``state.1.v`` and ``state.1.i`` swapped
    inside the graph: equal at rest (both 0), wrong from any other state."""
    model, path = exported("stack_sequence")
    folder = tmp_path_factory.mktemp("swapped")
    return model, edited(path, folder / "swapped.onnx", edit=swap_inputs("state.1.v", "state.1.i"))


def test_a_graph_right_only_from_rest_fails_from_a_warm_state(exported, swapped):
    model, path = swapped
    report = validate(model, path, steps=60, providers=[CPU])
    cpu = report.providers[CPU]
    # from rest, the swap changes nothing: every value as the intact graph's (which may
    # differ from torch's in the last bit, by the CPU's rounding)
    intact = validate(model, exported("stack_sequence")[1], steps=60, providers=[CPU])
    assert cpu.first_mismatch is None and cpu.spikes_equal
    assert cpu.max_abs == intact.providers[CPU].max_abs and cpu.max_abs["y"] == 0
    # from the warm state v and i differ: a real mismatch, a local error from the first step
    warm = cpu.warm
    assert (warm.drive, warm.steps) == ("warm", 20)
    assert warm.first_mismatch is not None and not warm.first_mismatch.numerical
    assert warm.max_abs["y"] == 1 and warm.flips > 0
    assert (warm.diagnosis.verdict, warm.diagnosis.step) == ("graph bug", 0)
    assert warm.diagnosis.local.name == "next_state.1.v"  # v took i's place
    assert warm.diagnosis.local_max_abs["next_state.1.v"] > 1e-2
    assert cpu.failed_drives == ("warm",) and not cpu.passed and not report.passed
    assert "FAILED from a warm state" in report.format().splitlines()[3]
    assert json.loads(json.dumps(report.to_dict()))["providers"][CPU]["failed_drives"] == ["warm"]
    with pytest.raises(ValidationError, match=f"^onnxruntime disagrees with torch \\({CPU} from a"):
        assert_valid(report)


def test_an_intact_graph_passes_from_rest_and_from_a_warm_state(exported):
    model, path = exported("stack_sequence")
    xs = torch.rand(7, 3, 3, generator=torch.Generator().manual_seed(0)) * 3
    report = validate(model, path, xs, providers=[CPU])
    cpu = report.providers[CPU]
    assert cpu.warm.steps == 7  # the drive's T, when below 20
    assert cpu.passed and cpu.warm.passed and cpu.failed_drives == ()
    assert all(value < 1e-5 for value in cpu.warm.max_abs.values())
    assert report.format().splitlines()[5].startswith("  from a warm state (7 steps): passed")
    assert_valid(report)


def test_a_step_graph_is_driven_from_a_warm_state_too(exported, tmp_path):
    model, path = exported("stack_step")
    assert validate(model, path, steps=30, providers=[CPU]).providers[CPU].warm.passed
    swapped = edited(path, tmp_path / "swapped.onnx", edit=swap_inputs("state.1.v", "state.1.i"))
    cpu = validate(model, swapped, steps=30, providers=[CPU]).providers[CPU]
    assert cpu.failed_drives == ("rest", "warm")  # its own state feeds back from the first step


def test_a_graph_without_state_inputs_runs_from_rest_only(tmp_path, nets):
    layer = nets.lif_refrac()
    path = tmp_path / "stateless.onnx"
    lifexport.to_onnx(layer, torch.rand(5, nets.B, nets.FEATURES), path, with_state=False)
    report = validate(layer, path, steps=30, providers=[CPU])
    assert report.passed and report.providers[CPU].warm is None
    assert report.providers[CPU].to_dict()["warm"] is None
