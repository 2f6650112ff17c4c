"""Bad inputs to the functional steps and to ``threshold`` give clear errors.

Each error must name the argument, say what was expected and show what was received; the
tests match both the argument's name and the received value (or shape, dtype, type).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

from lifexport.functional import (
    METHODS,
    LIFFeedForwardState,
    LIFParameters,
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    LIFRefracState,
    LIFState,
    LIParameters,
    LIState,
    compute_refractory_update,
    li_feed_forward_step,
    li_step,
    lif_feed_forward_step,
    lif_refrac_feed_forward_step,
    lif_refrac_step,
    lif_step,
    threshold,
)

B, N, F = 3, 4, 2  # batch, neurons (hidden), input features of the recurrent steps
STEPS: dict[str, Callable] = {
    "lif_refrac_feed_forward_step": lif_refrac_feed_forward_step,
    "lif_refrac_step": lif_refrac_step,
    "lif_feed_forward_step": lif_feed_forward_step,
    "lif_step": lif_step,
}
RECURRENT = ("lif_refrac_step", "lif_step")
REFRAC = ("lif_refrac_feed_forward_step", "lif_refrac_step")
# the state fields of each step, as the error messages name them
STATE_FIELDS = {
    "lif_refrac_feed_forward_step": ("state.lif.v", "state.lif.i", "state.rho"),
    "lif_refrac_step": ("state.lif.z", "state.lif.v", "state.lif.i", "state.rho"),
    "lif_feed_forward_step": ("state.v", "state.i"),
    "lif_step": ("state.z", "state.v", "state.i"),
}
STEP_FIELDS = [(step, field) for step, fields in STATE_FIELDS.items() for field in fields]


def _params(step: str, **lif: Any) -> LIFParameters | LIFRefracParameters:
    """Parameters of ``step`` with the given LIF fields (``rho_reset`` for refractory steps)."""
    rho_reset = lif.pop("rho_reset", 5.0)
    p = LIFParameters(**lif)
    return LIFRefracParameters(p, rho_reset) if step in REFRAC else p


def _state(step: str, shape: tuple[int, ...], **bad: torch.Tensor) -> Any:
    """A zero state of ``shape`` for ``step``, with the fields in ``bad`` replaced.

    ``bad`` maps a field's message name without the ``state.`` prefix and with ``_`` for ``.``
    (``lif_v``, ``rho``, ``v``) to the tensor to put there.
    """
    t = {f: torch.zeros(shape) for f in ("z", "v", "i", "rho")}
    t.update({k.removeprefix("lif_"): v for k, v in bad.items()})
    if step == "lif_refrac_feed_forward_step":
        return LIFRefracFeedForwardState(LIFFeedForwardState(t["v"], t["i"]), t["rho"])
    if step == "lif_refrac_step":
        return LIFRefracState(LIFState(t["z"], t["v"], t["i"]), t["rho"])
    if step == "lif_feed_forward_step":
        return LIFFeedForwardState(t["v"], t["i"])
    return LIFState(t["z"], t["v"], t["i"])


def _kwargs(step: str, **overrides: Any) -> dict[str, Any]:
    """Valid keyword arguments of ``step`` for neurons of shape (B, N), then ``overrides``."""
    kw: dict[str, Any] = {"p": _params(step), "dt": 0.001}
    if step in RECURRENT:
        kw["input_tensor"] = torch.zeros(B, F)
        kw["input_weights"] = torch.zeros(N, F)
        kw["recurrent_weights"] = torch.zeros(N, N)
    else:
        kw["input_tensor"] = torch.zeros(B, N)
    kw["state"] = _state(step, (B, N))
    kw.update(overrides)
    return kw


def _field_key(field: str) -> str:
    """``state.lif.v`` -> ``lif_v``: the key of :func:`_state`'s ``bad``."""
    return field.removeprefix("state.").replace(".", "_")


@pytest.mark.parametrize("step", STEPS)
def test_valid_arguments_pass(step: str) -> None:
    # the baseline every other test breaks in exactly one place
    z, _ = STEPS[step](**_kwargs(step))
    assert z.shape == (B, N)


# -- method ---------------------------------------------------------------------------------

VALID_NAMES = re.escape(", ".join(map(repr, METHODS)))


@pytest.mark.parametrize("method", ["nope", "Super", "", "tent"])
def test_threshold_rejects_unknown_method(method: str) -> None:
    with pytest.raises(ValueError, match=rf"method must be one of {VALID_NAMES}; got {method!r}"):
        threshold(torch.zeros(3), method, 1.0)


