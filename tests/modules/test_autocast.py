"""Every layer under ``torch.autocast``: the neuron dynamics run in float32, spikes leave in
the autocast dtype.

The reference is the same layer without autocast on the upcast input: under autocast a layer
must give exactly its spikes and states (float32 arithmetic on the same values), its input and
parameter gradients too (the input's rounded to the input's dtype), whatever the backend,
stack or compiler around it. Recurrent layers' matrix products follow autocast (half
precision); with weights and inputs whose products every half dtype holds exactly, they too
equal their float32 run, and a one-step hand computation pins the rounding otherwise.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport
from lifexport.functional import LIFParameters, LIFRefracParameters
from lifexport.modules import (
    LI,
    LIF,
    LICell,
    LIFCell,
    LIFRecurrent,
    LIFRecurrentCell,
    LIFRefrac,
    LIFRefracCell,
    LIFRefracRecurrent,
    LIFRefracRecurrentCell,
    SequentialState,
    TimeLoop,
)

HALF = (torch.bfloat16, torch.float16)
T, B, N = 12, 3, 5

# v_leak and v_th that no half dtype holds exactly: a state built or compared in half
# precision would differ from the float32 one.
P = LIFParameters(v_leak=0.0123, v_th=0.7071, method="super", alpha=50.0)
TRAIN = ("tau_mem_inv", "v_th", "v_leak")


def feed_forward(cls, **kw):
    p = LIFRefracParameters(P, rho_reset=2.0) if "Refrac" in cls.__name__ else P
    if cls in (LI, LICell):
        return cls(trainable=("tau_mem_inv", "v_leak"), **kw)
    return cls(p, trainable=TRAIN, **kw)


def recurrent(cls, exact: bool = True):
    """A recurrent layer of 4 neurons on N features; with ``exact``, weights in quarters up
    to 1, so its products of small-integer inputs or spikes are exact in half precision."""
    p = LIFRefracParameters(P, rho_reset=2.0) if "Refrac" in cls.__name__ else P
    g = torch.Generator().manual_seed(3)
    if not exact:
        torch.manual_seed(3)
        return cls(N, 4, p, trainable=TRAIN)
    w_in, w_rec = (torch.randint(-2, 5, shape, generator=g) / 4 for shape in ((4, N), (4, 4)))
    return cls(N, 4, p, input_weights=w_in, recurrent_weights=w_rec, trainable=TRAIN)


LAYERS = {
    "LIFRefracCell": lambda: feed_forward(LIFRefracCell),
    "LIFCell": lambda: feed_forward(LIFCell),
    "LICell": lambda: feed_forward(LICell),
    "LIFRefracRecurrentCell": lambda: recurrent(LIFRefracRecurrentCell),
    "LIFRecurrentCell": lambda: recurrent(LIFRecurrentCell),
    "LIFRefrac": lambda: feed_forward(LIFRefrac, backend="scan"),
    "LIF": lambda: feed_forward(LIF, backend="scan"),
    "LI": lambda: feed_forward(LI, backend="scan"),
    "LIFRefracRecurrent": lambda: recurrent(LIFRefracRecurrent),
    "LIFRecurrent": lambda: recurrent(LIFRecurrent),
    "TimeLoop(LIFRefracCell)": lambda: TimeLoop(feed_forward(LIFRefracCell)),
}


def half_input(layer: torch.nn.Module, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Input in ``dtype`` that makes neurons spike every few steps (a cell gets one step):
    currents, or for a recurrent layer small integers (its products stay exact)."""
    g = torch.Generator().manual_seed(seed)
    if hasattr(layer, "recurrent_weights"):
        x = torch.randint(0, 4, (T, B, N), generator=g).float()
    else:
        x = torch.randn(T, B, N, generator=g) * 40.0 + 15.0
    return (x if getattr(layer, "is_sequence", False) else x[0]).to(dtype)


def gradients(layer, x, autocast_dtype=None, weights_seed=1):
    """Output, state, and the gradients of a weighted sum of both w.r.t. ``x`` and the
    parameters; under autocast when ``autocast_dtype`` is given. The weights are exact in
    every half dtype, so the output's gradient is the same in both runs."""
    x = x.detach().requires_grad_()
    with torch.autocast(
        "cpu", dtype=autocast_dtype or torch.bfloat16, enabled=bool(autocast_dtype)
    ):
        y, state = layer(x)
    g = torch.Generator().manual_seed(weights_seed)
    leaves = [t for t in tree_leaves(state) if t is not None]  # None: a Linear's entry
    weights = [torch.randint(-4, 5, t.shape, generator=g).float() / 4 for t in (y, *leaves)]
    loss = (y.float() * weights[0]).sum() + sum((s * w).sum() for s, w in zip(leaves, weights[1:]))
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])
    return y, leaves, grads


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("name", LAYERS)
def test_layer_equals_its_float32_run(name, dtype):
    layer = LAYERS[name]()
    x = half_input(layer, dtype)
    y, state, grads = gradients(layer, x, autocast_dtype=dtype)
    y32, state32, grads32 = gradients(layer, x.float())
    spiking = "LI" not in name or "LIF" in name
    assert y.dtype == (dtype if spiking else torch.float32)
    assert torch.equal(y.float(), y32)
    if spiking:
        assert 0 < y32.mean() < 1, "the input should make neurons spike, not always"
    for s, s32 in zip(state, state32, strict=True):
        assert s.dtype == torch.float32
        assert torch.equal(s, s32)
    grad_x, *grad_params = grads
    assert grad_x.dtype == dtype
    assert all(g.dtype == torch.float32 for g in grad_params)
    if "Recurrent" in name:
        # Backward through the half-precision products: the gradients are those of the
        # float32 run to half precision (here a 2e-2 relative bound covers bfloat16's 8 bits).
        for g, g32 in zip(grads, grads32, strict=True):
            torch.testing.assert_close(g.float(), g32, rtol=2e-2, atol=2e-2 * g32.abs().max())
        return
    assert torch.equal(grad_x, grads32[0].to(dtype))
    for g, g32 in zip(grad_params, grads32[1:], strict=True):
        assert torch.equal(g, g32)


