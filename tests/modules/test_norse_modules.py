"""Module conformance with Norse 1.1.0: every lifexport module against Norse's module of the
same name (or, for the sequence layer Norse 1.1.0 lacks, a loop over Norse's cell).

Both sides get the same leaf tensors: inputs, initial states, weights (Norse gets clones,
since it zeroes the diagonal of the caller's recurrent weights in place) and neuron
parameters (lifexport copies them into ``nn.Parameter``s via ``trainable``, Norse uses the
leaves). Over 200 steps spikes and states must be bit-equal; gradients of a loss over the
whole trajectory w.r.t. input, weights, neuron parameters and a given initial state allclose.

Norse 1.1.0's SuperSpike backward ignores ``alpha``; ``super`` is compared at ``alpha=1``,
where both formulas agree, except in the default-parameter test (alpha=100), which patches
Norse's backward to the formula of Norse's main branch.

Norse's modules restrict what can be compared:

- ``LIFRefracCell.initial_state`` and ``LIFRefracRecurrent.initial_state`` fill ``v`` with
  ``torch.full(shape, v_leak)``, which takes one number: with ``state=None`` their ``v_leak``
  stays a scalar while the other parameters are per neuron.
- ``LIFRefracRecurrent.initial_state`` builds ``v``, ``i`` and ``rho`` in float32 whatever the
  input's dtype, so parameter values are drawn in float32 and then converted: ``v_leak`` is
  then the same number in both libraries' initial ``v``.
"""

from __future__ import annotations

import copy

import norse.torch as norse
import norse.torch.functional.lif as norse_lif
import norse.torch.functional.lif_refrac as norse_refrac
import norse.torch.functional.superspike as norse_superspike
import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport as lx

T = 200  # steps per trajectory
NAMES = ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset", "rho_reset")
METHODS = [("super", 1.0), ("triangle", 1.0)]
DTYPES = [torch.float32, torch.float64]


pytestmark = pytest.mark.usefixtures("one_thread")


# --- inputs, parameters, states -------------------------------------------------------------


def neuron_values(shape, dtype, gen, scalar=()):
    """Leaf tensors requiring grad for every neuron parameter: of ``shape`` (per neuron; ``()``
    for scalars), except the names in ``scalar``. Drawn in float32, then converted (see the
    module docstring)."""
    ranges = dict(
        tau_syn_inv=(150.0, 250.0),
        tau_mem_inv=(80.0, 120.0),
        v_leak=(-0.05, 0.05),
        v_th=(0.9, 1.1),
        v_reset=(-0.1, 0.1),
    )
    values = {}
    for name, (lo, hi) in ranges.items():
        s = () if name in scalar else shape
        values[name] = (lo + (hi - lo) * torch.rand(s, generator=gen)).to(dtype)
    s = () if "rho_reset" in scalar else shape
    values["rho_reset"] = torch.randint(2, 7, s, generator=gen).to(dtype)
    return {name: v.requires_grad_() for name, v in values.items()}


def both_params(values, method, alpha):
    """The same leaves as lifexport's and Norse's ``LIFRefracParameters``."""
    lif = {name: values[name] for name in NAMES[:5]}
    ours = lx.functional.LIFRefracParameters(
        lx.functional.LIFParameters(**lif, method=method, alpha=alpha), values["rho_reset"]
    )
    theirs = norse_refrac.LIFRefracParameters(
        norse_lif.LIFParameters(**lif, method=method, alpha=alpha), values["rho_reset"]
    )
    return ours, theirs


def drive(shape, dtype, gen, scale=6.0):
    """Input currents in [-1, scale - 1): neurons spike often and sit in refractoriness."""
    return (scale * torch.rand((T, *shape), generator=gen, dtype=dtype) - 1.0).requires_grad_()


def weights(features, hidden, dtype, gen):
    """Input weights (positive, to drive spikes) and mixed-sign recurrent weights with a
    non-zero diagonal, as leaves."""
    w_in = 2.0 * torch.rand(hidden, features, generator=gen, dtype=dtype)
    w_rec = 0.5 * torch.randn(hidden, hidden, generator=gen, dtype=dtype)
    return w_in.requires_grad_(), w_rec.requires_grad_()


