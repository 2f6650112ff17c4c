"""Sequence graphs: the whole time loop as one ONNX ``Scan``, T and B dynamic at run time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch._higher_order_ops.scan import scan

import lifexport.functional as lx
from lifexport.export import export_program, op_types

FEATURES, N = 5, 8
STATE = ["z", "v", "i", "rho"]
P = lx.LIFRefracParameters(lx.LIFParameters(v_th=0.5, method="super", alpha=10.0), rho_reset=3.0)


class Recurrent(torch.nn.Module):
    """A recurrent LIF-refrac layer over time: ``(xs, z, v, i, rho) -> (spikes, z, v, i, rho)``."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w_in = torch.nn.Parameter(4.0 * torch.rand(N, FEATURES, generator=gen))
        self.w_rec = torch.nn.Parameter(torch.randn(N, N, generator=gen))

    def step(self, carry: tuple[torch.Tensor, ...], x: torch.Tensor):
        z, v, i, rho = carry
        state = lx.LIFRefracState(lx.LIFState(z, v, i), rho)
        z, s = lx.lif_refrac_step(x, state, self.w_in, self.w_rec, P)
        return z, (s.lif.z, s.lif.v, s.lif.i, s.rho)

    def forward(self, xs, z, v, i, rho):  # xs: (T, B, FEATURES); states: (B, N)
        def combine(carry, x):
            z, carry = self.step(carry, x)
            return carry, z.clone()  # z is also carried: scan outputs must not alias

        carry, zs = scan(combine, (z, v, i, rho), xs)
        return zs, *carry

    def reference(self, xs, *carry):
        """The same loop in Python, eager."""
        zs = []
        for x in xs:
            z, carry = self.step(carry, x)
            zs.append(z)
        return torch.stack(zs), *carry


def example(t: int, b: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    xs = torch.rand(t, b, FEATURES, generator=torch.Generator().manual_seed(seed))
    return (xs, *(torch.zeros(b, N) for _ in STATE))


def export_sequence(t: int, path=None) -> onnx.ModelProto:
    T, B = torch.export.Dim("T"), torch.export.Dim("B")
    return export_program(
        Recurrent(),
        example(t, 2),
        path,
        mode="inference",
        dynamic_shapes={"xs": {0: T, 1: B}, **{n: {0: B} for n in STATE}},
        input_names=["xs", *STATE],
        output_names=["spikes", *(f"{n}_out" for n in STATE)],
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[onnx.ModelProto, Path]:
    path = tmp_path_factory.mktemp("sequence") / "sequence.onnx"
    return export_sequence(10, path), path


def test_time_loop_is_one_scan_of_standard_ops(model):
    model, _ = model
    assert [n.op_type for n in model.graph.node].count("Scan") == 1
    assert not {"Loop", "If"} & {t for _, t in op_types(model)}
    assert {d for d, _ in op_types(model)} == {""}
    assert {"Greater", "Cast", "Gemm"} <= {t for _, t in op_types(model)}
    xs = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in xs[:2]] == ["T", "B"]


def test_file_does_not_change_with_example_length(model, tmp_path):
    _, path = model
    export_sequence(50, tmp_path / "t50.onnx")
    assert (tmp_path / "t50.onnx").read_bytes() == path.read_bytes()


def test_onnxruntime_from_file_matches_eager_over_200_steps(model, ort_session):
    _, path = model
    layer = Recurrent()
    args = example(200, 3, seed=1)
    with torch.no_grad():
        expected = layer.reference(*args)
    out = ort_session(onnx.load(path))(dict(zip(["xs", *STATE], (a.numpy() for a in args))))
    spikes = expected[0].numpy()
    assert 0 < spikes.sum() < spikes.size
    np.testing.assert_array_equal(out["spikes"], spikes)
    np.testing.assert_array_equal(out["z_out"], expected[1].numpy())
    for name, value in zip(STATE[1:], expected[2:]):
        np.testing.assert_allclose(out[f"{name}_out"], value.numpy(), rtol=0, atol=1e-5)
