"""What the forward keeps for the backward: every step's state (``store``) or one in 32
(``recompute``). Both walk the same states back, so every output, state and gradient is
bit-equal between them; ``auto`` chooses by the stored states' size."""

from __future__ import annotations

import pytest
import torch

import lifexport.kernels as kernels
from lifexport.kernels import STORE_LIMIT_BYTES, stores_states
from lifexport.kernels._ops import CHUNK
from tests.kernels._reference import assert_equal, case, check, inputs


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("model", ("lif_refrac", "lif", "li"))
@pytest.mark.parametrize("t", (1, 40, 257))
def test_store_and_recompute_are_bit_equal(model, t):
    # T = 40: a chunk of 32 and one of 8; T = 257: nine chunks, the last of one step.
    c = case(model, "super", inputs(t, 1, 37))
    recompute = c.fused("recompute")
    check(c, recompute, c.reference())
    assert_equal(c.fused("store"), recompute, "store vs recompute")


@pytest.mark.usefixtures("interpreter")
def test_chunks_that_end_with_the_sequence():
    # T = 64: the walk back starts at the last step of a full chunk (two reasons to
    # recompute it at once), with a tanh surrogate and every parameter per neuron.
    c = case("lif_refrac", "tanh", inputs(64, 2, 5))
    recompute = c.fused("recompute")
    check(c, recompute, c.reference())
    assert_equal(c.fused("store"), recompute, "store vs recompute")


@pytest.mark.parametrize(
    ("t", "m", "ns", "dtype"),
    (
        (1024, 2**18, 2, torch.float32),  # exactly 2 GiB: T * 2 * M * 4 == 2**31
        (2730, 2**16, 3, torch.float32),  # 2730 * 3 * 65536 * 4 = 2**31 - 524288
        (1365, 2**16, 3, torch.float64),
    ),
)
def test_auto_stores_up_to_the_limit_inclusive(t, m, ns, dtype):
    assert STORE_LIMIT_BYTES == 2**31
    assert t * ns * m * dtype.itemsize <= STORE_LIMIT_BYTES
    assert stores_states("auto", t, m, ns, dtype)
    assert not stores_states("auto", t + 1, m, ns, dtype)
    assert stores_states("store", t + 1, m, ns, dtype)
    assert not stores_states("recompute", 1, 1, ns, dtype)


@pytest.mark.usefixtures("interpreter")
def test_auto_passes_the_chosen_interval_to_the_op(monkeypatch):
    chunks = []
    op = kernels.OPS["lif"]

    def spy(*args):
        chunks.append(args[-1])
        return op(*args)

    monkeypatch.setitem(kernels.OPS, "lif", spy)
    c = case("lif", "super", inputs(10, 2, 3))
    stored = 10 * 2 * 6 * 4  # T * NS * M * float32
    for limit in (stored, stored - 1):
        monkeypatch.setattr(kernels, "STORE_LIMIT_BYTES", limit)
        kernels.lif_sequence(c.x, c.state, c.scan.p, c.scan.dt)
    kernels.lif_sequence(c.x, c.state, c.scan.p, c.scan.dt, "recompute")
    kernels.lif_sequence(c.x, c.state, c.scan.p, c.scan.dt, "store")
    assert chunks == [1, CHUNK, CHUNK, 1]