@pytest.mark.parametrize("step", STEPS)
def test_step_rejects_unknown_method(step: str) -> None:
    kw = _kwargs(step, p=_params(step, method="nope"))
    with pytest.raises(ValueError, match=rf"method must be one of {VALID_NAMES}; got 'nope'"):
        STEPS[step](**kw)


def test_refrac_feed_forward_rejects_unknown_method_in_nested_parameters() -> None:
    # spelled out as a user would write it
    p = LIFRefracParameters(LIFParameters(method="nope"))
    lif_state = LIFFeedForwardState(torch.zeros(2), torch.zeros(2))
    s = LIFRefracFeedForwardState(lif_state, torch.zeros(2))
    with pytest.raises(ValueError, match=r"method must be one of .*'super'.*; got 'nope'"):
        lif_refrac_feed_forward_step(torch.zeros(2), s, p)


# -- state shapes ---------------------------------------------------------------------------

# Shapes that do not broadcast to the neurons' (B, N) = (3, 4).
BAD_STATE_SHAPES = [(N, B), (B, N, 1), (2, B, N), (B, N + 1), (2,)]
# Shapes that broadcast to (B, N): accepted and expanded, as Norse's arithmetic does.
BROADCAST_STATE_SHAPES = [(), (N,), (1, N), (B, 1), (1, 1)]


@pytest.mark.parametrize(("step", "field"), STEP_FIELDS)
@pytest.mark.parametrize("shape", BAD_STATE_SHAPES, ids=str)
def test_state_of_another_shape_is_rejected(step: str, field: str, shape: tuple) -> None:
    kw = _kwargs(step, state=_state(step, (B, N), **{_field_key(field): torch.zeros(shape)}))
    expected = re.escape(
        f"{field} must have shape {(B, N)} to match the input (or broadcast to it), got {shape}"
    )
    with pytest.raises(ValueError, match=expected):
        STEPS[step](**kw)


@pytest.mark.parametrize(("step", "field"), STEP_FIELDS)
@pytest.mark.parametrize("shape", BROADCAST_STATE_SHAPES, ids=str)
def test_state_that_broadcasts_is_expanded(step: str, field: str, shape: tuple) -> None:
    # The same step from the explicitly expanded state is the reference; the new state has
    # the neurons' full shape.
    torch.manual_seed(0)
    value = torch.rand(shape) * 2.0
    kw = _kwargs(step, state=_state(step, (B, N), **{_field_key(field): value}))
    kw["input_tensor"] = torch.rand(kw["input_tensor"].shape) * 3.0
    full = _kwargs(step, state=_state(step, (B, N), **{_field_key(field): value.expand(B, N)}))
    full["input_tensor"] = kw["input_tensor"]
    z, state = STEPS[step](**kw)
    z_ref, state_ref = STEPS[step](**full)
    assert torch.equal(z, z_ref)
    for t, t_ref in zip(_leaves(state), _leaves(state_ref)):
        assert t.shape == (B, N)
        assert torch.equal(t, t_ref)


def _leaves(state: Any) -> list[torch.Tensor]:
    return torch.utils._pytree.tree_leaves(state)


@pytest.mark.parametrize(("step", "field"), STEP_FIELDS)
def test_state_that_is_not_a_tensor_is_rejected(step: str, field: str) -> None:
    kw = _kwargs(step, state=_state(step, (B, N), **{_field_key(field): [0.0] * N}))
    with pytest.raises(TypeError, match=rf"{re.escape(field)} must be a torch.Tensor, got list"):
        STEPS[step](**kw)


# -- input_tensor ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64], ids=str
)
def test_non_floating_input_is_a_type_error(step: str, dtype: torch.dtype) -> None:
    x = _kwargs(step)["input_tensor"].to(dtype)
    expected = rf"input_tensor must be a floating-point tensor, got dtype {re.escape(str(dtype))}"
    with pytest.raises(TypeError, match=expected):
        STEPS[step](**_kwargs(step, input_tensor=x))


@pytest.mark.parametrize("step", STEPS)
def test_input_that_is_not_a_tensor_is_a_type_error(step: str) -> None:
    x = _kwargs(step)["input_tensor"].tolist()
    with pytest.raises(TypeError, match=r"input_tensor must be a torch.Tensor, got list"):
        STEPS[step](**_kwargs(step, input_tensor=x))


@pytest.mark.parametrize("step", STEPS)
def test_zero_dimensional_input_is_rejected(step: str) -> None:
    with pytest.raises(ValueError, match=r"input_tensor must have at least 1 .* got shape \(\)"):
        STEPS[step](**_kwargs(step, input_tensor=torch.tensor(0.0)))


