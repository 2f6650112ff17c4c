"""``to_onnx`` in inference mode: every lifexport module, step and sequence graphs, against
eager torch in onnxruntime over 200+ steps from a non-rest state.

Each model is exported once per graph (module-scoped fixture, example B=2, T=10) and run with
another B and T than at export. Spikes must match exactly and states within 1e-5 (abs); the
drives make every LIF-refrac layer spike and sit in its refractory period (asserted, so the
comparisons cannot pass on silent neurons).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import lifexport
import lifexport.functional as F
from lifexport.export import ExportedModel, op_types, to_onnx
from lifexport.export._graph import iter_nodes
from lifexport.modules._time import flatten_state

B, STEPS, WARMUP = 3, 210, 20  # run-time batch (export uses 2), steps compared, warm-up steps
N, IN, HIDDEN = 5, 4, 5  # feed-forward neurons, recurrent inputs, recurrent neurons


def refrac_p(shape: tuple[int, ...], seed: int) -> F.LIFRefracParameters:
    """Per-neuron v_th and tau_mem_inv of ``shape``; a short refractory period (3 steps)."""
    gen = torch.Generator().manual_seed(seed)
    lif = F.LIFParameters(
        tau_mem_inv=80.0 + 40.0 * torch.rand(shape, generator=gen),
        v_th=0.6 + 0.6 * torch.rand(shape, generator=gen),
        method="super",
        alpha=50.0,
    )
    return F.LIFRefracParameters(lif, rho_reset=3.0)


def lif_p(shape: tuple[int, ...], seed: int) -> F.LIFParameters:
    return refrac_p(shape, seed).lif


def li_p(shape: tuple[int, ...], seed: int) -> F.LIParameters:
    gen = torch.Generator().manual_seed(seed)
    return F.LIParameters(tau_mem_inv=80.0 + 40.0 * torch.rand(shape, generator=gen))


def conv_stack(cells: bool) -> torch.nn.Module:
    """Conv2d -> LIF-refrac -> Flatten -> Linear -> LIF-refrac recurrent, on (B, 1, 6, 6).

    As sequence layers (a sequence ``SequentialState``) or as cells driven by a ``TimeLoop``.
    """
    ff, rec = (
        (lifexport.LIFRefracCell, lifexport.LIFRefracRecurrentCell)
        if cells
        else (lifexport.LIFRefrac, lifexport.LIFRefracRecurrent)
    )
    stack = lifexport.SequentialState(
        torch.nn.Conv2d(1, 2, 3),
        ff(refrac_p((2, 4, 4), seed=1)),  # per neuron: one value per channel and pixel
        torch.nn.Flatten(),
        torch.nn.Linear(32, 8),
        rec(8, 4, refrac_p((4,), seed=2)),
    )
    with torch.no_grad():  # mostly excitatory, so that every layer spikes
        stack[0].weight.uniform_(-0.05, 0.1)
        stack[3].weight.uniform_(0.0, 0.5)
    return lifexport.TimeLoop(stack) if cells else stack


@dataclass(frozen=True)
class Case:
    """A model to export, the shape of one step's input (without B) and its drive."""

    build: Callable[[], torch.nn.Module]
    x_shape: tuple[int, ...]
    scale: float  # the drive is scale * U(0, 1)
    spikes: bool = True  # False: the output is a potential (LI), compared within tolerance


CASES = {
    "LIFRefracCell": Case(lambda: lifexport.LIFRefracCell(refrac_p((N,), 0)), (N,), 2.0),
    "LIFRefrac": Case(lambda: lifexport.LIFRefrac(refrac_p((N,), 0)), (N,), 2.0),
    "LIFRefracRecurrentCell": Case(
        lambda: lifexport.LIFRefracRecurrentCell(IN, HIDDEN, refrac_p((HIDDEN,), 0)), (IN,), 4.0
    ),
    "LIFRefracRecurrent": Case(
        lambda: lifexport.LIFRefracRecurrent(IN, HIDDEN, refrac_p((HIDDEN,), 0)), (IN,), 4.0
    ),
    "LIFCell": Case(lambda: lifexport.LIFCell(lif_p((N,), 0)), (N,), 2.0),
    "LIF": Case(lambda: lifexport.LIF(lif_p((N,), 0)), (N,), 2.0),
    "LIFRecurrentCell": Case(
        lambda: lifexport.LIFRecurrentCell(IN, HIDDEN, lif_p((HIDDEN,), 0)), (IN,), 4.0
    ),
    "LIFRecurrent": Case(
        lambda: lifexport.LIFRecurrent(IN, HIDDEN, lif_p((HIDDEN,), 0)), (IN,), 4.0
    ),
    "LICell": Case(lambda: lifexport.LICell(li_p((N,), 0)), (N,), 2.0, spikes=False),
    "LI": Case(lambda: lifexport.LI(li_p((N,), 0)), (N,), 2.0, spikes=False),
    "conv_stack": Case(lambda: conv_stack(cells=False), (1, 6, 6), 4.0),
    "conv_stack_cells_in_time_loop": Case(lambda: conv_stack(cells=True), (1, 6, 6), 4.0),
}