def norse_weights(w_in, w_rec):
    """Clones for Norse, which zeroes the diagonal of the recurrent weights in place."""
    return w_in.detach().clone().requires_grad_(), w_rec.detach().clone().requires_grad_()


def ff_state(shape, dtype, gen):
    """A non-zero feed-forward state: v partly above threshold, i, rho in 0..5."""
    v = 1.5 * torch.rand(shape, generator=gen, dtype=dtype)
    i = 1.5 * torch.rand(shape, generator=gen, dtype=dtype)
    rho = torch.randint(0, 6, shape, generator=gen).to(dtype)
    return [t.requires_grad_() for t in (v, i, rho)]


def rec_state(shape, dtype, gen):
    """A non-zero recurrent state: z in {0, 1}, then as :func:`ff_state`."""
    z = (torch.rand(shape, generator=gen) > 0.5).to(dtype).requires_grad_()
    return [z, *ff_state(shape, dtype, gen)]


def make_ff_state(lib, leaves):
    v, i, rho = leaves
    return lib.LIFRefracFeedForwardState(lib.LIFFeedForwardState(v, i), rho)


def make_rec_state(lib, leaves):
    z, v, i, rho = leaves
    return lib.LIFRefracState(lib.LIFState(z, v, i), rho)


class NorseLib:
    """Norse's state classes under the names :func:`make_ff_state` uses."""

    LIFRefracFeedForwardState = norse_refrac.LIFRefracFeedForwardState
    LIFFeedForwardState = norse_lif.LIFFeedForwardState
    LIFRefracState = norse_refrac.LIFRefracState
    LIFState = norse_lif.LIFState


# --- running and comparing ------------------------------------------------------------------


def tensors(state):
    """The tensors of a state pytree in order; ``None`` (a stateless layer's state) holds none
    (torch's pytree counts ``None`` as a leaf)."""
    return [t for t in tree_leaves(state) if t is not None]


def run_steps(module, xs, state):
    """Step a cell (or stack of cells) through ``xs`` in a Python loop.

    Returns the spikes ``(T, ...)``, every step's state leaves and the final state."""
    spikes, states = [], []
    for x in xs:
        z, state = module(x, state)
        spikes.append(z)
        states.append(tensors(state))
    return torch.stack(spikes), states, state


def assert_states_equal(ours, theirs, where=""):
    leaves, n_leaves = tensors(ours), tensors(theirs)
    assert len(leaves) == len(n_leaves)
    for k, (a, b) in enumerate(zip(leaves, n_leaves)):
        assert a.shape == b.shape, f"state leaf {k} shape {a.shape} != {b.shape} {where}"
        assert torch.equal(a, b), f"state leaf {k} differs {where}"


def assert_same_run(ours, theirs):
    """Bit-equal spikes at every step; states at every step both sides recorded them."""
    zs, states, final = ours
    n_zs, n_states, n_final = theirs
    assert zs.shape == n_zs.shape
    for t in range(len(zs)):
        assert torch.equal(zs[t], n_zs[t]), f"spikes differ at step {t}"
    if states is not None and n_states is not None:
        for t, (s, ns) in enumerate(zip(states, n_states)):
            assert_states_equal(s, ns, f"at step {t}")
    assert_states_equal(final, n_final, "after the last step")
    total = n_zs.sum().item()
    assert 0 < total < n_zs.numel(), "no spikes or only spikes: the test would prove nothing"


def trajectory_loss(zs, final, seed):
    """A random weighted sum of every spike and the final state: all paths carry gradient."""
    gen = torch.Generator().manual_seed(seed)
    loss = 0.0
    for leaf in [zs, *tensors(final)]:
        loss = loss + (leaf * torch.rand(leaf.shape, generator=gen, dtype=leaf.dtype)).sum()
    return loss


