"""examples/digits-node: the digits step graph in onnxruntime-node, held to Python's predictions.

The example loops over time in JavaScript with the file's ``state.*``/``next_state.*`` names
and its ``lifexport.initial_state`` metadata; its readout and predictions must match eager
torch and Python onnxruntime on the same step graph, image by image. Needs ``node`` and
``npm``; ``npm ci`` runs once per package-lock.json (a stamp in node_modules records it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lifexport import digits

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx package (lifexport[onnx])")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (lifexport[onnx])")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-node"
INITIAL_STATE_KEY = "lifexport.initial_state"
IMAGES = 100  # test images run through node
NETWORK_ERRORS = (
    "ENOTFOUND",
    "ENOTCACHED",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "network",
)


@contextlib.contextmanager
def _install_lock():
    """One ``npm ci`` at a time for this folder, across processes."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not serialized
        yield
        return
    digest = hashlib.sha256(str(EXAMPLE).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"lifexport-digits-node-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def node_example() -> Path:
    """The example folder with its packages: ``npm ci`` there, unless node_modules already
    holds this package-lock.json's packages. Skips (once, for every test) without ``node`` or
    ``npm``, or when the npm registry cannot be reached."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"the Node.js example needs `{tool}`, which is not on PATH")
    lock_hash = hashlib.sha256((EXAMPLE / "package-lock.json").read_bytes()).hexdigest()
    stamp = EXAMPLE / "node_modules" / ".lifexport-installed"
    with _install_lock():
        if stamp.is_file() and stamp.read_text() == lock_hash:
            return EXAMPLE
        try:
            done = subprocess.run(
                [shutil.which("npm"), "ci", "--no-audit", "--no-fund", "--prefer-offline"]
                + ["--fetch-retries=1", "--fetch-retry-maxtimeout=15000"],  # fail fast offline
                cwd=EXAMPLE,
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci did not finish in 240 s (no or slow network to the npm registry?)")
        if done.returncode != 0:
            lines = [
                ln for ln in done.stderr.splitlines() if ln.startswith(("npm error", "npm ERR"))
            ]
            first = (lines or done.stderr.splitlines() or ["(no output)"])[0]
            if any(word in done.stderr for word in NETWORK_ERRORS):
                pytest.skip(f"npm ci could not reach the npm registry: {first}")
            pytest.fail(f"npm ci failed in {EXAMPLE}:\n{done.stderr}")
        stamp.write_text(lock_hash)
    return EXAMPLE


def _run_node(model: Path, xs: torch.Tensor, folder: Path, sidecar: bool) -> tuple[dict, str]:
    """The example's JSON output and stderr for input spikes ``xs`` (T, B, 64)."""
    images = folder / "images.f32"
    xs.numpy().astype("<f4").tofile(images)
    shape = ["--shape", ",".join(map(str, xs.shape))]
    if sidecar:
        (folder / "images.json").write_text(json.dumps({"shape": list(xs.shape)}))
        shape = []
    done = subprocess.run(
        [shutil.which("node"), "index.js", str(model), str(images), *shape],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def _rest_state(model: onnx.ModelProto, session, batch: int) -> dict[str, np.ndarray]:
    """The rest state the file records (zeros where it records none), read with onnx."""
    recorded = {p.key: p.value for p in model.metadata_props}.get(INITIAL_STATE_KEY)
    entries = json.loads(recorded) if recorded is not None else {}
    rest = {}
    for node in session.get_inputs():
        if node.name.startswith("state."):
            shape = (batch, *node.shape[1:])
            entry = entries.get(node.name, {"shape": [], "values": [0.0]})
            values = np.asarray(entry["values"], np.float32).reshape(entry["shape"])
            rest[node.name] = np.ascontiguousarray(np.broadcast_to(values, shape))
    return rest


def _ort_readout(path: Path, xs: torch.Tensor) -> np.ndarray:
    """Python onnxruntime on the step graph: max over time of ``y``, (B, 10)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state = _rest_state(onnx.load(str(path)), session, xs.shape[1])
    names = list(state)
    best = None
    for x in xs.numpy():
        y, *nxt = session.run(["y", *("next_" + n for n in names)], {"x": x, **state})
        best = y if best is None else np.maximum(best, y)
        state = dict(zip(names, nxt))
    return best


@pytest.fixture(scope="module")
def digits_step(tmp_path_factory):
    """The shipped digits network, its step graph on disk, and IMAGES encoded test images."""
    model, cfg = digits.load_trained()
    _, _, x_test, y_test = digits.load_split(cfg)
    xs = digits.encode(x_test[:IMAGES], cfg)  # (T, IMAGES, 64)
    import lifexport

    path = tmp_path_factory.mktemp("digits-node") / "digits_step.onnx"
    lifexport.to_onnx(model, xs[0, :1], path, graph="step", with_state=True)
    return model, path, xs, y_test[:IMAGES]


def test_node_predictions_match_python(node_example, digits_step, tmp_path):
    model, path, xs, labels = digits_step
    result, stderr = _run_node(path, xs, tmp_path, sidecar=True)

    with torch.no_grad():
        torch_readout = digits.readout(model(xs)[0]).numpy()  # (B, 10)
    ort_readout = _ort_readout(path, xs)
    node_readout = np.asarray(result["readout"], np.float32)
    assert (result["steps"], result["batch"]) == tuple(xs.shape[:2])
    np.testing.assert_allclose(node_readout, ort_readout, rtol=0, atol=1e-5)
    np.testing.assert_allclose(node_readout, torch_readout, rtol=0, atol=1e-4)
    predictions = np.asarray(result["predictions"])
    assert predictions.tolist() == torch_readout.argmax(1).tolist()
    assert predictions.tolist() == ort_readout.argmax(1).tolist()
    assert (predictions == labels.numpy()).mean() > 0.9

    has_key = INITIAL_STATE_KEY in {p.key for p in onnx.load(str(path)).metadata_props}
    assert result["initial_state"] == ("metadata" if has_key else "zeros")
    assert (INITIAL_STATE_KEY in stderr) == (not has_key)  # the warning, only without the key


def test_node_starts_from_the_recorded_rest_state(node_example, digits_step, tmp_path):
    """A rest state in the metadata, per neuron and scalar, is broadcast over the batch."""
    _, path, xs, _ = digits_step
    model = onnx.load(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = np.random.default_rng(0)
    rest = {}
    for node in session.get_inputs():
        if node.name == "state.1.v":  # per neuron: below threshold, some neurons near it
            rest[node.name] = {
                "shape": [node.shape[1]],
                "values": gen.uniform(0, 0.9, 256).tolist(),
            }
        elif node.name.startswith("state."):
            rest[node.name] = {"shape": [], "values": [0.25 if node.name == "state.3.v" else 0.0]}
    kept = [p for p in model.metadata_props if p.key != INITIAL_STATE_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=INITIAL_STATE_KEY, value=json.dumps(rest))
    moved = tmp_path / "digits_step_rest.onnx"
    onnx.save(model, str(moved))

    xs = xs[:, :16]
    result, stderr = _run_node(moved, xs, tmp_path, sidecar=False)
    assert result["initial_state"] == "metadata" and stderr == ""
    node_readout = np.asarray(result["readout"], np.float32)
    ort_readout = _ort_readout(moved, xs)
    np.testing.assert_allclose(node_readout, ort_readout, rtol=0, atol=1e-5)
    assert result["predictions"] == ort_readout.argmax(1).tolist()
    # the rest state matters: starting from zeros gives another readout
    assert np.abs(ort_readout - _ort_readout(path, xs)).max() > 0.1