def build(case: Case) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the random weights of recurrent and torch layers
        return case.build().eval()


def drive(case: Case, t: int, b: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return case.scale * torch.rand(t, b, *case.x_shape, generator=gen)  # (T, B, ...)


def as_sequence(model: torch.nn.Module) -> torch.nn.Module:
    """What eager users run over a sequence: the model, or a cell in a ``TimeLoop``."""
    return model if getattr(model, "is_sequence", False) else lifexport.TimeLoop(model)


def step_module(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, lifexport.TimeLoop) else model


def warm_state(case: Case, model: torch.nn.Module, b: int) -> list[torch.Tensor]:
    """The flat state after a warm-up drive from rest."""
    with torch.no_grad():
        _, state = as_sequence(model)(drive(case, WARMUP, b, seed=100), None)
    return flatten_state(state)[0]


def assert_away_from_rest(names, state: list[torch.Tensor]) -> None:
    """Every v, i and rho is non-zero somewhere (z may be all zero at a given step)."""
    for name, t in zip(names, state, strict=True):
        assert name.endswith(".z") or t.abs().sum() > 0, f"{name} is at rest"


def structured(model: torch.nn.Module, x_step: torch.Tensor, flat: list[torch.Tensor]):
    """A flat state (as the graphs take it) in the model's own state layout."""
    return flatten_state(step_module(model).initial_state(x_step))[1](flat)


def eager_steps(model: torch.nn.Module, xs: torch.Tensor, state: list[torch.Tensor]):
    """Eager torch one step at a time: outputs ``(T, B, ...)`` and each step's flat state."""
    step, s, ys, states = step_module(model), structured(model, xs[0], state), [], []
    with torch.no_grad():
        for x in xs:
            y, s = step.step(x, s)
            ys.append(y)
            states.append(flatten_state(s)[0])
    return torch.stack(ys), states


def assert_state_close(names, ours, theirs, where: str) -> None:
    for name, mine, other in zip(names, ours, theirs, strict=True):
        if name.endswith(".z"):  # spikes of recurrent layers: exact
            np.testing.assert_array_equal(other, mine.numpy(), err_msg=f"{name} at {where}")
        else:
            np.testing.assert_allclose(
                other, mine.numpy(), rtol=0, atol=1e-5, err_msg=f"{name} at {where}"
            )


def assert_not_vacuous(case: Case, ys: torch.Tensor, names, states) -> None:
    """Neurons spike (not always) and every LIF-refrac layer is refractory at some step."""
    if not case.spikes:
        assert ys.abs().max() > 0.1
        return
    assert 0 < ys.sum() < ys.numel(), "the drive must make the output neurons spike, not always"
    for k, name in enumerate(names):
        if name.endswith(".rho"):
            refractory = sum(int((s[k] > 0).sum()) for s in states)
            assert refractory > 0, f"{name}: never refractory"


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory) -> tuple[Case, torch.nn.Module, dict]:
    """Each case's model and its step and sequence graphs (exported with B=2, T=10)."""
    case = CASES[request.param]
    model = build(case)
    folder = tmp_path_factory.mktemp(request.param)
    xs = drive(case, 10, 2, seed=0)
    files = {
        "step": to_onnx(model, xs[0], folder / "step.onnx", graph="step"),
        "sequence": to_onnx(model, xs, folder / "sequence.onnx", graph="sequence"),
    }
    return case, model, files