# -- dt -------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("dt", [0, 0.0, -0.001, -1, math.nan, math.inf, -math.inf], ids=repr)
def test_non_positive_or_non_finite_dt_is_a_value_error(step: str, dt: float) -> None:
    expected = rf"dt must be a positive, finite number of seconds, got {re.escape(str(dt))}$"
    with pytest.raises(ValueError, match=expected):
        STEPS[step](**_kwargs(step, dt=dt))


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize(
    ("dt", "type_name"),
    [("0.001", "str"), (None, "NoneType"), (True, "bool"), (torch.tensor(0.001), "Tensor")],
    ids=["str", "None", "bool", "tensor"],
)
def test_dt_that_is_not_a_number_is_a_type_error(step: str, dt: Any, type_name: str) -> None:
    expected = rf"dt must be a positive number of seconds, got {type_name}"
    with pytest.raises(TypeError, match=expected):
        STEPS[step](**_kwargs(step, dt=dt))


# -- weights of the recurrent steps ---------------------------------------------------------


# input (B, F) = (3, 2), hidden N = 4: valid weights are (4, 2) and (4, 4)
@pytest.mark.parametrize("step", RECURRENT)
@pytest.mark.parametrize(
    ("w_in", "w_rec", "expected"),
    [
        (
            (2,),
            (4, 4),
            r"input_weights must be a 2-D tensor \(hidden, features\), got shape \(2,\)",
        ),
        ((8,), (4, 4), r"input_weights must be a 2-D .*got shape \(8,\)"),
        ((1, 4, 2), (4, 4), r"input_weights must be a 2-D .*got shape \(1, 4, 2\)"),
        (
            (4, 2),
            (4,),
            r"recurrent_weights must be a 2-D tensor \(hidden, hidden\), got shape \(4,\)",
        ),
        ((4, 3), (4, 4), r"input_weights must have shape \(hidden, 2\) .*got \(4, 3\)"),
        ((2, 4), (4, 4), r"input_weights must have shape \(hidden, 2\) .*got \(2, 4\)"),
        ((4, 2), (4, 5), r"recurrent_weights must have shape \(4, 4\) .*got \(4, 5\)"),
        ((4, 2), (5, 5), r"recurrent_weights must have shape \(4, 4\) .*got \(5, 5\)"),
    ],
    ids=["1-D in", "flat in", "3-D in", "1-D rec", "features", "transposed", "nonsquare", "hidden"],
)
def test_recurrent_step_rejects_bad_weight_shapes(
    step: str, w_in: tuple, w_rec: tuple, expected: str
) -> None:
    kw = _kwargs(step, input_weights=torch.zeros(w_in), recurrent_weights=torch.zeros(w_rec))
    with pytest.raises(ValueError, match=expected):
        STEPS[step](**kw)


# -- per-neuron parameters ------------------------------------------------------------------

NEURONS = (2, 5)
LIF_FIELDS = ("tau_syn_inv", "tau_mem_inv", "v_leak", "v_th", "v_reset")


def _neuron_kwargs(step: str, p: Any) -> dict[str, Any]:
    """Valid arguments of ``step`` for neurons of shape NEURONS, with parameters ``p``."""
    kw: dict[str, Any] = {"p": p, "dt": 0.001, "state": _state(step, NEURONS)}
    if step in RECURRENT:
        kw["input_tensor"] = torch.zeros(NEURONS[0], F)
        kw["input_weights"] = torch.zeros(NEURONS[1], F)
        kw["recurrent_weights"] = torch.zeros(NEURONS[1], NEURONS[1])
    else:
        kw["input_tensor"] = torch.zeros(NEURONS)
    return kw


# (step, field, the name the message gives it)
PARAM_FIELDS = [
    (step, field, f"p.lif.{field}" if step in REFRAC else f"p.{field}")
    for step in STEPS
    for field in LIF_FIELDS
] + [(step, "rho_reset", "p.rho_reset") for step in REFRAC]


@pytest.mark.parametrize(("step", "field", "name"), PARAM_FIELDS)
@pytest.mark.parametrize("shape", [(7,), (3, 2, 5), (2, 5, 1), (5, 2), (1, 1, 5)], ids=str)
def test_parameter_that_does_not_fit_the_neurons_is_rejected(
    step: str, field: str, name: str, shape: tuple
) -> None:
    kw = _neuron_kwargs(step, _params(step, **{field: torch.ones(shape)}))
    expected = re.escape(f"{name} of shape {shape} does not broadcast to the neuron shape (2, 5)")
    with pytest.raises(ValueError, match=expected):
        STEPS[step](**kw)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (1, 5), (2, 1), (2, 5)], ids=str)
