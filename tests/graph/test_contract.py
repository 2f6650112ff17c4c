"""The graph contract: what to_onnx writes is what read_graph reads, names and order."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport.graph import METADATA, GraphContract, StateLayout, StateSlot, read_graph


@pytest.fixture(scope="module")
def stack() -> lifexport.SequentialState:
    torch.manual_seed(0)
    return lifexport.SequentialState(
        torch.nn.Linear(3, 4), lifexport.LIFRefracRecurrentCell(4, 4), lifexport.LICell()
    )


@pytest.fixture(scope="module")
def step_file(stack, tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "step.onnx"
    return lifexport.to_onnx(stack, torch.rand(2, 3), path, graph="step")


def test_step_graph_names_follow_the_layers_and_their_fields(step_file) -> None:
    # Hand-written: layer 1 is a recurrent LIF-refrac cell (LIFRefracState(lif=LIFState(z, v,
    # i), rho)), layer 2 a leaky integrator (LIState(v, i)); layer 0, a Linear, has none.
    states = ["state.1.z", "state.1.v", "state.1.i", "state.1.rho", "state.2.v", "state.2.i"]
    assert step_file.input_names == ("x", *states)
    assert step_file.output_names == ("y", *(f"next_{n}" for n in states))
    assert step_file.contract.spike_states == ("next_state.1.z",)


def test_read_graph_gives_back_the_contract_to_onnx_returned(step_file) -> None:
    read = read_graph(step_file.path)
    assert read == step_file and read.contract == step_file.contract
    model = onnx.load(step_file.path)
    assert [i.name for i in model.graph.input] == list(read.input_names)
    assert [o.name for o in model.graph.output] == list(read.output_names)


def test_the_state_layout_is_the_order_the_graph_takes_its_state(stack, step_file) -> None:
    # A non-rest state, fed by the layout's names, must give torch's next state slot by slot.
    x = torch.rand(2, 3) * 3
    state = stack.initial_state(x)
    layout = StateLayout(state)
    state = layout.unflatten([torch.rand_like(t) for t in layout.flatten(state)])
    y, new_state = stack.step(x, state)
    session = ort.InferenceSession(str(step_file.path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy()}
    feeds.update({n: t.numpy() for n, t in zip(layout.names, layout.flatten(state))})
    out = dict(zip(step_file.output_names, session.run(None, feeds)))
    np.testing.assert_array_equal(out["y"], y.detach().numpy())
    for slot, tensor in zip(layout.slots, layout.flatten(new_state)):
        np.testing.assert_allclose(out[slot.next_name], tensor.detach().numpy(), rtol=1e-6)


def test_training_names_and_metadata_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    net = lifexport.SequentialState(torch.nn.Linear(3, 4), lifexport.LIFRefrac())
    net[1].v_th = torch.nn.Parameter(torch.tensor(0.8))  # a trainable neuron parameter too

    def loss(y, target):
        return ((y.sum(0) - target) ** 2).mean()

    out = lifexport.to_onnx(
        net,
        torch.rand(5, 2, 3),
        tmp_path / "train.onnx",
        mode="training",
        loss=loss,
        target=torch.rand(2, 4),
    )
    params = ("0.weight", "0.bias", "1.v_th")
    assert [n for n, _ in net.named_parameters()] == list(params)
    assert out.input_names == (*params, "x", "target", "state.1.v", "state.1.i", "state.1.rho")
    assert out.output_names[:2] == ("loss", "y")
    assert out.output_names[-3:] == tuple(f"grad.{p}" for p in params)
    metadata = {p.key: p.value for p in onnx.load(out.path).metadata_props}
    assert json.loads(metadata["lifexport.parameters"]) == list(params)
    assert json.loads(metadata["lifexport.target_rank"]) == 2
    assert read_graph(out.path).contract == out.contract


def test_every_key_written_is_declared_with_writer_and_reader(step_file) -> None:
    declared = {m.key for m in METADATA}
    written = set(step_file.contract.to_metadata())
    assert written <= declared
    assert {m.key for m in METADATA if m.required} <= written
    assert all(m.writer and m.reader for m in METADATA)


def test_a_file_whose_graph_disagrees_with_its_metadata_is_refused(step_file, tmp_path) -> None:
    model = onnx.load(step_file.path)
    model.graph.output[0].name = "spikes"  # renamed after export
    path = tmp_path / "renamed.onnx"
    onnx.save(model, path)
    with pytest.raises(ValueError, match="outputs .*'spikes'.* are not those its metadata records"):
        read_graph(path)


def test_state_slot_names_parse_back() -> None:
    slot = StateSlot(12, "rho")
    assert StateSlot.parse(slot.name) == slot and slot.next_name == "next_state.12.rho"
    for bad in ("state.x.v", "v", "state.1", "next_state.1.v"):
        with pytest.raises(ValueError, match="not a state name"):
            StateSlot.parse(bad)


def test_a_contract_refuses_unknown_kinds_and_inference_parameters() -> None:
    with pytest.raises(ValueError, match="graph must be one of"):
        GraphContract(kind="loop", mode="inference", states=(), example_shape=(1,), dtype="float32")
    with pytest.raises(ValueError, match="inference graph takes no parameters"):
        GraphContract(
            kind="step",
            mode="inference",
            states=(),
            example_shape=(1,),
            dtype="float32",
            parameters=("w",),
        )