def assert_grads_close(ours, theirs, leaves, n_leaves, dtype, seed=0, loose=()):
    """Gradients of the trajectory loss w.r.t. matching leaves (dicts of the same keys);
    those named in ``loose`` only to float32 precision."""
    assert list(leaves) == list(n_leaves)
    grads = torch.autograd.grad(
        trajectory_loss(ours[0], ours[2], seed), list(leaves.values()), allow_unused=True
    )
    n_grads = torch.autograd.grad(
        trajectory_loss(theirs[0], theirs[2], seed), list(n_leaves.values()), allow_unused=True
    )
    tol32 = dict(rtol=1e-5, atol=1e-6)
    tol = tol32 if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    nonzero = 0
    for name, g, ng in zip(leaves, grads, n_grads):
        assert (g is None) == (ng is None), f"gradient w.r.t. {name} exists in one library only"
        if g is not None:
            torch.testing.assert_close(
                g, ng, **(tol32 if name in loose else tol), msg=lambda m, n=name: f"d/d{n}: {m}"
            )
            nonzero += int(g.abs().sum() > 0)
    assert nonzero >= len(leaves) - 1, "gradients vanished: the test would prove nothing"
    return dict(zip(leaves, grads)), dict(zip(n_leaves, n_grads))


def param_leaves(module, values):
    """lifexport's trained parameter copies and Norse's leaves, keyed alike."""
    ours = {name: getattr(module, name) for name in NAMES}
    return ours, {name: values[name] for name in NAMES}


@pytest.fixture
def fixed_norse_superspike(monkeypatch):
    """Norse's SuperSpike with the backward of Norse's main branch (alpha honoured)."""

    def backward(ctx, grad_output):
        (inp,) = ctx.saved_tensors
        return grad_output / (ctx.alpha * torch.abs(inp) + 1.0).pow(2), None

    monkeypatch.setattr(norse_superspike.SuperSpike, "backward", staticmethod(backward))


# --- LIFRefracCell --------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["rest", "given"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("shape", [(4, 12), (2, 3, 4, 5)], ids=["BN", "BCHW"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_lif_refrac_cell_matches_norse(method, alpha, dtype, shape, per_neuron, start):
    gen = torch.Generator().manual_seed(1)
    scalar = ("v_leak",) if per_neuron and start == "rest" else ()
    values = neuron_values(shape[1:] if per_neuron else (), dtype, gen, scalar)
    ours_p, norse_p = both_params(values, method, alpha)
    ours = lx.LIFRefracCell(ours_p, trainable=NAMES)
    theirs = norse.LIFRefracCell(norse_p)
    xs = drive(shape, dtype, gen)
    s0 = ff_state(shape, dtype, gen) if start == "given" else None

    result = run_steps(ours, xs, s0 and make_ff_state(lx.functional, s0))
    n_result = run_steps(theirs, xs, s0 and make_ff_state(NorseLib, s0))
    assert_same_run(result, n_result)

    leaves, n_leaves = param_leaves(ours, values)
    extra = {"input": xs, **({"v0": s0[0], "i0": s0[1], "rho0": s0[2]} if s0 else {})}
    assert_grads_close(result, n_result, {**extra, **leaves}, {**extra, **n_leaves}, dtype)


def test_lif_refrac_cell_initial_state_matches_norse():
    """state=None starts where Norse's does: v = v_leak, i = rho = 0 (float64 input too)."""
    for dtype in DTYPES:
        p = lx.functional.LIFRefracParameters(lx.functional.LIFParameters(v_leak=-0.25))
        n_p = norse_refrac.LIFRefracParameters(norse_lif.LIFParameters(v_leak=torch.tensor(-0.25)))
        x = torch.zeros(3, 4, dtype=dtype)
        ours = lx.LIFRefracCell(p).to(dtype).initial_state(x)
        theirs = norse.LIFRefracCell(n_p).initial_state(x)
        for a, b in zip(tensors(ours), tensors(theirs)):
            assert a.dtype == b.dtype == dtype
            assert torch.equal(a, b.detach())


# --- LIFRefracRecurrentCell -----------------------------------------------------------------