def test_parameter_that_broadcasts_to_the_neurons_is_accepted(step: str, shape: tuple) -> None:
    # the counterpart of the test above: these shapes must keep working
    kw = _neuron_kwargs(step, _params(step, v_th=torch.ones(shape), rho_reset=torch.ones(shape)))
    z, _ = STEPS[step](**kw)
    assert z.shape == NEURONS


# -- alpha ----------------------------------------------------------------------------------

SURROGATE_METHODS = [m for m in METHODS if m != "heaviside"]


@pytest.mark.parametrize("method", SURROGATE_METHODS)
@pytest.mark.parametrize("shape", [(2,), (1, 3), (0,)], ids=str)
def test_threshold_rejects_alpha_of_several_elements(method: str, shape: tuple) -> None:
    expected = re.escape("alpha must be a number or a one-element tensor") + (
        rf".*got a tensor of shape {re.escape(str(shape))}"
    )
    with pytest.raises(ValueError, match=expected):
        threshold(torch.zeros(3), method, torch.ones(shape))


@pytest.mark.parametrize("step", STEPS)
def test_step_rejects_alpha_of_several_elements(step: str) -> None:
    kw = _kwargs(step, p=_params(step, alpha=torch.tensor([1.0, 2.0])))
    with pytest.raises(ValueError, match=r"alpha must be a number or a one-element .*\(2,\)"):
        STEPS[step](**kw)


@pytest.mark.parametrize("method", SURROGATE_METHODS)
@pytest.mark.parametrize(
    ("alpha", "type_name"), [("100", "str"), (None, "NoneType"), (True, "bool")]
)
def test_threshold_rejects_alpha_that_is_not_a_number(
    method: str, alpha: Any, type_name: str
) -> None:
    with pytest.raises(TypeError, match=rf"alpha must be a positive number, got {type_name}"):
        threshold(torch.zeros(3), method, alpha)


@pytest.mark.parametrize("step", STEPS)
def test_step_rejects_alpha_that_is_a_string(step: str) -> None:
    kw = _kwargs(step, p=_params(step, alpha="100"))
    with pytest.raises(TypeError, match=r"alpha must be a positive number, got str"):
        STEPS[step](**kw)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -math.inf, 0.0, -1.0], ids=repr)
def test_threshold_rejects_alpha_that_is_not_positive_and_finite(alpha: float) -> None:
    expected = rf"alpha must be a positive, finite number, got {re.escape(str(alpha))}"
    with pytest.raises(ValueError, match=expected):
        threshold(torch.zeros(3), "super", alpha)
    with pytest.raises(ValueError, match=expected):  # a tensor, in eager mode
        threshold(torch.zeros(3), "super", torch.tensor(alpha))


# -- parameter values -----------------------------------------------------------------------

# (field, bad value, what the message says it must be); rho_reset only for refractory steps.
BAD_VALUES = [
    *[(f, v, "positive and finite") for f in ("tau_syn_inv", "tau_mem_inv")
      for v in (0.0, -100.0, math.nan, math.inf)],
    *[(f, v, "finite") for f in ("v_th", "v_leak", "v_reset") for v in (math.nan, math.inf)],
    *[("rho_reset", v, ">= 0 and finite") for v in (-1.0, math.nan, math.inf)],
]


def _bad_parameters(step: str, field: str, value: Any) -> Any:
    if field == "rho_reset":
        return _params(step, rho_reset=value)
    return _params(step, **{field: value})


@pytest.mark.parametrize(("field", "value", "must"), BAD_VALUES, ids=str)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
@pytest.mark.parametrize("step", STEPS)
def test_parameter_with_a_bad_value_is_rejected(
    step: str, field: str, value: float, must: str, as_tensor: bool
) -> None:
    if field == "rho_reset" and step not in REFRAC:
        pytest.skip("rho_reset is a parameter of the refractory steps only")
    if as_tensor:  # per neuron, one bad neuron among good ones
        value = torch.tensor([1.0, 2.0, value, 3.0])
    kw = _kwargs(step, p=_bad_parameters(step, field, value))
    prefix = "p.lif." if step in REFRAC and field != "rho_reset" else "p."
    with pytest.raises(ValueError, match=rf"{re.escape(prefix + field)} must be {must}, got"):
        STEPS[step](**kw)


@pytest.mark.parametrize("step", STEPS)
def test_parameter_values_at_the_edge_are_accepted(step: str) -> None:
    # rho_reset 0 (no refractory period) and negative potentials are valid.
    kw = _kwargs(step, p=_params(step, v_leak=-0.5, v_reset=-1.0, v_th=-0.1, rho_reset=0.0))
    STEPS[step](**kw)


