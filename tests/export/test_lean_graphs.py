"""Lean inference graphs: fewer nodes per time step, the same bits as torch and as the
exporter's arithmetic form; as exported (the spike comparison) and with masks as selections
(``to_onnx(..., masks="select")``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import lifexport
import lifexport.export._program as program
import lifexport.functional as lx
from lifexport.export import export_program
from lifexport.export._rewrite import lean_graph
from lifexport.modules import flatten_state

T, B, N = 400, 3, 32
P_LIF = lx.LIFParameters(v_th=0.5, v_reset=-0.125, tau_mem_inv=150.0)
P_REFRAC = lx.LIFRefracParameters(P_LIF, rho_reset=3.0)

# name: (a sequence layer, its cell, {variant: nodes per step at most})
LAYERS: dict[str, tuple[Callable, Callable, dict[str, int]]] = {
    "LIFRefrac": (
        lambda: lifexport.LIFRefrac(),
        lambda: lifexport.LIFRefracCell(),
        {"exported": 26, "select": 18},
    ),
    "LIFRefrac-p": (
        lambda: lifexport.LIFRefrac(P_REFRAC),
        lambda: lifexport.LIFRefracCell(P_REFRAC),
        {"exported": 26, "select": 18},
    ),
    "LIF": (lambda: lifexport.LIF(), lambda: lifexport.LIFCell(), {"exported": 13, "select": 10}),
    "LIF-p": (
        lambda: lifexport.LIF(P_LIF),
        lambda: lifexport.LIFCell(P_LIF),
        {"exported": 13, "select": 10},
    ),
    "LI": (lambda: lifexport.LI(), lambda: lifexport.LICell(), {"exported": 8, "select": 8}),
}
RECURRENT = {  # the same neuron update after two Gemm (and an Identity: z is y too)
    "LIFRecurrent": (lambda: _seeded(lifexport.LIFRecurrent, 6, 8), {"exported": 17, "select": 14}),
    "LIFRefracRecurrent": (
        lambda: _seeded(lifexport.LIFRefracRecurrent, 6, 8),
        {"exported": 30, "select": 22},
    ),
}
VARIANTS = ["exported", "select"]


def _seeded(cls, *args):
    torch.manual_seed(0)
    return cls(*args)


def step_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes of one time step: the ``Scan`` body, or the graph of a step graph."""
    scans = [n for n in model.graph.node if n.op_type == "Scan"]
    return list(scans[0].attribute[0].g.node) if scans else list(model.graph.node)


def export_pair(make: Callable, x: torch.Tensor, graph: str, tmp):
    """``make()`` exported as ``graph``: ``({variant: lean model}, the exporter's arithmetic
    form, state names)``."""
    lean = lifexport.to_onnx(make(), x, tmp / f"lean-{graph}.onnx", graph=graph)
    select = lifexport.to_onnx(make(), x, tmp / f"select-{graph}.onnx", graph=graph, masks="select")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(program, "lean_graph", lambda model, select=False: model)
        plain = lifexport.to_onnx(make(), x, tmp / f"plain-{graph}.onnx", graph=graph)
    assert select.state_names == lean.state_names == plain.state_names
    variants = {"exported": onnx.load(lean.path), "select": onnx.load(select.path)}
    return variants, onnx.load(plain.path), lean.state_names


@pytest.fixture(scope="module", params=sorted(LAYERS))
def exported(request, tmp_path_factory):
    make, make_cell, target = LAYERS[request.param]
    tmp = tmp_path_factory.mktemp(request.param)
    files = {
        "step": export_pair(make, torch.rand(B, N), "step", tmp),
        "sequence": export_pair(make, torch.rand(4, B, N), "sequence", tmp),
    }
    return request.param, make, make_cell, target, files


def drive(seed: int) -> torch.Tensor:
    """(T, B, N): from silent to strongly driven neurons, with noise that also inhibits."""
    gen = torch.Generator().manual_seed(seed)
    gain = torch.linspace(0.0, 6.0, N)  # (N,)
    return gain * torch.rand(T, B, N, generator=gen) - 0.5 * torch.rand(T, B, N, generator=gen)


def start_state(make_cell: Callable, seed: int) -> list[torch.Tensor]:
    """A state away from rest: v around threshold, some neurons refractory."""
    gen = torch.Generator().manual_seed(seed)
    tensors, _ = flatten_state(make_cell()(torch.zeros(B, N))[1])
    state = [torch.rand(B, N, generator=gen) * 1.5 - 0.25 for _ in tensors]
    if len(state) == 3:  # LIF-refrac: rho, whole steps
        state[2] = torch.randint(0, 4, (B, N), generator=gen).float()
    return state


