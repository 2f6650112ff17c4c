"""lifexport.runtime.Session: the state kept for the caller, held to eager torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import lifexport
from lifexport.graph import INITIAL_STATE_KEY, read_graph
from lifexport.runtime import Session
from lifexport.runtime._session import _providers
from tests.runtime.stack import B, N, T


def _eager(model, xs: np.ndarray) -> np.ndarray:
    """Torch's outputs (T, B, 5) from rest."""
    x = torch.from_numpy(xs)
    with torch.no_grad():
        ys, _ = model(x)
    return ys.numpy()


def _spiking(model, xs: np.ndarray) -> np.ndarray:
    """The LIF-refrac layer's spikes over time (T, B, N)."""
    with torch.no_grad():
        hidden = model[0](torch.from_numpy(xs))
        spikes, _ = model[1](hidden)
    return spikes.numpy()


def test_the_drive_makes_the_first_layer_spike(model, xs) -> None:
    spikes = _spiking(model, xs)
    assert 0 < spikes.mean() < 0.9  # neither silent nor saturated: the comparison is real


def test_the_file_records_the_state_at_rest_by_hand(files) -> None:
    # Hand-computed from the model: LIF-refrac v = v_leak = 0.3 (scalar), i = rho = 0; the
    # LIF's v is its per-neuron v_leak; the LI's v = 0.1.
    recorded = read_graph(files[0]).initial_state
    assert recorded["state.1.v"].shape == () and recorded["state.1.v"].values == (
        float(np.float32(0.3)),
    )
    assert recorded["state.1.i"].values == (0.0,) and recorded["state.1.rho"].values == (0.0,)
    assert recorded["state.3.v"].shape == (5,)
    np.testing.assert_array_equal(
        np.float32(recorded["state.3.v"].values), torch.linspace(-0.2, 0.4, 5).numpy()
    )
    assert recorded["state.4.v"].values == (float(np.float32(0.1)),)
    text = onnx.load(files[0]).metadata_props
    raw = json.loads(next(p.value for p in text if p.key == INITIAL_STATE_KEY))
    assert raw["state.1.v"] == {"shape": [], "values": [float(np.float32(0.3))]}


def test_step_equals_eager_torch(model, files, xs) -> None:
    expected = _eager(model, xs)
    session = Session(files[0])
    ys = np.stack([session.step(x) for x in xs])
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)
    assert session.batch == B


def test_run_equals_eager_torch_for_both_graph_kinds(model, files, xs) -> None:
    expected = _eager(model, xs)
    by_step = Session(files[0]).run(xs)
    by_sequence = Session(files[1]).run(xs)
    np.testing.assert_allclose(by_step, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_sequence, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_step, by_sequence, rtol=1e-5, atol=1e-6)


def test_spikes_and_state_equal_eager_torch_exactly(model, files, xs) -> None:
    # The LIF-refrac layer's refractory counter is its spike record: rho jumps to rho_reset
    # on a spike. Compare the step session's state with torch's after every step.
    stepper = lifexport.modules.step_module(model)
    x = torch.from_numpy(xs)
    with torch.no_grad():
        state = stepper.initial_state(x[0])
        session = Session(files[0])
        for t in range(T):
            _, state = stepper.step(x[t], state)
            session.step(xs[t])
            rho = session.state["state.1.rho"]
            np.testing.assert_array_equal(rho, state[1].rho.numpy())
            np.testing.assert_allclose(session.state["state.1.v"], state[1].lif.v, atol=1e-6)
            np.testing.assert_allclose(session.state["state.3.v"], state[3].v, atol=1e-6)


def test_starting_from_zeros_instead_of_rest_gives_other_outputs(files, xs) -> None:
    # The initial state matters for this model: the runtime's is not a zero state.
    session = Session(files[0])
    expected = session.run(xs)
    zeroed = Session(files[0], batch=B)
    for name in zeroed.state_names:
        zeroed.state[name] = np.zeros_like(zeroed.state[name])
    assert not np.allclose(zeroed.run(xs), expected, atol=1e-3)