@pytest.mark.parametrize("step", STEPS)
def test_check_values_false_leaves_tensor_values_to_the_caller(step: str) -> None:
    # what modules do inside their time loops, having checked their parameters once per call
    kw = _kwargs(step, p=_params(step, v_th=torch.tensor([1.0, math.nan, 1.0, 1.0])))
    STEPS[step](**kw, check_values=False)
    kw = _kwargs(step, p=_params(step, v_th=math.nan))  # a Python number: always checked
    with pytest.raises(ValueError, match=r"v_th must be finite, got nan"):
        STEPS[step](**kw, check_values=False)


# -- the parameter tuple itself -------------------------------------------------------------

# For each step, a parameter tuple of another neuron, and what the error must say. LI's
# parameters are the mirror mistake: LIF's fields minus threshold and reset.
WRONG_PARAMETERS = [
    (
        "lif_refrac_feed_forward_step",
        LIFParameters(),
        r"^p must be a LIFRefracParameters, got LIFParameters; wrap it: "
        r"LIFRefracParameters\(lif=p, \.\.\.\)$",
    ),
    (
        "lif_refrac_step",
        LIFParameters(),
        r"^p must be a LIFRefracParameters, got LIFParameters; wrap it",
    ),
    (
        "lif_feed_forward_step",
        LIFRefracParameters(),
        r"^p must be a LIFParameters, got LIFRefracParameters; pass p\.lif",
    ),
    ("lif_step", LIFRefracParameters(), r"^p must be a LIFParameters, got LIFRefracParameters"),
    ("lif_feed_forward_step", LIParameters(), r"^p must be a LIFParameters, got LIParameters$"),
    ("lif_step", LIParameters(), r"^p must be a LIFParameters, got LIParameters$"),
    (
        "lif_refrac_feed_forward_step",
        LIFRefracParameters(LIParameters()),
        r"^p\.lif must be a LIFParameters, got LIParameters$",
    ),
    ("lif_refrac_step", (LIFParameters(), 5.0), r"^p must be a LIFRefracParameters, got tuple$"),
    ("lif_feed_forward_step", None, r"^p must be a LIFParameters, got NoneType$"),
]


@pytest.mark.parametrize(("step", "p", "message"), WRONG_PARAMETERS, ids=str)
def test_parameters_of_another_neuron_are_a_type_error(step: str, p: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        STEPS[step](**_kwargs(step, p=p))


def test_li_steps_reject_the_parameters_of_a_spiking_neuron() -> None:
    # LIF's parameters hold LI's fields, so an LI step would run and ignore v_th and v_reset.
    x, state = torch.zeros(B, N), LIState(torch.zeros(B, N), torch.zeros(B, N))
    for p, got in ((LIFParameters(), "LIFParameters"), (LIFRefracParameters(), "LIFRefrac")):
        with pytest.raises(TypeError, match=rf"^p must be a LIParameters, got {got}"):
            li_feed_forward_step(x, state, p)
        with pytest.raises(TypeError, match=rf"^p must be a LIParameters, got {got}"):
            li_step(torch.zeros(B, F), state, torch.zeros(N, F), p)


def test_compute_refractory_update_rejects_lif_parameters() -> None:
    lif = LIFFeedForwardState(torch.zeros(2), torch.zeros(2))
    s = LIFRefracFeedForwardState(lif, torch.ones(2))
    with pytest.raises(TypeError, match=r"^p must be a LIFRefracParameters, got LIFParameters"):
        compute_refractory_update(s, torch.ones(2), torch.zeros(2), LIFParameters())


def test_a_tuple_with_the_same_fields_is_accepted() -> None:
    # Norse's parameter tuples have lifexport's fields and names: they pass, and compute alike.
    from collections import namedtuple

    Other = namedtuple("LIFParameters", LIFParameters._fields)
    kw = _kwargs("lif_feed_forward_step", input_tensor=torch.full((B, N), 30.0))
    z_ours, _ = lif_feed_forward_step(**kw)
    z_other, _ = lif_feed_forward_step(**{**kw, "p": Other(*LIFParameters())})
    assert torch.equal(z_other, z_ours) and z_ours.sum() == B * N
    Short = namedtuple("LIFParameters", LIFParameters._fields[:-1])
    with pytest.raises(TypeError, match=r"got LIFParameters with fields \("):
        lif_feed_forward_step(**{**kw, "p": Short(*LIFParameters()[:-1])})
