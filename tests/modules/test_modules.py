"""Module behaviour: parameters as buffers or trained parameters, dtype conversion,
checkpoints, the initial state, autapses, gradients of whole sequences, and bad input."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils._pytree import tree_leaves

import lifexport
import lifexport as lx
from lifexport.functional import LIFParameters, LIFRefracParameters, LIParameters

NAMES = ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset", "rho_reset")
FEATURES, HIDDEN = 3, 5


def per_neuron_p(n=HIDDEN, seed=0, method="super", alpha=1.0):
    """Per-neuron parameters, distinct from the defaults, that make neurons spike."""
    gen = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    lif = LIFParameters(
        tau_syn_inv=draw(150.0, 250.0),
        tau_mem_inv=draw(80.0, 120.0),
        v_leak=draw(-0.05, 0.05),
        v_th=draw(0.9, 1.1),
        v_reset=draw(-0.1, 0.1),
        method=method,
        alpha=alpha,
    )
    return LIFRefracParameters(lif, torch.randint(2, 7, (n,), generator=gen).float())


def weights(seed=0, features=FEATURES, hidden=HIDDEN):
    gen = torch.Generator().manual_seed(seed)
    w_in = 2.0 * torch.rand(hidden, features, generator=gen)
    w_rec = 0.5 * torch.randn(hidden, hidden, generator=gen)
    return dict(input_weights=w_in, recurrent_weights=w_rec)


# Each kind of module: a constructor taking (p, **kwargs) and an input of the right shape.
def cell(p=LIFRefracParameters(), **kwargs):
    return lx.LIFRefracCell(p, **kwargs)


def sequence(p=LIFRefracParameters(), **kwargs):
    return lx.LIFRefrac(p, **kwargs)


def recurrent_cell(p=LIFRefracParameters(), **kwargs):
    return lx.LIFRefracRecurrentCell(FEATURES, HIDDEN, p, **{**weights(), **kwargs})


def recurrent(p=LIFRefracParameters(), **kwargs):
    return lx.LIFRefracRecurrent(FEATURES, HIDDEN, p, **{**weights(), **kwargs})


MAKERS = {
    "LIFRefracCell": (cell, (4, HIDDEN)),
    "LIFRefrac": (sequence, (30, 4, HIDDEN)),
    "LIFRefracRecurrentCell": (recurrent_cell, (4, FEATURES)),
    "LIFRefracRecurrent": (recurrent, (30, 4, FEATURES)),
}
KINDS = list(MAKERS)


def make_input(kind, dtype=torch.float32, seed=1):
    shape = MAKERS[kind][1]
    return 3.0 * torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def step_input(kind, x):
    """One step's input: what ``initial_state`` takes."""
    return x[0] if MAKERS[kind][0] in (sequence, recurrent) else x


def outputs(module, x, state=None):
    """Spikes and every state tensor, flat."""
    z, state = module(x, state)
    return [z, *tree_leaves(state)]


def assert_equal_outputs(a, b):
    assert len(a) == len(b)
    for k, (u, v) in enumerate(zip(a, b)):
        assert torch.equal(u, v), f"output {k} differs"


# --- parameters, dtype, checkpoints ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_parameters_are_buffers_unless_trainable(kind):
    make = MAKERS[kind][0]
    module = make()
    buffers, params = dict(module.named_buffers()), dict(module.named_parameters())
    for name in NAMES:
        assert name in buffers and name not in params
        assert not buffers[name].requires_grad
    assert set(params) <= {"input_weights", "recurrent_weights"}  # weights are always learned

    module = make(trainable=("v_th", "tau_mem_inv"))
    buffers, params = dict(module.named_buffers()), dict(module.named_parameters())
    assert isinstance(module.v_th, torch.nn.Parameter)
    assert isinstance(module.tau_mem_inv, torch.nn.Parameter)
    assert {"v_th", "tau_mem_inv"} <= set(params)
    for name in set(NAMES) - {"v_th", "tau_mem_inv"}:
        assert name in buffers and name not in params


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_trainable_name_lists_valid_names(kind):
    with pytest.raises(ValueError, match=r"unknown parameters \['v_thresh'\]") as info:
        MAKERS[kind][0](trainable=("v_th", "v_thresh"))
    for name in NAMES:
        assert repr(name) in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
