"""The state at rest a file records (``lifexport.initial_state``): as small as it broadcasts,
read back checked."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lifexport.graph import GraphContract, InitialValue, StateLayout, StateSlot
from lifexport.graph._initial import parse_initial_state
from lifexport.limits import LIMITS
from lifexport.modules import LIFRefracCell


def _recorded(state) -> dict[str, InitialValue]:
    return StateLayout(state).initial_values(state)


def test_a_rest_state_is_recorded_as_small_as_it_broadcasts() -> None:
    cell = LIFRefracCell()
    state = cell.initial_state(torch.zeros(3, 2, 4))  # (B, C, N)
    state = state._replace(lif=state.lif._replace(v=torch.full((3, 2, 4), 0.25)))
    state = state._replace(rho=torch.arange(4.0).expand(3, 2, 4))  # per neuron, last axis
    state = state._replace(
        lif=state.lif._replace(i=torch.arange(8.0).reshape(2, 4).expand(3, 2, 4))
    )
    recorded = _recorded(state)
    assert recorded["state.0.v"] == InitialValue((), (0.25,))
    assert recorded["state.0.rho"] == InitialValue((4,), (0.0, 1.0, 2.0, 3.0))
    assert recorded["state.0.i"] == InitialValue((2, 4), tuple(float(k) for k in range(8)))
    for name, tensor in zip(StateLayout(state).names, StateLayout(state).flatten(state)):
        value = recorded[name]  # the contract's rule: values reshaped to shape, broadcast
        rest = np.broadcast_to(np.float32(value.values).reshape(value.shape), tensor.shape)
        np.testing.assert_array_equal(rest, tensor.numpy())


def test_a_rest_state_that_differs_between_rows_is_refused() -> None:
    state = LIFRefracCell().initial_state(torch.zeros(2, 3))
    state = state._replace(rho=torch.tensor([[0.0, 0, 0], [1, 1, 1]]))
    with pytest.raises(ValueError, match="state.0.rho of shape \\(2, 3\\) differs between batch"):
        _recorded(state)


def test_the_contract_round_trips_the_state_at_rest() -> None:
    slots = (StateSlot(1, "v"), StateSlot(1, "i"))
    initial = {"state.1.v": InitialValue((2,), (0.5, -0.25)), "state.1.i": InitialValue((), (0,))}
    contract = GraphContract("step", "inference", slots, (3, 2), "float32", initial_state=initial)
    metadata = contract.to_metadata()
    assert json.loads(metadata["lifexport.initial_state"]) == {
        "state.1.v": {"shape": [2], "values": [0.5, -0.25]},
        "state.1.i": {"shape": [], "values": [0]},
    }
    assert GraphContract.from_metadata(metadata) == contract
    del metadata["lifexport.initial_state"]  # files from before the key: still read
    assert GraphContract.from_metadata(metadata).initial_state is None
    with pytest.raises(ValueError, match="one entry per state input"):
        GraphContract("step", "inference", slots, (3, 2), "float32", initial_state={})


NAMES = ["state.0.v", "state.0.i"]
REST_I = '"state.0.i": {"shape": [], "values": [0]}'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "must be a JSON object with one entry per state input"),
        (f'{{{REST_I}, "state.0.v": {{"shape": [], "values": [0]}}}}', "in order"),
        ('{"state.0.v": {"shape": [], "values": [0]}}', "one entry per state input"),
        ('{"shape": [2], "values": [0]}', "'state.0.v': 1 values do not fill shape \\[2\\]"),
        ('{"shape": [], "values": [NaN]}', "must be a JSON object"),
        ('{"shape": [], "values": ["a"]}', "values must be finite numbers"),
        ('{"shape": [0], "values": []}', "shape must hold positive ints"),
        ('{"shape": []}', '\\{"shape": \\[...\\], "values": \\[...\\]\\}'),
        ('{"shape": [1e3], "values": [0]}', "non-negative ints"),
    ],
)
def test_bad_initial_state_metadata_names_the_key(text: str, message: str) -> None:
    if text.startswith('{"shape"'):  # state.0.v's entry; state.0.i's is good
        text = f'{{"state.0.v": {text}, {REST_I}}}'
    with pytest.raises(ValueError, match="lifexport.initial_state") as error:
        parse_initial_state(text, NAMES)
    assert error.match(message)


def test_an_initial_state_over_the_element_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(LIMITS, "max_elements", 10)
    text = json.dumps({"state.0.v": {"shape": [11], "values": [0] * 11}})
    with pytest.raises(ValueError, match="over the limit"):
        parse_initial_state(text, ["state.0.v"])
