"""Step graphs (streaming): one time step per run, every state tensor an input and an output."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import lifexport.functional as lx
from lifexport.export import LIFEXPORT, export_program, op_types

FEATURES, N, STEPS = 4, 6, 200
P = lx.LIFRefracParameters(lx.LIFParameters(v_th=0.5, method="super", alpha=10.0), rho_reset=3.0)
STATE = ["ff.v", "ff.i", "ff.rho", "rec.z", "rec.v", "rec.i", "rec.rho"]


class TwoLayers(torch.nn.Module):
    """A feed-forward LIF-refrac layer on the input current, then a recurrent one.

    ``(x, *state) -> (spikes, *new_state)`` with ``x`` of shape ``(B, FEATURES)`` and the state
    tensors of shapes ``(B, FEATURES)`` (feed-forward) and ``(B, N)`` (recurrent).
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w_in = torch.nn.Parameter(2.0 * torch.rand(N, FEATURES, generator=gen))
        self.w_rec = torch.nn.Parameter(torch.randn(N, N, generator=gen))

    def forward(self, x, ff_v, ff_i, ff_rho, z, v, i, rho):
        ff = lx.LIFRefracFeedForwardState(lx.LIFFeedForwardState(ff_v, ff_i), ff_rho)
        z_ff, ff = lx.lif_refrac_feed_forward_step(x, ff, P)
        rec = lx.LIFRefracState(lx.LIFState(z, v, i), rho)
        z, rec = lx.lif_refrac_step(z_ff, rec, self.w_in, self.w_rec, P)
        return z, ff.lif.v, ff.lif.i, ff.rho, rec.lif.z, rec.lif.v, rec.lif.i, rec.rho


def zero_state(b: int) -> list[torch.Tensor]:
    return [torch.zeros(b, FEATURES) for _ in range(3)] + [torch.zeros(b, N) for _ in range(4)]


@pytest.fixture(scope="module", params=["inference", "training"])
def exported(request, tmp_path_factory) -> tuple[str, onnx.ModelProto, str]:
    mode = request.param
    path = tmp_path_factory.mktemp(mode) / "step.onnx"
    B = torch.export.Dim("B")
    model = export_program(
        TwoLayers(),
        (torch.rand(2, FEATURES), *zero_state(2)),
        path,
        mode=mode,
        dynamic_shapes=({0: B},) * (1 + len(STATE)),
        input_names=["x", *STATE],
        output_names=["spikes", *(f"{n}.next" for n in STATE)],
    )
    return mode, model, str(path)


def test_op_set(exported):
    mode, model, _ = exported
    ops = op_types(model)
    assert ("", "Gemm") in ops
    if mode == "inference":
        assert {d for d, _ in ops} == {""}
        assert {("", "Greater"), ("", "Cast")} <= ops
        assert not model.functions
    else:
        assert {d for d, _ in ops} == {"", LIFEXPORT.domain}
        assert (LIFEXPORT.domain, "SuperSpike") in ops
        assert ("", "Greater") not in ops
        assert [f.name for f in model.functions] == ["SuperSpike"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "B"


def test_onnxruntime_from_file_matches_eager_step_by_step(exported, ort_session):
    _, _, path = exported
    model, layers, b = onnx.load(path), TwoLayers(), 5  # another batch size than exported
    xs = 2.0 * torch.rand(STEPS, b, FEATURES, generator=torch.Generator().manual_seed(1))
    state, feeds = zero_state(b), [s.numpy() for s in zero_state(b)]
    run, total = ort_session(model), 0.0
    for t, x in enumerate(xs):
        with torch.no_grad():
            z, *state = layers(x, *state)
        out = run({"x": x.numpy(), **dict(zip(STATE, feeds))})
        np.testing.assert_array_equal(out["spikes"], z.numpy(), err_msg=f"step {t}")
        feeds = [out[f"{n}.next"] for n in STATE]
        for name, mine, theirs in zip(STATE, state, feeds):
            np.testing.assert_allclose(theirs, mine.numpy(), rtol=0, atol=1e-5, err_msg=name)
        total += z.sum().item()
    assert 0 < total < STEPS * b * N