def test_step_graph_matches_eager_step_by_step(exported, ort_session):
    case, model, files = exported
    out: ExportedModel = files["step"]
    xs, state = drive(case, STEPS, B, seed=1), warm_state(case, model, B)
    ys, states = eager_steps(model, xs, state)
    assert_away_from_rest(out.state_names, state)
    assert_not_vacuous(case, ys, out.state_names, states)

    run = ort_session(out.path)
    feeds = {name: t.numpy() for name, t in zip(out.state_names, state, strict=True)}
    for t, x in enumerate(xs):
        result = run({"x": x.numpy(), **feeds})
        if case.spikes:
            np.testing.assert_array_equal(result["y"], ys[t].numpy(), err_msg=f"step {t}")
        else:
            np.testing.assert_allclose(result["y"], ys[t].numpy(), rtol=0, atol=1e-5)
        feeds = {name: result[f"next_{name}"] for name in out.state_names}
        assert_state_close(out.state_names, states[t], list(feeds.values()), f"step {t}")


def test_sequence_graph_matches_eager(exported, ort_session):
    case, model, files = exported
    out: ExportedModel = files["sequence"]
    xs, state = drive(case, STEPS, B, seed=2), warm_state(case, model, B)
    sequence = as_sequence(model)
    with torch.no_grad():
        ys, final = sequence(xs, structured(model, xs[0], state))
    _, states = eager_steps(model, xs, state)
    assert_away_from_rest(out.state_names, state)
    assert_not_vacuous(case, ys, out.state_names, states)

    feeds = dict(zip(out.state_names, (t.numpy() for t in state), strict=True))
    result = ort_session(out.path)({"x": xs.numpy(), **feeds})
    if case.spikes:
        np.testing.assert_array_equal(result["y"], ys.numpy())
    else:
        np.testing.assert_allclose(result["y"], ys.numpy(), rtol=0, atol=1e-5)
    theirs = [result[f"next_{name}"] for name in out.state_names]
    assert_state_close(out.state_names, flatten_state(final)[0], theirs, "the last step")


def spike_consumers_are_casts(model: onnx.ModelProto) -> bool:
    """Every ``Greater`` output, in the graph and its subgraphs, feeds ``Cast`` nodes only."""
    nodes = list(iter_nodes(model.graph))
    greater = {o for n in nodes if n.op_type == "Greater" for o in n.output}
    consumers = [n for n in nodes if greater & set(n.input)]
    return bool(greater) and all(n.op_type == "Cast" for n in consumers)


@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_inference_graph_holds_standard_ops_only(exported, graph):
    case, model, files = exported
    onnx_model = onnx.load(files[graph].path)
    onnx.checker.check_model(onnx_model, full_check=True)
    ops = op_types(onnx_model)  # the main graph and the Scan bodies
    assert {domain for domain, _ in ops} == {""}
    assert not onnx_model.functions
    assert not {"Loop", "If"} & {t for _, t in ops}
    if case.spikes:  # the spike: Cast(Greater(v, v_th)), nothing custom
        assert {("", "Greater"), ("", "Cast")} <= ops
        assert spike_consumers_are_casts(onnx_model)
    else:
        assert ("", "Greater") not in ops
    scans = [n for n in onnx_model.graph.node if n.op_type == "Scan"]
    if graph == "step":
        assert not scans
    else:
        # one time loop per sequence layer of a stack, else one (TimeLoop or layer)
        layers = [m for m in model.modules() if getattr(m, "is_sequence", False)]
        neurons = [m for m in layers if isinstance(m, lifexport.modules.NeuronModule)]
        assert len(scans) == (len(neurons) or 1)
        if case.spikes:  # the spikes happen inside the loop
            body = scans[0].attribute[0].g
            assert "Greater" in {n.op_type for n in iter_nodes(body)}
    dims = onnx_model.graph.input[0].type.tensor_type.shape.dim
    axes = ["B"] if graph == "step" else ["T", "B"]
    assert [d.dim_param for d in dims[: len(axes)]] == axes


# -- T-independence and dynamic shapes --------------------------------------------------


def graph_bytes(path: Path) -> bytes:
    """The model's serialization without the one entry that records the example's shape."""
    model = onnx.load(path)
    kept = [p for p in model.metadata_props if p.key != "lifexport.example_shape"]
    assert len(kept) == len(model.metadata_props) - 1
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    return model.SerializeToString()


@pytest.mark.parametrize("cells", [False, True], ids=["sequence_layers", "cells_in_time_loop"])
def test_sequence_file_does_not_depend_on_the_example_length(tmp_path, cells):
    model = build(CASES["conv_stack_cells_in_time_loop" if cells else "conv_stack"])
    short = to_onnx(model, torch.rand(10, 2, 1, 6, 6), tmp_path / "t10.onnx")
    long = to_onnx(model, torch.rand(1000, 2, 1, 6, 6), tmp_path / "t1000.onnx")
    assert onnx.load(short.path).graph == onnx.load(long.path).graph
    assert graph_bytes(short.path) == graph_bytes(long.path)
    assert short.path.stat().st_size == pytest.approx(long.path.stat().st_size, abs=8)