def test_to_float64_converts_buffers_and_runs_float64(kind):
    make = MAKERS[kind][0]
    module = make(per_neuron_p(), trainable=("v_th",)).to(torch.float64)
    for name, t in [*module.named_buffers(), *module.named_parameters()]:
        assert t.dtype == torch.float64, name
    x = make_input(kind, torch.float64)
    for t in outputs(module, x):
        assert t.dtype == torch.float64
    # nothing is converted silently: a float32 module refuses float64 input
    with pytest.raises(TypeError, match=r"float32 but the input has torch\.float64"):
        make(per_neuron_p())(x)


@pytest.mark.parametrize("trainable", [(), NAMES], ids=["buffers", "trainable"])
@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip_reproduces_outputs(kind, trainable):
    """A fresh module built with parameters of the same shapes (per neuron) loads the state
    dict and computes the same bits. method, alpha and dt are constructor arguments, not
    state: the fresh module must be built with the same ones."""
    make = MAKERS[kind][0]
    module = make(per_neuron_p(seed=2), trainable=trainable)
    fresh = make(per_neuron_p(seed=3), **weights(seed=4) if "Recurrent" in kind else {})
    x = make_input(kind)
    assert any(not torch.equal(a, b) for a, b in zip(outputs(module, x), outputs(fresh, x)))
    fresh.load_state_dict(module.state_dict())
    assert_equal_outputs(outputs(fresh, x), outputs(module, x))
    assert "autapse_mask" not in module.state_dict()  # derived from `autapses`, not saved


@pytest.mark.parametrize("kind", KINDS)
def test_scalar_parameters_state_dict_round_trip(kind):
    make = MAKERS[kind][0]
    p = LIFRefracParameters(LIFParameters(tau_mem_inv=150.0, v_th=0.8), rho_reset=3.0)
    module, fresh = make(p), make(**weights(seed=4) if "Recurrent" in kind else {})
    fresh.load_state_dict(module.state_dict())
    x = make_input(kind)
    assert_equal_outputs(outputs(fresh, x), outputs(module, x))


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip_on_disk(kind, tmp_path):
    make = MAKERS[kind][0]
    module = make(per_neuron_p(seed=5), trainable=("v_th",))
    path = tmp_path / "checkpoint.pt"
    torch.save(module.state_dict(), path)
    fresh = make(per_neuron_p(seed=6), trainable=("v_th",))
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = make_input(kind)
    assert_equal_outputs(outputs(fresh, x), outputs(module, x))


# --- initial state --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per_neuron"])
@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_is_rest(kind, per_neuron, dtype):
    """v = v_leak, i = 0, rho = 0 (and z = 0), in the input's dtype, not requiring grad even
    when v_leak is trained; forward with state=None starts from exactly this state."""
    make = MAKERS[kind][0]
    v_leak = torch.linspace(-0.5, 0.5, HIDDEN) if per_neuron else torch.tensor(-0.25)
    p = LIFRefracParameters(LIFParameters(v_leak=v_leak))
    module = make(p, trainable=("v_leak",)).to(dtype)
    x = make_input(kind, dtype)
    state = module.initial_state(step_input(kind, x))
    neurons = (4, HIDDEN)
    fields = {"v": state.lif.v, "i": state.lif.i, "rho": state.rho}
    if "Recurrent" in kind:
        fields["z"] = state.lif.z
    for name, t in fields.items():
        assert t.shape == neurons, name
        assert t.dtype == dtype, name
        assert not t.requires_grad, name
        expected = v_leak.to(dtype).expand(neurons) if name == "v" else torch.zeros(neurons)
        assert torch.equal(t, expected.to(dtype)), name
    assert_equal_outputs(outputs(module, x), outputs(module, x, state))


# --- autapses -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["LIFRefracRecurrentCell", "LIFRefracRecurrent"])
def test_autapses_false_zeroes_and_masks_the_diagonal(kind):
    make = MAKERS[kind][0]
    w = weights()
    w_rec = w["recurrent_weights"].clone()
    module = make(per_neuron_p())
    assert (module.recurrent_weights.diagonal() == 0).all()
    assert torch.equal(w["recurrent_weights"], w_rec), "the caller's weights were modified"
    torch.testing.assert_close(
        module.recurrent_weights, w_rec * (1 - torch.eye(HIDDEN)), rtol=0, atol=0
    )

    # A state dict whose diagonal is non-zero (e.g. saved with autapses=True) stays inert.
    with_autapses = make(per_neuron_p(), autapses=True)
    assert (with_autapses.recurrent_weights.diagonal() != 0).all()
    module.load_state_dict(with_autapses.state_dict())
    assert (module.recurrent_weights.diagonal() != 0).all()
    without = make(per_neuron_p())
    xs = make_input("LIFRefracRecurrent")  # (T, B, features): recurrence needs a few steps
    assert_equal_outputs(run_forward(module, xs), run_forward(without, xs))
    # ... where it would have acted: the network with autapses computes something else.
    assert not torch.equal(run_forward(with_autapses, xs)[0], run_forward(without, xs)[0])

    zs, *final = run_forward(module, xs)
    (zs.sum() + sum(t.sum() for t in final)).backward()
    grad = module.recurrent_weights.grad
    assert (grad.diagonal() == 0).all()
    assert (grad != 0).sum() > HIDDEN, "no gradient at all: the test would prove nothing"