def assert_bits(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """The same float32 bit patterns (so also the same signs of zero, the same NaNs)."""
    assert actual.shape == expected.shape, what
    np.testing.assert_array_equal(actual.view(np.uint32), expected.view(np.uint32), what)


# -- node counts ------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("graph", ["step", "sequence"])
def test_step_has_at_most_the_target_nodes(exported, graph, variant):
    name, _, _, targets, files = exported
    leans, plain, _ = files[graph]
    lean = step_nodes(leans[variant])
    assert len(lean) <= targets[variant]
    if name == "LI":  # no spike, no mask: left as it is
        assert [n.op_type for n in lean] == [n.op_type for n in step_nodes(plain)]
        return
    assert len(step_nodes(plain)) > len(lean)
    differences = {o for n in lean if n.op_type == "Sub" for o in n.output}
    assert not differences & greater_inputs(lean)  # the spike compares v with v_th itself
    if variant == "select":  # every float multiply left is a decay by a constant
        assert "Where" in {n.op_type for n in lean}
        assert sum(n.op_type == "Mul" for n in lean) == 2
    else:  # the masks keep their arithmetic form
        assert "Where" not in {n.op_type for n in lean}


def greater_inputs(nodes: list[onnx.NodeProto]) -> set[str]:
    """The values that ``Greater`` nodes compare."""
    return {i for n in nodes if n.op_type == "Greater" for i in n.input}


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_step_has_at_most_the_target_nodes(name, tmp_path):
    make, targets = RECURRENT[name]
    leans, plain, _ = export_pair(make, torch.rand(2, 6), "step", tmp_path)
    for variant, lean in leans.items():
        assert len(step_nodes(lean)) <= targets[variant] < len(step_nodes(plain))
    leans, plain, names = export_pair(make, torch.rand(3, 2, 6), "sequence", tmp_path)
    xs = 3.0 * torch.rand(T, 2, 6, generator=torch.Generator().manual_seed(3))
    feeds = {"x": xs.numpy(), **{n: np.zeros((2, 8), np.float32) for n in names}}
    plain_out = ort_run(plain, feeds)
    assert plain_out["y"].mean() > 0.05  # the drive makes it spike
    for variant, lean in leans.items():
        assert len(step_nodes(lean)) <= targets[variant] < len(step_nodes(plain))
        lean_out = ort_run(lean, feeds)
        for key, value in plain_out.items():
            assert_bits(lean_out[key], value, f"{variant} {key}")


# -- values -----------------------------------------------------------------------------


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``model`` once on onnxruntime's CPU provider: ``{output name: array}``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    outputs = [o.name for o in sess.get_outputs()]
    return dict(zip(outputs, sess.run(outputs, feeds), strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_sequence_is_bit_equal_to_torch_and_to_the_arithmetic_form(exported, variant):
    name, make, make_cell, _, files = exported
    leans, plain, names = files["sequence"]
    lean = leans[variant]
    xs, state = drive(1), start_state(make_cell, 2)
    with torch.no_grad():
        layer = make()
        _, unflatten = flatten_state(make_cell()(torch.zeros(B, N))[1])
        ys, final = layer(xs, unflatten(state))
    feeds = {"x": xs.numpy(), **{n: s.numpy() for n, s in zip(names, state, strict=True)}}
    lean_out, plain_out = ort_run(lean, feeds), ort_run(plain, feeds)
    expected = {"y": ys.numpy()}
    for n, t in zip(names, flatten_state(final)[0], strict=True):
        expected[f"next_{n}"] = t.numpy()
    assert set(lean_out) == set(expected)
    for key, value in expected.items():
        assert_bits(lean_out[key], value, f"{name} {key} against torch")
        assert_bits(lean_out[key], plain_out[key], f"{name} {key} against the arithmetic form")
    if name != "LI":  # the drive spikes often, and refractory neurons hold
        assert 0.1 < ys.mean() < 0.9
    if name.startswith("LIFRefrac"):
        rho_reset = float(layer.rho_reset)
        assert (lean_out["next_state.0.rho"] == rho_reset).any()


@pytest.mark.parametrize("variant", VARIANTS)
def test_step_graph_is_bit_equal_to_torch_step_by_step(exported, variant):
    name, _, make_cell, _, files = exported
    leans, plain, names = files["step"]
    lean = leans[variant]
    xs, state = drive(4), start_state(make_cell, 5)
    cell = make_cell()
    _, unflatten = flatten_state(cell(torch.zeros(B, N))[1])
    feeds = [s.numpy() for s in state]
    p = P_REFRAC if name.endswith("-p") else lx.LIFRefracParameters()
    blocked = 0  # neurons the LIF update takes over threshold while refractory
    for t in range(T):
        with torch.no_grad():
            z, torch_state = cell(xs[t], unflatten(state))
        expected = [z, *flatten_state(torch_state)[0]]
        inputs = {"x": xs[t].numpy(), **dict(zip(names, feeds, strict=True))}
        lean_out, plain_out = ort_run_cached(lean, inputs), ort_run_cached(plain, inputs)
        outs = ["y", *(f"next_{n}" for n in names)]
        for key, value in zip(outs, expected, strict=True):
            assert_bits(lean_out[key], value.numpy(), f"{name} step {t} {key} against torch")
            assert_bits(lean_out[key], plain_out[key], f"{name} step {t} {key}")
        if name.startswith("LIFRefrac"):
            lif = lx.LIFFeedForwardState(state[0], state[1])
            z_lif, _ = lx.lif_feed_forward_step(xs[t], lif, p.lif)
            blocked += int(((state[2] > 0) & (z_lif > 0)).sum())
        state, feeds = expected[1:], [lean_out[f"next_{n}"] for n in names]
    if name.startswith("LIFRefrac"):
        assert blocked > 0


# id(model) -> (model, session): the model is kept so that its id is not reused by another
_SESSIONS: dict[int, tuple[onnx.ModelProto, object]] = {}


def ort_run_cached(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    """As :func:`ort_run`, one session per model (a step graph runs T times)."""
    import onnxruntime as ort

    cached, sess = _SESSIONS.get(id(model), (None, None))
    if cached is not model:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        _SESSIONS[id(model)] = (model, sess)
    outputs = [o.name for o in sess.get_outputs()]
    return dict(zip(outputs, sess.run(outputs, feeds), strict=True))


# -- the rules on their own -------------------------------------------------------------


def test_only_inference_graphs_are_rewritten(monkeypatch):
    calls = []
    monkeypatch.setattr(
        program, "lean_graph", lambda model, select: calls.append(select) or lean_graph(model)
    )

    def spike_of_difference(x):
        return lx.threshold(x - 0.5, "super", 10.0)

    model = export_program(spike_of_difference, (torch.rand(4),), mode="inference")
    assert [n.op_type for n in model.graph.node] == ["Greater", "Cast"] and calls == [False]
    model = export_program(spike_of_difference, (torch.rand(4),), mode="training")
    assert [n.op_type for n in model.graph.node] == ["Sub", "SuperSpike"] and calls == [False]
    with pytest.raises(ValueError, match="masks='select' is for inference graphs"):
        export_program(spike_of_difference, (torch.rand(4),), mode="training", masks="select")


@pytest.mark.parametrize("masks", ("where", None, "Select"))
def test_unknown_masks(masks, tmp_path):
    with pytest.raises(ValueError, match=r"masks must be one of \('arithmetic', 'select'\), got"):
        lifexport.to_onnx(lifexport.LIF(), torch.rand(3, 2, 4), tmp_path / "m.onnx", masks=masks)
    assert not (tmp_path / "m.onnx").exists()


def one_node_model(nodes, inputs, output, initializers) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, [output], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def scalar(name: str, value: float, dtype: int = TensorProto.FLOAT) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [], [value])


@pytest.mark.parametrize(
    ("dtype", "zero", "rewritten"),
    [
        (TensorProto.FLOAT, scalar("c", 0.0), True),
        (TensorProto.FLOAT, scalar("c", 0.5), False),  # not a sign test
        (TensorProto.FLOAT, helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0]), False),
        (TensorProto.INT32, scalar("c", 0, TensorProto.INT32), False),  # a - b may wrap
    ],
)
def test_comparison_rule_fires_only_where_exact(dtype, zero, rewritten):
    nodes = [
        helper.make_node("Sub", ["a", "b"], ["d"]),
        helper.make_node("Greater", ["d", "c"], ["z"]),
    ]
    inputs = [helper.make_tensor_value_info(n, dtype, [3]) for n in "ab"]
    output = helper.make_tensor_value_info("z", TensorProto.BOOL, [3])
    lean = lean_graph(one_node_model(nodes, inputs, output, [zero]))
    assert [n.op_type for n in lean.graph.node] == (
        ["Greater"] if rewritten else ["Sub", "Greater"]
    )
    onnx.checker.check_model(lean, full_check=True)


@pytest.mark.parametrize("mask_type", [TensorProto.BOOL, TensorProto.FLOAT])
def test_blend_rule_needs_a_boolean_mask(mask_type, ort_session):
    nodes = [
        helper.make_node("Cast", ["m"], ["s"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "s"], ["k"]),
        helper.make_node("Mul", ["k", "a"], ["ka"]),
        helper.make_node("Mul", ["b", "s"], ["sb"]),  # commuted on purpose
        helper.make_node("Add", ["sb", "ka"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("m", mask_type, [4])] + [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in "ab"
    ]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    model = one_node_model(nodes, inputs, output, [scalar("one", 1.0)])
    lean = lean_graph(model, select=True)
    ops = [n.op_type for n in lean.graph.node]
    # a float mask may hold 0.5: only a boolean one selects
    assert ops == (["Where"] if mask_type == TensorProto.BOOL else [n.op_type for n in nodes])
    mask = np.array([0, 1, 1, 0], dtype=bool if mask_type == TensorProto.BOOL else np.float32)
    a, b = (
        np.array([1.5, -2.0, 3.25, 0.0], np.float32),
        np.array([7.0, 8.5, -9.0, 1e-3], np.float32),
    )
    expected = np.where(mask.astype(bool), b, a)
    assert_bits(ort_session(lean)({"m": mask, "a": a, "b": b})["y"], expected, "blend")