@pytest.fixture(scope="module")
def conv_stack_sequence(tmp_path_factory) -> tuple[torch.nn.Module, ExportedModel]:
    model = build(CASES["conv_stack"])
    path = tmp_path_factory.mktemp("dynamic") / "conv_stack.onnx"
    return model, to_onnx(model, torch.rand(10, 2, 1, 6, 6), path)


@pytest.mark.parametrize("t, b", [(37, 5), (1, 1)])
def test_sequence_graph_runs_other_lengths_and_batches(conv_stack_sequence, ort_session, t, b):
    model, out = conv_stack_sequence
    case = CASES["conv_stack"]
    xs, state = drive(case, t, b, seed=3), warm_state(case, model, b)
    with torch.no_grad():
        ys, final = model(xs, structured(model, xs[0], state))
    feeds = dict(zip(out.state_names, (s.numpy() for s in state), strict=True))
    result = ort_session(out.path)({"x": xs.numpy(), **feeds})
    assert result["y"].shape == (t, b, 4)
    np.testing.assert_array_equal(result["y"], ys.numpy())
    theirs = [result[f"next_{name}"] for name in out.state_names]
    assert_state_close(out.state_names, flatten_state(final)[0], theirs, f"T={t}, B={b}")


def test_sequence_graph_without_state_starts_from_rest(tmp_path, ort_session):
    case = CASES["LIFRefracRecurrent"]
    model = build(case)
    out = to_onnx(model, drive(case, 10, 2, 0), tmp_path / "rest.onnx", with_state=False)
    assert (out.input_names, out.output_names, out.state_names) == (("x",), ("y",), ())
    xs = drive(case, 50, B, seed=4)
    with torch.no_grad():
        ys, _ = model(xs)
    assert ys.sum() > 0
    np.testing.assert_array_equal(ort_session(out.path)({"x": xs.numpy()})["y"], ys.numpy())


# -- names and metadata ---------------------------------------------------------------------


@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_metadata_describes_the_model(conv_stack_sequence, tmp_path, graph):
    model, out = conv_stack_sequence
    if graph == "step":
        out = to_onnx(model, torch.rand(2, 1, 6, 6), tmp_path / "step.onnx", graph="step")
    onnx_model = onnx.load(out.path)
    meta = {p.key: p.value for p in onnx_model.metadata_props}
    state = [f"state.1.{f}" for f in ("v", "i", "rho")]
    state += [f"state.4.{f}" for f in ("z", "v", "i", "rho")]

    assert meta["lifexport.version"] == lifexport.__version__
    assert (meta["lifexport.graph"], meta["lifexport.mode"]) == (graph, "inference")
    assert json.loads(meta["lifexport.state_names"]) == state == list(out.state_names)
    inputs, outputs = ["x", *state], ["y", *(f"next_{n}" for n in state)]
    assert json.loads(meta["lifexport.inputs"]) == inputs == list(out.input_names)
    assert json.loads(meta["lifexport.outputs"]) == outputs == list(out.output_names)
    assert [i.name for i in onnx_model.graph.input] == inputs
    assert [o.name for o in onnx_model.graph.output] == outputs
    example = [2, 1, 6, 6] if graph == "step" else [10, 2, 1, 6, 6]
    assert json.loads(meta["lifexport.example_shape"]) == example

    layers = json.loads(meta["lifexport.layers"])
    assert [(layer["index"], layer["type"]) for layer in layers] == [
        (1, "LIFRefrac"),
        (4, "LIFRefracRecurrent"),
    ]
    for layer in layers:
        module = model[layer["index"]]
        assert (layer["dt"], layer["method"], layer["alpha"]) == (0.001, "super", 50.0)
        assert set(layer["parameters"]) == set(module.parameter_names)
        for name, value in layer["parameters"].items():  # per-neuron values as nested lists
            np.testing.assert_array_equal(np.array(value, dtype=np.float32), getattr(module, name))
    assert np.shape(layers[0]["parameters"]["v_th"]) == (2, 4, 4)
    assert layers[0]["parameters"]["rho_reset"] == 3.0
