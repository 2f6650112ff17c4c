"""``export_program``: modes, plain functions, metadata, files and errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import lifexport.functional as lx
from lifexport.errors import ExportError
from lifexport.export import LIFEXPORT, export_program, op_types
from lifexport.functional.threshold import SURROGATES


def spike_times_three(x):
    return lx.threshold(x, "tanh", 2.0) * 3.0


def surrogate_gradient(g, x):
    return SURROGATES["circ"].spike_attr_grad(g, x, 0.5)


def test_plain_function_with_metadata_round_trips_through_a_file(tmp_path, ort_session):
    path = tmp_path / "f.onnx"
    model = export_program(
        spike_times_three,
        (torch.rand(4),),
        path,
        mode="inference",
        dynamic_shapes=({0: torch.export.Dim("N")},),
        input_names=["x"],
        output_names=["z"],
        metadata={"lifexport.mode": "inference"},
    )
    assert path.read_bytes() == model.SerializeToString()
    assert {(p.key, p.value) for p in onnx.load(path).metadata_props} == {
        ("lifexport.mode", "inference")
    }
    assert {t for _, t in op_types(model)} == {"Greater", "Cast", "Mul"}
    assert not any(n.metadata_props for n in model.graph.node)  # no stack traces, no paths
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0, -3.0, 7.0])
    out = ort_session(model)({"x": x.numpy()})["z"]
    np.testing.assert_array_equal(out, spike_times_three(x).numpy())


def test_gradient_op_exports_in_training_mode_only():
    args = (torch.rand(3), torch.randn(3))
    model = export_program(surrogate_gradient, args, mode="training")
    assert op_types(model) == {(LIFEXPORT.domain, "CircSpikeGrad")}
    with pytest.raises(ExportError, match="torch.onnx.export failed in inference mode"):
        export_program(surrogate_gradient, args, mode="inference")


def test_module_is_exported_in_eval_mode_and_left_as_it_was():
    module = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.ReLU()).train()
    model = export_program(module, (torch.rand(3),), mode="inference")
    assert "Dropout" not in {t for _, t in op_types(model)}
    assert module.training


def test_bad_arguments_are_refused_before_exporting():
    with pytest.raises(ValueError, match="mode must be one of"):
        export_program(spike_times_three, (torch.rand(3),), mode="eval")
    with pytest.raises(TypeError, match="expected a torch.nn.Module or a function"):
        export_program(3, (torch.rand(3),), mode="inference")