def test_run_continues_the_stream_across_calls(files, xs) -> None:
    for path in files:
        whole = Session(path).run(xs)
        parts = Session(path)
        halves = np.concatenate([parts.run(xs[:10]), parts.run(xs[10:])])
        np.testing.assert_allclose(halves, whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", [0, 1], ids=["step", "sequence"])
def test_reset_of_some_rows_equals_a_fresh_session_for_them(files, xs, kind) -> None:
    session = Session(files[kind])
    session.run(xs[:12])
    before = {n: session.state[n] for n in session.state_names}
    session.reset(rows=[0, 2])
    after = {n: session.state[n] for n in session.state_names}
    fresh = Session(files[kind], batch=B)
    for name in session.state_names:
        np.testing.assert_array_equal(after[name][[0, 2]], fresh.state[name][[0, 2]])
        np.testing.assert_array_equal(after[name][1], before[name][1])
    ys = session.run(xs[12:])
    alone = Session(files[kind]).run(xs[12:])  # rows 0 and 2 start their stream here
    np.testing.assert_allclose(ys[:, [0, 2]], alone[:, [0, 2]], rtol=1e-6, atol=1e-7)
    continued = Session(files[kind]).run(xs)[12:]  # row 1 goes on
    np.testing.assert_allclose(ys[:, 1], continued[:, 1], rtol=1e-6, atol=1e-7)


def test_reset_of_every_row_and_to_another_batch(files, xs) -> None:
    session = Session(files[0])
    first = session.run(xs)
    session.reset()
    np.testing.assert_array_equal(session.run(xs), first)
    session.reset(batch=1)
    assert session.batch == 1
    np.testing.assert_allclose(session.run(xs[:, 2:3]), first[:, 2:3], rtol=1e-6, atol=1e-7)


def test_state_get_and_set_by_name(files, xs) -> None:
    session = Session(files[0])
    session.run(xs[:5])
    state = dict(session.state)
    assert list(state) == list(session.state_names) == list(read_graph(files[0]).state_names)
    ys = session.run(xs[5:])
    other = Session(files[0])
    for name, value in state.items():
        other.set_state(name, value)  # the first set before any input chooses B
    np.testing.assert_array_equal(other.run(xs[5:]), ys)
    np.testing.assert_array_equal(other.get_state("state.1.rho"), session.state["state.1.rho"])
    copy = session.state["state.1.v"]
    copy[:] = 7.0  # a copy: the session's state is untouched
    assert not np.any(session.state["state.1.v"] == 7.0)


def test_a_file_without_the_state_at_rest_needs_the_state_set(files, xs, tmp_path) -> None:
    model = onnx.load(files[0])
    kept = [p for p in model.metadata_props if p.key != INITIAL_STATE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(model, old)
    assert read_graph(old).initial_state is None  # older files still read
    session = Session(old)
    with pytest.raises(ValueError, match="records no state at rest.*set_state.*re-export"):
        session.step(xs[0])
    with pytest.raises(ValueError, match="records no state at rest"):
        session.reset()
    reference = Session(files[0], batch=B)
    for name in session.state_names:
        session.state[name] = reference.state[name]
    np.testing.assert_array_equal(session.run(xs), reference.run(xs))


def test_the_runtime_imports_without_torch_or_onnx() -> None:
    code = (
        "import lifexport.runtime, sys; "
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_package_names_still_resolve() -> None:
    from lifexport import functional

    assert lifexport.LIFRefrac is lifexport.modules.LIFRefrac
    assert lifexport.to_onnx is lifexport.export.to_onnx
    assert lifexport.Session is Session and functional is lifexport.functional
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lifexport.nothing  # noqa: B018


# -- bad input ---------------------------------------------------------------------------


def test_bad_x_names_x_and_what_was_expected(files, xs) -> None:
    session = Session(files[0])
    with pytest.raises(ValueError, match=r"x_t must have dtype float32.*got float64"):
        session.step(xs[0].astype(np.float64))
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 4\), got \(3, 5\)"):
        session.step(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="x_t must be a numpy array"):
        session.step(torch.zeros(3, 4))
    session.step(xs[0])
    with pytest.raises(ValueError, match=r"x_t must have shape \(B=3, 4\), got \(2, 4\).*reset"):
        session.step(xs[0, :2])
    with pytest.raises(ValueError, match=r"x must have shape \(T, B=3, 4\), got \(3, 4\).*time"):
        session.run(xs[0])
    with pytest.raises(ValueError, match="step\\(\\) runs step graphs.*run\\(x\\)"):
        Session(files[1]).step(xs[0])


def test_bad_state_names_shapes_and_dtypes(files, xs) -> None:
    session = Session(files[0])
    with pytest.raises(ValueError, match="no state yet"):
        session.get_state("state.1.v")
    session.step(xs[0])
    with pytest.raises(KeyError, match="no state named 'state.9.v'.*state.1.v, state.1.i"):
        session.state["state.9.v"]  # noqa: B018
    with pytest.raises(KeyError, match="the states are"):
        session.set_state("v", np.zeros((B, N), np.float32))
    with pytest.raises(ValueError, match=r"'state.1.v' must be a float32 array of shape \(3, 6\)"):
        session.set_state("state.1.v", np.zeros((B, N + 1), np.float32))
    with pytest.raises(ValueError, match=r"float32 array.*got float64"):
        session.set_state("state.1.v", np.zeros((B, N), np.float64))
    with pytest.raises(TypeError, match="must be a numpy array"):
        session.set_state("state.1.v", [[0.0] * N] * B)


def test_bad_rows(files, xs) -> None:
    session = Session(files[0])
    session.step(xs[0])
    with pytest.raises(ValueError, match=r"rows must be batch rows in \[0, 3\), got \[3, -1\]"):
        session.reset(rows=[0, 3, -1])
    with pytest.raises(TypeError, match="rows must be an int or a sequence of ints"):
        session.reset(rows=[0.5])
    with pytest.raises(ValueError, match="batch must be a positive int"):
        session.reset(batch=0)


def test_bad_files_and_providers(files, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Session(tmp_path / "missing.onnx")
    with pytest.raises(TypeError, match="path must be a str"):
        Session(3)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load path '.*junk.onnx' with providers"):
        Session(junk)
    plain = tmp_path / "plain.onnx"  # a valid ONNX model without lifexport's contract
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), plain
    )
    with pytest.raises(ValueError, match="plain.onnx' has no lifexport metadata \\(missing"):
        Session(plain)
    with pytest.raises(ValueError, match="'NoSuchExecutionProvider' is not available.*CPU"):
        Session(files[0], providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="provider_options names.*not in providers"):
        Session(files[0], provider_options={"CUDAExecutionProvider": {}})
    with pytest.raises(ValueError, match="one dict per provider"):
        Session(files[0], provider_options=[{}, {}])


def test_provider_options_reach_onnxruntime_as_it_reads_them(files, monkeypatch) -> None:
    class Installed:  # an onnxruntime with the CUDA provider, for the plumbing alone
        @staticmethod
        def get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = {"CUDAExecutionProvider": {"enable_cuda_graph": True, "device_id": 0}}
    assert _providers(providers, options, Installed) == (
        providers,
        [{"enable_cuda_graph": "1", "device_id": "0"}, {}],
    )
    assert _providers(providers, [{"enable_cuda_graph": False}, {}], Installed)[1] == [
        {"enable_cuda_graph": "0"},
        {},
    ]
    seen = {}
    create = ort.InferenceSession

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return create(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    Session(files[0], provider_options=[{"use_arena": False}])
    assert seen["providers"] == ["CPUExecutionProvider"]
    assert seen["provider_options"] == [{"use_arena": "0"}]


def test_bad_initial_state_metadata_is_named(files, tmp_path) -> None:
    model = onnx.load(files[0])
    for prop in model.metadata_props:
        if prop.key == INITIAL_STATE_KEY:
            prop.value = prop.value.replace('"shape": []', '"shape": [2]', 1)
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    with pytest.raises(ValueError, match="bad metadata: lifexport.initial_state: 'state.1.v'"):
        Session(bad)
    with pytest.raises(ValueError, match="lifexport.initial_state"):
        read_graph(bad)


@pytest.mark.cuda
def test_cuda_session_keeps_the_state_on_the_device_and_equals_the_cpu(files, xs) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDAExecutionProvider here")
    cpu = Session(files[0]).run(xs)
    for graph in (False, True):
        options = {"CUDAExecutionProvider": {"enable_cuda_graph": graph}}
        session = Session(files[0], ["CUDAExecutionProvider"], options)
        np.testing.assert_allclose(session.run(xs), cpu, rtol=1e-5, atol=1e-5)
        session.reset(rows=[1])
        assert session.state["state.1.rho"][1].max() == 0