@pytest.mark.parametrize("dtype", HALF)
def test_recurrent_products_follow_autocast(dtype):
    # One LIF step by hand (Norse's formula) from a state that spiked: the input and recurrent
    # products are rounded to the autocast dtype, the rest is float32.
    layer = recurrent(LIFRecurrentCell, exact=False)
    g = torch.Generator().manual_seed(4)
    x = (torch.rand(B, N, generator=g) * 3).to(dtype)
    state = layer.initial_state(x.float())
    state = state._replace(z=torch.ones_like(state.z), i=torch.rand(B, 4, generator=g))
    with torch.autocast("cpu", dtype=dtype):
        _, new = layer(x, state)
    w_in, w_rec = layer.weights()
    a = (x @ w_in.T.to(dtype)).float()  # half operands; the product rounded to half
    b = (state.z.to(dtype) @ w_rec.T.to(dtype)).float()
    i_jump = state.i + a + b
    assert torch.equal(new.i, i_jump + -layer.dt * layer.tau_syn_inv * i_jump)
    _, new32 = layer(x.float(), state)
    assert not torch.equal(new.i, new32.i)  # the rounding is real for these values


def test_half_state_is_upcast_and_float32_state_kept():
    layer = feed_forward(LIFRefrac, backend="scan")
    x = half_input(layer, torch.bfloat16)
    tree_map = torch.utils._pytree.tree_map
    half_state = tree_map(lambda t: t.bfloat16(), layer.initial_state(x[0].float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, state = layer(x, half_state)
    z32, state32 = layer(x.float(), tree_map(lambda t: t.float(), half_state))
    assert torch.equal(z.float(), z32)
    for a, b in zip(tree_leaves(state), tree_leaves(state32)):
        assert a.dtype == torch.float32 and torch.equal(a, b)


def test_stacks_feed_linear_layers_half_spikes():
    # Linear layers run in bfloat16 under autocast (their own rule); the neuron layers get
    # their bfloat16 outputs upcast: the stack equals its layers run one by one that way.
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(N, 6), torch.nn.Linear(6, 4)
    with torch.no_grad():
        lin1.weight.uniform_(0.5, 3.0)
        lin2.weight.uniform_(0.5, 3.0)
    cell1, cell2 = feed_forward(LIFRefracCell), feed_forward(LIFCell)
    stack = TimeLoop(SequentialState(lin1, cell1, lin2, cell2))
    seq = SequentialState(
        lin1, feed_forward(LIFRefrac, backend="scan"), lin2, feed_forward(LIF, backend="scan")
    )
    x = torch.randn(T, B, N) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = stack(x)
        y_seq, state_seq = seq(x)
        h1 = lin1(x)
    assert h1.dtype == torch.bfloat16
    z1, s1 = TimeLoop(cell1)(h1.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h2 = lin2(z1.bfloat16())
    z2, s2 = TimeLoop(cell2)(h2.float())
    assert y.dtype == y_seq.dtype == torch.bfloat16
    assert 0 < z1.mean() < 1 and 0 < z2.mean() < 1
    assert torch.equal(y.float(), z2) and torch.equal(y_seq.float(), z2)
    expected = tree_leaves((s1, s2))
    for got in (tree_leaves(state), tree_leaves(state_seq)):
        got = [t for t in got if t is not None]  # the Linear layers' entries
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == torch.float32 and torch.equal(a, b)


@pytest.fixture(scope="module")
def compiled_cases():
    """One compiled model per entry point, shared by the compile tests."""
    torch._dynamo.reset()
    layer = feed_forward(LIFRefrac, backend="scan")
    rec = recurrent(LIFRefracRecurrent)
    cell = feed_forward(LIFRefracCell)
    loop = TimeLoop(SequentialState(torch.nn.Linear(N, N), feed_forward(LIFCell)))
    return {
        "lifexport.compile(LIFRefrac)": (layer, lifexport.compile(layer)),
        "lifexport.compile(LIFRefracRecurrent)": (rec, lifexport.compile(rec)),
        "lifexport.compile(TimeLoop(stack))": (loop, lifexport.compile(loop)),
        "torch.compile(LIFRefracCell)": (cell, torch.compile(cell, fullgraph=True)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "lifexport.compile(LIFRefrac)",
        "lifexport.compile(LIFRefracRecurrent)",
        "lifexport.compile(TimeLoop(stack))",
        "torch.compile(LIFRefracCell)",
    ],
)
def test_compiled_under_autocast_equals_eager(compiled_cases, case, one_thread):
    eager, compiled = compiled_cases[case]
    x = half_input(eager, torch.bfloat16)
    if isinstance(eager, TimeLoop):
        x = x.float() / 10  # the stack's Linear takes any float input; autocast casts it
    y, state, grads = gradients(compiled, x, autocast_dtype=torch.bfloat16)
    y_ref, state_ref, grads_ref = gradients(eager, x, autocast_dtype=torch.bfloat16)
    assert y.dtype == y_ref.dtype == torch.bfloat16
    assert torch.equal(y, y_ref)
    for a, b in zip(state, state_ref, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Gradients through half-precision products (a recurrent layer's, a Linear's) agree to
    # that precision, summed over T * B terms (inductor's bfloat16 matmul rounds in its own
    # order); the neuron dynamics alone to float32's.
    rtol = 5e-2 if "Recurrent" in case or "stack" in case else 1e-4
    for a, b in zip(grads, grads_ref, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * b.abs().max().item())


def test_converted_layer_computes_in_its_own_dtype():
    # .to(torch.bfloat16) is outside autocast's rules: parameters, state and arithmetic are
    # bfloat16, so v rounds to bfloat16 each step (here 0.1 * 3.0 -> 0.30078125).
    cell = LIFCell(LIFParameters(v_th=10.0)).to(torch.bfloat16)
    x = torch.full((1, 1), 3.0, dtype=torch.bfloat16)
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, state = cell(x)
        assert state.v.dtype == torch.bfloat16
        assert state.v.item() == 0.30078125  # bfloat16(0.1) * 3.0, rounded to bfloat16
    with pytest.raises(TypeError, match="p.tau_syn_inv has dtype torch.bfloat16 but the input"):
        cell(x.float())


def test_float64_input_under_autocast_is_not_coerced():
    layer = feed_forward(LIFRefrac, backend="scan")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(
            TypeError, match="has dtype torch.float32 but the input has torch.float64"
        ):
            layer(torch.zeros(2, 1, N, dtype=torch.float64))


def test_grad_scaler_float16_training_step_then_export(tmp_path):
    # The recipe in docs/validation.md: autocast float16 with a GradScaler; the parameters and
    # their gradients stay float32, and the trained model exports and validates as before.
    torch.manual_seed(0)
    model = SequentialState(
        torch.nn.Linear(N, 8),
        feed_forward(LIFRefrac, backend="scan"),
        torch.nn.Linear(8, 2),
        feed_forward(LI, backend="scan"),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(T, B, N) * 5
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        with torch.autocast("cpu", dtype=torch.float16):
            v, _ = model(x)
            loss = v.max(0).values.square().mean()
        scaler.scale(loss).backward()
        for p in model.parameters():
            assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
    assert v.dtype == torch.float32  # LI's potential stays float32
    assert scaler.get_scale() == 2.0**8  # no step skipped for an overflow
    for (name, p), p0 in zip(model.named_parameters(), before):
        assert p.dtype == torch.float32
        if name.endswith("weight"):
            assert not torch.equal(p, p0), name
    path = tmp_path / "amp.onnx"
    lifexport.to_onnx(model, x[:3], path)
    report = lifexport.validate(model, path, x, providers="CPUExecutionProvider")
    assert report.passed, report


@pytest.mark.parametrize("memory", ("store", "recompute"))
@pytest.mark.parametrize("cls", (LIFRefrac, LIF, LI))
def test_fused_kernel_under_autocast_equals_scan(cls, memory):
    # The kernel reads the bfloat16 input itself (no upcast pass) and writes bfloat16 spikes;
    # in Triton's interpreter it must equal the scan path under autocast, bit for bit.
    pytest.importorskip("triton")
    from lifexport.kernels import _triton

    if not _triton.INTERPRETED:
        pytest.skip("the kernels are compiled for the GPU here (tests/kernels/test_cuda.py)")
    scan = feed_forward(cls, backend="scan")
    fused = feed_forward(cls, backend="triton", memory=memory)
    x = half_input(scan, torch.bfloat16)
    y, state, grads = gradients(fused, x, autocast_dtype=torch.bfloat16)
    y_ref, state_ref, grads_ref = gradients(scan, x, autocast_dtype=torch.bfloat16)
    assert y.dtype == y_ref.dtype and torch.equal(y, y_ref)
    for a, b in zip(state, state_ref, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * b.abs().max().item())
    for a, b in zip(grads, grads_ref, strict=True):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item())