@pytest.mark.parametrize("start", ["rest", "given"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("autapses", [False, True], ids=["no_autapses", "autapses"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_lif_refrac_recurrent_cell_matches_norse(method, alpha, dtype, autapses, per_neuron, start):
    gen = torch.Generator().manual_seed(2)
    batch, features, hidden = 4, 6, 10
    values = neuron_values((hidden,) if per_neuron else (), dtype, gen)
    ours_p, norse_p = both_params(values, method, alpha)
    w_in, w_rec = weights(features, hidden, dtype, gen)
    n_w_in, n_w_rec = norse_weights(w_in, w_rec)
    kwargs = dict(autapses=autapses) if autapses else {}  # False is both libraries' default
    ours = lx.LIFRefracRecurrentCell(
        features,
        hidden,
        ours_p,
        input_weights=w_in,
        recurrent_weights=w_rec,
        trainable=NAMES,
        **kwargs,
    )
    theirs = norse.LIFRefracRecurrentCell(
        features, hidden, norse_p, input_weights=n_w_in, recurrent_weights=n_w_rec, **kwargs
    )
    assert torch.equal(ours.recurrent_weights, n_w_rec)  # diagonal zeroed alike (or kept)
    assert torch.equal(ours.recurrent_weights.diagonal() == 0, torch.full((hidden,), not autapses))
    xs = drive((batch, features), dtype, gen, scale=2.0)
    s0 = rec_state((batch, hidden), dtype, gen) if start == "given" else None

    result = run_steps(ours, xs, s0 and make_rec_state(lx.functional, s0))
    n_result = run_steps(theirs, xs, s0 and make_rec_state(NorseLib, s0))
    assert_same_run(result, n_result)

    leaves, n_leaves = param_leaves(ours, values)
    extra = {"input": xs}
    if s0:
        extra.update(z0=s0[0], v0=s0[1], i0=s0[2], rho0=s0[3])
    grads, n_grads = assert_grads_close(
        result,
        n_result,
        {**extra, "w_in": ours.input_weights, "w_rec": ours.recurrent_weights, **leaves},
        {**extra, "w_in": n_w_in, "w_rec": n_w_rec, **n_leaves},
        dtype,
    )
    # Norse zeroes the diagonal's gradient with a hook, lifexport masks the weights in the step.
    diagonal = grads["w_rec"].diagonal()
    assert torch.equal(n_grads["w_rec"].diagonal() == 0, diagonal == 0)
    assert (diagonal == 0).all() if not autapses else (diagonal != 0).any()


def test_lif_refrac_recurrent_cell_initial_state_matches_norse():
    """Norse's initial v is v_leak itself (0-d, or per neuron) and broadcasts in the first
    step; lifexport's has the full (batch, hidden) shape. Same values."""
    for v_leak in (torch.tensor(-0.25), torch.linspace(-0.5, 0.5, 5)):
        p = lx.functional.LIFRefracParameters(lx.functional.LIFParameters(v_leak=v_leak))
        n_p = norse_refrac.LIFRefracParameters(norse_lif.LIFParameters(v_leak=v_leak))
        x = torch.zeros(3, 2)
        ours = lx.LIFRefracRecurrentCell(2, 5, p).initial_state(x)
        theirs = norse.LIFRefracRecurrentCell(2, 5, n_p).initial_state(x)
        assert theirs.lif.v.shape == v_leak.shape
        for a, b in zip(tensors(ours), tensors(theirs)):
            assert a.shape == (3, 5)
            assert torch.equal(a, b.detach().expand_as(a))


# --- LIFRefrac (sequence) -------------------------------------------------------------------


@pytest.mark.parametrize("start", ["rest", "given"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("shape", [(4, 12), (2, 3, 4, 5)], ids=["BN", "BCHW"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_lif_refrac_matches_loop_over_norse_cell(method, alpha, dtype, shape, per_neuron, start):
    """Norse 1.1.0 has no feed-forward LIF-refrac sequence layer: the oracle is its cell in a
    Python loop. The sequence layer is also run in 4 chunks, passing the state on, which
    compares its states with Norse's at the chunk boundaries."""
    gen = torch.Generator().manual_seed(3)
    scalar = ("v_leak",) if per_neuron and start == "rest" else ()
    values = neuron_values(shape[1:] if per_neuron else (), dtype, gen, scalar)
    ours_p, norse_p = both_params(values, method, alpha)
    ours = lx.LIFRefrac(ours_p, trainable=NAMES)
    theirs = norse.LIFRefracCell(norse_p)
    xs = drive(shape, dtype, gen)
    s0 = ff_state(shape, dtype, gen) if start == "given" else None

    zs, final = ours(xs, s0 and make_ff_state(lx.functional, s0))
    n_result = run_steps(theirs, xs, s0 and make_ff_state(NorseLib, s0))
    assert_same_run((zs, None, final), n_result)

    state = s0 and make_ff_state(lx.functional, s0)
    for k, chunk in enumerate(xs.chunk(4)):
        chunk_zs, state = ours(chunk, state)
        end = (k + 1) * len(chunk)
        assert torch.equal(chunk_zs, n_result[0][end - len(chunk) : end])
        assert_states_equal(state, n_result[1][end - 1], f"after step {end - 1}")

    leaves, n_leaves = param_leaves(ours, values)
    extra = {"input": xs, **({"v0": s0[0], "i0": s0[1], "rho0": s0[2]} if s0 else {})}
    assert_grads_close(
        (zs, None, final), n_result, {**extra, **leaves}, {**extra, **n_leaves}, dtype
    )


# --- LIFRefracRecurrent ---------------------------------------------------------------------


@pytest.mark.parametrize("start", ["rest", "given"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("autapses", [False, True], ids=["no_autapses", "autapses"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_lif_refrac_recurrent_matches_norse(method, alpha, dtype, autapses, per_neuron, start):
    gen = torch.Generator().manual_seed(4)
    batch, features, hidden = 4, 6, 10
    scalar = ("v_leak",) if per_neuron and start == "rest" else ()
    values = neuron_values((hidden,) if per_neuron else (), dtype, gen, scalar)
    ours_p, norse_p = both_params(values, method, alpha)
    w_in, w_rec = weights(features, hidden, dtype, gen)
    n_w_in, n_w_rec = norse_weights(w_in, w_rec)
    ours = lx.LIFRefracRecurrent(
        features,
        hidden,
        ours_p,
        input_weights=w_in,
        recurrent_weights=w_rec,
        autapses=autapses,
        trainable=NAMES,
    )
    theirs = norse.LIFRefracRecurrent(
        features,
        hidden,
        norse_p,
        input_weights=n_w_in,
        recurrent_weights=n_w_rec,
        autapses=autapses,
    )
    xs = drive((batch, features), dtype, gen, scale=2.0)
    s0 = rec_state((batch, hidden), dtype, gen) if start == "given" else None

    zs, final = ours(xs, s0 and make_rec_state(lx.functional, s0))
    n_zs, n_final = theirs(xs, s0 and make_rec_state(NorseLib, s0))
    assert_same_run((zs, None, final), (n_zs, None, n_final))
    assert zs.dtype == n_zs.dtype == dtype

    leaves, n_leaves = param_leaves(ours, values)
    extra = {"input": xs}
    if s0:
        extra.update(z0=s0[0], v0=s0[1], i0=s0[2], rho0=s0[3])
    # Norse's initial v is float32 whatever the input: in its first step ``v_leak - v`` with
    # a 0-d float64 v_leak computes in float32 (a 0-d tensor does not promote a dimensioned
    # one), so the gradient that reaches v_leak there is rounded to float32. The forward
    # values are exact (v = v_leak), so states still agree to the bit.
    loose = ("v_leak",) if start == "rest" and dtype == torch.float64 else ()
    grads, n_grads = assert_grads_close(
        (zs, None, final),
        (n_zs, None, n_final),
        {**extra, "w_in": ours.input_weights, "w_rec": ours.recurrent_weights, **leaves},
        {**extra, "w_in": n_w_in, "w_rec": n_w_rec, **n_leaves},
        dtype,
        loose=loose,
    )
    diagonal = grads["w_rec"].diagonal()
    assert torch.equal(n_grads["w_rec"].diagonal() == 0, diagonal == 0)
    assert (diagonal == 0).all() if not autapses else (diagonal != 0).any()


# --- default parameters ---------------------------------------------------------------------


def test_default_parameters_match_norse(fixed_norse_superspike):
    """Default constructors on both sides (Norse's defaults are float32 tensors, lifexport's
    floats stored as float32 buffers): bit-equal in float32. The default surrogate is
    SuperSpike at alpha=100, hence Norse's backward patched to honour alpha."""
    gen = torch.Generator().manual_seed(5)
    xs = drive((4, 12), torch.float32, gen)

    result = run_steps(lx.LIFRefracCell(), xs, None)
    n_result = run_steps(norse.LIFRefracCell(), xs, None)
    assert_same_run(result, n_result)
    assert_grads_close(result, n_result, {"input": xs}, {"input": xs}, torch.float32)

    zs, final = lx.LIFRefrac()(xs)
    assert_same_run((zs, None, final), n_result)

    xs = drive((4, 6), torch.float32, gen, scale=2.0)
    w_in, w_rec = weights(6, 10, torch.float32, gen)
    for ours_cls, norse_cls, stepped in (
        (lx.LIFRefracRecurrentCell, norse.LIFRefracRecurrentCell, True),
        (lx.LIFRefracRecurrent, norse.LIFRefracRecurrent, False),
    ):
        n_w_in, n_w_rec = norse_weights(w_in, w_rec)
        ours = ours_cls(6, 10, input_weights=w_in, recurrent_weights=w_rec)
        theirs = norse_cls(6, 10, input_weights=n_w_in, recurrent_weights=n_w_rec)
        if stepped:
            result, n_result = run_steps(ours, xs, None), run_steps(theirs, xs, None)
        else:
            (zs, final), (n_zs, n_final) = ours(xs), theirs(xs)
            result, n_result = (zs, None, final), (n_zs, None, n_final)
        assert_same_run(result, n_result)
        assert_grads_close(
            result,
            n_result,
            {"input": xs, "w_in": ours.input_weights, "w_rec": ours.recurrent_weights},
            {"input": xs, "w_in": n_w_in, "w_rec": n_w_rec},
            torch.float32,
        )


def test_default_initial_weights_follow_norse():
    """Without custom weights both draw randn(hidden, features), then randn(hidden, hidden),
    scaled by sqrt(2 / hidden): same seed, same weights (Norse computes the scale in float32,
    lifexport in float64 and rounds once, hence allclose)."""
    for ours_cls, norse_cls in (
        (lx.LIFRefracRecurrentCell, norse.LIFRefracRecurrentCell),
        (lx.LIFRefracRecurrent, norse.LIFRefracRecurrent),
    ):
        torch.manual_seed(6)
        ours = ours_cls(3, 7)
        torch.manual_seed(6)
        theirs = norse_cls(3, 7)
        torch.testing.assert_close(ours.input_weights, theirs.input_weights)
        torch.testing.assert_close(ours.recurrent_weights, theirs.recurrent_weights)
        assert (ours.recurrent_weights.diagonal() == 0).all()


# --- stacks ---------------------------------------------------------------------------------


def linear(features, out, dtype, gen, scale, bias=0.0):
    """A Linear layer with seeded weights ~ N(0, scale^2) and biases ~ N(bias, 0.1^2)."""
    layer = torch.nn.Linear(features, out, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(scale * torch.randn(out, features, generator=gen, dtype=dtype))
        layer.bias.copy_(bias + 0.1 * torch.randn(out, generator=gen, dtype=dtype))
    return layer


def linear_leaves(prefix, layer):
    return {f"{prefix}.{name}": t for name, t in layer.named_parameters()}


@pytest.mark.parametrize("autapses", [False, True], ids=["no_autapses", "autapses"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_sequential_state_of_sequence_layers_matches_norse(method, alpha, dtype, autapses):
    """Linear -> LIFRefrac -> Linear -> LIFRefracRecurrent, time-major, against the same
    layers composed by hand from Norse's modules (Norse has no LIFRefrac sequence layer:
    its cell runs in a Python loop). lifexport applies each Linear to the (T * B, ...)
    flattened sequence, Norse's hand-made stack to (T, B, ...): same products, same bits."""
    gen = torch.Generator().manual_seed(7)
    batch, features, h1, h2, h3 = 4, 6, 8, 5, 7
    values1 = neuron_values((h1,), dtype, gen, scalar=("v_leak",))
    values2 = neuron_values((h3,), dtype, gen, scalar=("v_leak",))
    p1, n_p1 = both_params(values1, method, alpha)
    p2, n_p2 = both_params(values2, method, alpha)
    lin1, lin2 = linear(features, h1, dtype, gen, 0.5), linear(h1, h2, dtype, gen, 0.5, 0.5)
    n_lin1, n_lin2 = copy.deepcopy(lin1), copy.deepcopy(lin2)
    w_in, w_rec = weights(h2, h3, dtype, gen)
    n_w_in, n_w_rec = norse_weights(w_in, w_rec)

    rec = lx.LIFRefracRecurrent(
        h2, h3, p2, input_weights=w_in, recurrent_weights=w_rec, autapses=autapses
    )
    ours = lx.SequentialState(lin1, lx.LIFRefrac(p1), lin2, rec)
    n_cell = norse.LIFRefracCell(n_p1)
    n_rec = norse.LIFRefracRecurrent(
        h2, h3, n_p2, input_weights=n_w_in, recurrent_weights=n_w_rec, autapses=autapses
    )
    xs = torch.rand((T, batch, features), generator=gen, dtype=dtype).requires_grad_()

    zs, state = ours(xs)
    h = n_lin1(xs)
    n_hidden, n_cell_state = run_steps(n_cell, h, None)[::2]
    n_zs, n_rec_state = n_rec(n_lin2(n_hidden))

    n_state = [None, n_cell_state, None, n_rec_state]
    assert state[0] is None and state[2] is None
    assert_same_run((zs, None, state), (n_zs, None, n_state))
    assert n_hidden.sum() > 0, "the first layer is silent: the test would prove little"

    leaves = {"input": xs, **linear_leaves("lin1", lin1), **linear_leaves("lin2", lin2)}
    leaves.update(w_in=rec.input_weights, w_rec=rec.recurrent_weights)
    n_leaves = {"input": xs, **linear_leaves("lin1", n_lin1), **linear_leaves("lin2", n_lin2)}
    n_leaves.update(w_in=n_w_in, w_rec=n_w_rec)
    assert_grads_close((zs, None, state), (n_zs, None, n_state), leaves, n_leaves, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,alpha", METHODS)
def test_time_loop_over_cell_stack_matches_norse_sequential_state(method, alpha, dtype):
    """TimeLoop(SequentialState(Linear, LIFRefracCell, LIFRefracRecurrentCell)) against a
    Python loop over ``norse.torch.SequentialState`` of the same layers."""
    gen = torch.Generator().manual_seed(8)
    batch, features, h1, h2 = 4, 6, 8, 7
    values1 = neuron_values((h1,), dtype, gen, scalar=("v_leak",))
    values2 = neuron_values((h2,), dtype, gen)
    p1, n_p1 = both_params(values1, method, alpha)
    p2, n_p2 = both_params(values2, method, alpha)
    lin = linear(features, h1, dtype, gen, 0.5)
    n_lin = copy.deepcopy(lin)
    w_in, w_rec = weights(h1, h2, dtype, gen)
    n_w_in, n_w_rec = norse_weights(w_in, w_rec)

    rec = lx.LIFRefracRecurrentCell(h1, h2, p2, input_weights=w_in, recurrent_weights=w_rec)
    stack = lx.SequentialState(lin, lx.LIFRefracCell(p1), rec)
    n_stack = norse.SequentialState(
        n_lin,
        norse.LIFRefracCell(n_p1),
        norse.LIFRefracRecurrentCell(h1, h2, n_p2, input_weights=n_w_in, recurrent_weights=n_w_rec),
    )
    xs = torch.rand((T, batch, features), generator=gen, dtype=dtype).requires_grad_()

    zs, state = lx.TimeLoop(stack)(xs)
    n_result = run_steps(n_stack, xs, None)
    assert_same_run((zs, None, state), n_result)
    # The stack stepped by hand records every step's state: equal to Norse's at each step.
    assert_same_run(run_steps(stack, xs, None), n_result)

    leaves = {"input": xs, **linear_leaves("lin", lin)}
    leaves.update(w_in=rec.input_weights, w_rec=rec.recurrent_weights)
    n_leaves = {"input": xs, **linear_leaves("lin", n_lin), "w_in": n_w_in, "w_rec": n_w_rec}
    assert_grads_close((zs, None, state), n_result, leaves, n_leaves, dtype)