def run_forward(module, xs):
    """A sequence layer's forward, or the cell's forward in a loop over ``xs``: spikes of
    every step and the final state's tensors, flat."""
    if module.is_sequence:
        return outputs(module, xs)
    state, zs = None, []
    for x in xs:
        z, state = module(x, state)
        zs.append(z)
    return [torch.stack(zs), *tree_leaves(state)]


# --- gradients of a sequence == gradients of a loop over the cell ---------------------------


@pytest.mark.parametrize("method,alpha", [("super", 1.0), ("triangle", 1.0), ("tanh", 2.0)])
@pytest.mark.parametrize(
    "seq_kind,cell_kind",
    [("LIFRefrac", "LIFRefracCell"), ("LIFRefracRecurrent", "LIFRefracRecurrentCell")],
)
def test_sequence_gradients_equal_a_loop_over_the_cell(seq_kind, cell_kind, method, alpha):
    """Eager: the sequence layer's forward and a Python loop over the cell, same parameters
    (the cell loads the sequence layer's state dict), give the same spikes, state and
    gradients w.r.t. input, initial state, weights and every neuron parameter."""
    p = per_neuron_p(method=method, alpha=alpha)
    seq = MAKERS[seq_kind][0](p, trainable=NAMES)
    step = MAKERS[cell_kind][0](p, trainable=NAMES)
    step.load_state_dict(seq.state_dict())
    x = make_input(seq_kind).requires_grad_()
    s0 = seq.initial_state(x[0])
    s0 = s0._replace(lif=s0.lif._replace(v=s0.lif.v + 0.3, i=s0.lif.i + 0.3), rho=s0.rho + 2)
    leaves = [t.requires_grad_() for t in tree_leaves(s0)]

    zs, final = seq(x, s0)
    state, n_zs = s0, []
    for x_t in x:
        z, state = step(x_t, state)
        n_zs.append(z)
    n_zs = torch.stack(n_zs)
    assert torch.equal(zs, n_zs) and 0 < zs.sum() < zs.numel()
    assert_equal_outputs(tree_leaves(final), tree_leaves(state))

    weights_ = torch.rand(zs.shape, generator=torch.Generator().manual_seed(0))

    def grads(module, zs, final):
        loss = (zs * weights_).sum() + sum(t.sum() for t in tree_leaves(final))
        return torch.autograd.grad(loss, [x, *leaves, *module.parameters()])

    for g, ng in zip(grads(seq, zs, final), grads(step, n_zs, state), strict=True):
        assert torch.equal(g, ng)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,shape,axes",
    [
        ("LIFRefrac", (5,), "(time, batch, ...)"),
        ("LIFRefracRecurrent", (FEATURES,), f"(time, [batch, ]{FEATURES})"),
        ("LIFRefracRecurrentCell", (), f"([batch, ]{FEATURES})"),
        ("LIFRefracCell", (), "(batch, ...)"),
    ],
)
def test_missing_time_or_batch_axis(kind, shape, axes):
    module = MAKERS[kind][0]()
    got = re.escape(str(tuple(shape)))
    with pytest.raises(ValueError, match=rf"input must have shape {re.escape(axes)}.*got {got}"):
        module(torch.ones(shape))


@pytest.mark.parametrize(
    "kind,shape", [("LIFRefracRecurrentCell", (4, 7)), ("LIFRefracRecurrent", (10, 4, 7))]
)
def test_feature_size_mismatch(kind, shape):
    module = MAKERS[kind][0]()
    with pytest.raises(
        ValueError, match=rf"input must have {FEATURES} features.*{re.escape(str(shape))}"
    ):
        module(torch.ones(shape))


@pytest.mark.parametrize("kind", KINDS)
def test_state_from_another_batch_size(kind):
    """A state from batch 4 fed with a batch of 3."""
    module = MAKERS[kind][0]()
    x4 = make_input(kind)
    _, state = module(x4)
    x3 = x4[:, :3] if module.is_sequence else x4[:3]
    first = "state.lif.z" if "Recurrent" in kind else "state.lif.v"
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(first)} must have shape \(3, {HIDDEN}\).*got \(4, {HIDDEN}\)",
    ):
        module(x3, state)


@pytest.mark.parametrize("kind", KINDS)
def test_state_of_the_wrong_type(kind):
    module = MAKERS[kind][0]()
    x = make_input(kind)
    with pytest.raises(TypeError, match=r"state must be a LIFRefrac\w*State, got Tensor"):
        module(x, torch.zeros(4, HIDDEN))
    # The other kind of neuron's state: recurrent (z, v, i) for feed-forward (v, i) and back.
    if "Recurrent" in kind:
        _, other_state = cell()(torch.ones(4, HIDDEN))
    else:
        _, other_state = recurrent_cell()(torch.ones(4, FEATURES))
    with pytest.raises(TypeError, match=r"state\.lif must be a LIF\w*State, got LIF\w*State"):
        module(x, other_state)


def test_sequential_state_rejects_unsupported_layers():
    with pytest.raises(ValueError, match=r"layer 1 \(LSTM\) is not supported.*Linear"):
        lx.SequentialState(torch.nn.Linear(3, 4), torch.nn.LSTM(4, 4), lx.LIFRefrac())


def test_sequential_state_rejects_cells_mixed_with_sequence_layers():
    with pytest.raises(ValueError, match=r"either cells .* not both.*LIFRefracCell.*LIFRefrac'"):
        lx.SequentialState(lx.LIFRefracCell(), torch.nn.Linear(4, 4), lx.LIFRefrac())


@pytest.mark.parametrize("sequence_mode", [False, True], ids=["cells", "sequence"])
def test_sequential_state_rejects_a_state_of_the_wrong_length(sequence_mode):
    layers = (lx.LIFRefrac(), torch.nn.Linear(4, 4), lx.LIFRefrac())
    if not sequence_mode:
        layers = (lx.LIFRefracCell(), torch.nn.Linear(4, 4), lx.LIFRefracCell())
    net = lx.SequentialState(*layers)
    x = torch.ones((6, 2, 4) if sequence_mode else (2, 4))
    _, state = net(x)
    assert len(state) == 3
    with pytest.raises(ValueError, match=r"one entry per layer \(3\), got 2 entries"):
        net(x, state[:2])
    with pytest.raises(ValueError, match=r"one entry per layer \(3\), got .*Tensor"):
        net(x, torch.zeros(2, 4))


def test_sequential_state_and_time_loop_need_a_time_axis():
    net = lx.SequentialState(torch.nn.Linear(4, 4), lx.LIFRefrac())
    with pytest.raises(
        ValueError, match=r"input must have shape \(time, batch, \.\.\.\) .*got \(4,\)"
    ):
        net(torch.ones(4))
    loop = lx.TimeLoop(lx.LIFRefracCell())
    with pytest.raises(
        ValueError, match=r"input must have shape \(time, batch, \.\.\.\) .*got \(4,\)"
    ):
        loop(torch.ones(4))
    with pytest.raises(ValueError, match=r"TimeLoop needs a module with step\(\).*got Linear"):
        lx.TimeLoop(torch.nn.Linear(4, 4))


@pytest.mark.parametrize("kind", ["LIFRefracRecurrentCell", "LIFRefracRecurrent"])
@pytest.mark.parametrize(
    "name,shape",
    [
        ("input_weights", (FEATURES, HIDDEN)),
        ("input_weights", (HIDDEN,)),
        ("recurrent_weights", (HIDDEN, HIDDEN + 1)),
    ],
)
def test_wrong_custom_weight_shapes(kind, name, shape):
    cls = getattr(lx, kind)
    expected = (HIDDEN, FEATURES) if name == "input_weights" else (HIDDEN, HIDDEN)
    with pytest.raises(
        ValueError,
        match=rf"{name} must be a tensor of shape {re.escape(str(expected))}, "
        rf"got {re.escape(str(shape))}",
    ):
        cls(FEATURES, HIDDEN, **{name: torch.ones(shape)})
    with pytest.raises(ValueError, match=rf"{name} must be a tensor of shape .*got list"):
        cls(FEATURES, HIDDEN, **{name: [[1.0] * expected[1]] * expected[0]})


@pytest.mark.parametrize("kind", ["LIFRefracRecurrentCell", "LIFRefracRecurrent"])
@pytest.mark.parametrize(
    "sizes,name,value",
    [
        ((0, 5), "input_size", "0"),
        ((3, 0), "hidden_size", "0"),
        ((3, -2), "hidden_size", "-2"),
        ((3.0, 5), "input_size", "3.0"),
        ((True, 5), "input_size", "True"),
    ],
)
def test_non_positive_sizes(kind, sizes, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be a positive int, got {value}"):
        getattr(lx, kind)(*sizes)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dt", [0.0, -0.001, float("nan")])
def test_non_positive_dt(kind, dt):
    with pytest.raises(ValueError, match=rf"dt must be a positive, finite number.*got {dt}"):
        MAKERS[kind][0](dt=dt)


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_method(kind):
    p = LIFRefracParameters(LIFParameters(method="sigmoid"))
    with pytest.raises(ValueError, match=r"p\.method must be one of .*'triangle'.*got 'sigmoid'"):
        MAKERS[kind][0](p)


@pytest.mark.parametrize(
    "model",
    [
        lx.LIFRefrac(),
        lx.LIFRefracRecurrent(3, 4),
        lx.SequentialState(torch.nn.Linear(3, 3), lx.LIFRefrac()),
        lx.TimeLoop(lx.LIFRefracCell()),
    ],
    ids=lambda m: type(m).__name__,
)
def test_empty_time_axis_is_a_clear_error(model):
    with pytest.raises(ValueError, match=r"no time steps: shape \(0, 2, 3\)"):
        model(torch.zeros(0, 2, 3))


def test_parameters_share_the_default_dtype():
    """Parameters take the (promoted) dtype of the given tensors, else torch's default: a
    float64 tensor among floats does not leave the module with mixed dtypes."""
    p = LIFRefracParameters(LIFParameters(v_th=torch.tensor([1.0, 2.0], dtype=torch.float64)))
    cell = lx.LIFRefracCell(p)
    assert {t.dtype for t in cell.parameter_values().values()} == {torch.float64}
    assert {t.dtype for t in lx.LIFRefracCell().parameter_values().values()} == {torch.float32}
    assert cell.float().v_th.dtype == torch.float32


# -- parameter values at construction ---------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_MODULE_VALUES = [
    (lambda v: lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(tau_mem_inv=v))),
     "p.tau_mem_inv", "positive and finite", (0.0, -1.0, NAN, INF)),
    (lambda v: lifexport.LIFRefracRecurrent(2, 3, LIFRefracParameters(LIFParameters(tau_syn_inv=v))),
     "p.tau_syn_inv", "positive and finite", (0.0, NAN)),
    (lambda v: lifexport.LIF(LIFParameters(v_th=v)), "p.v_th", "finite", (NAN, INF)),
    (lambda v: lifexport.LIFRefracCell(LIFRefracParameters(rho_reset=v)),
     "p.rho_reset", ">= 0 and finite", (-1.0, NAN)),
    (lambda v: lifexport.LI(LIParameters(tau_mem_inv=v)), "p.tau_mem_inv", "positive and finite",
     (0.0, NAN)),
    (lambda v: lifexport.LIFRefrac(LIFRefracParameters(LIFParameters(alpha=v))),
     "p.alpha", "a positive, finite number", (0.0, -2.0, NAN)),
]


@pytest.mark.parametrize(
    ("make", "name", "must", "value"),
    [(make, name, must, v) for make, name, must, values in BAD_MODULE_VALUES for v in values],
    ids=lambda a: a if isinstance(a, str) else repr(a) if isinstance(a, float) else "",
)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_bad_parameter_value_is_rejected_at_construction(make, name, must, value, as_tensor):
    if as_tensor:  # one bad neuron among good ones (alpha: one number per layer)
        value = torch.tensor(value) if name == "p.alpha" else torch.tensor([1.0, value, 2.0])
    with pytest.raises(ValueError, match=rf"{re.escape(name)} must be {re.escape(must)}, got"):
        make(value)


def test_parameter_that_turns_bad_after_construction_is_caught_at_the_next_call() -> None:
    # e.g. a trained tau_mem_inv pushed below zero by an optimizer step
    model = lifexport.LIFRefrac(trainable=("tau_mem_inv",))
    model(torch.rand(3, 2, 4))
    with torch.no_grad():
        model.tau_mem_inv.fill_(-1.0)
    with pytest.raises(ValueError, match=r"p.tau_mem_inv must be positive and finite, got"):
        model(torch.rand(3, 2, 4))
    cell = lifexport.LIFRefracCell()
    cell.v_th.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"p.v_th must be finite, got"):
        cell(torch.rand(2, 4))
