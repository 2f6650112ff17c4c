"""The ``lifexport`` command: help, exit codes, ``--json``, one-line errors, the demo pipeline.

Commands run in a subprocess (as a user runs them) where the exit code and the absence of a
traceback matter, and in-process where only the result does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import onnx
import pytest

from lifexport import __version__
from lifexport.cli import EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, build_parser, main
from lifexport.graph import GraphContract

REPO = Path(__file__).resolve().parents[1]
SPEC = "lifexport.digits:trained_model"
SHAPE = "32,1,64"


def lifexport(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lifexport", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_one_line_usage_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == EXIT_USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def usage_error(argv: list[str], capsys, *words: str) -> str:
    """``main(argv)`` in-process: exit code 2 and one line ``lifexport <command>: error: ...``."""
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse rejects an argument
        code = exit.code
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.match(rf"lifexport {argv[0]}( \w+)?: error: ", lines[0]), err  # `nir export`
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("module", ["lifexport", "lifexport.cli"])
def test_help_lists_every_command(module):
    """`python -m lifexport` is the same command as `lifexport` and `python -m lifexport.cli`."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith("usage: lifexport ")
    for command in ("demo", "export", "validate", "bench"):
        assert command in result.stdout
    codes = "exit codes: 0 ok, 1 validation mismatch or failed measurement, 2 usage error"
    assert codes in result.stdout


def test_python_m_lifexport_version():
    result = lifexport("--version")
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.strip() == f"lifexport {__version__}"


@pytest.mark.parametrize("argv", [[], ["nope"], ["export", SPEC, "x.onnx", "--shape", "0,1"]])
def test_argument_errors_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == EXIT_USAGE


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The shipped digits network as a sequence graph, written by `lifexport export --json`."""
    path = tmp_path_factory.mktemp("cli") / "digits.onnx"
    result = lifexport("export", SPEC, str(path), "--shape", SHAPE, "--no-state", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    data = json.loads(result.stdout)
    assert data["path"] == str(path) and data["inputs"] == ["x"] and data["outputs"] == ["y"]
    return path


def test_validate_passes_with_json_report(exported):
    result = lifexport("validate", str(exported), "--model", SPEC, "--steps", "40", "--json")
    assert result.returncode == EXIT_OK, result.stderr
    report = json.loads(result.stdout)
    cpu = report["providers"]["CPUExecutionProvider"]
    assert cpu["passed"] and cpu["spikes_equal"]
    assert (
        "CUDAExecutionProvider" in report["unavailable"]
        or "CUDAExecutionProvider" in report["providers"]
    )


def test_validate_against_another_model_exits_with_code_1(exported):
    result = lifexport(
        "validate", str(exported), "--model", "tests.cli_models:perturbed_digits", "--steps", "40"
    )
    assert result.returncode == EXIT_MISMATCH, result.stdout + result.stderr


def test_validate_missing_file(tmp_path):
    result = lifexport("validate", str(tmp_path / "missing.onnx"))
    assert_one_line_usage_error(result, "does not exist", "missing.onnx")


def test_validate_not_an_onnx_file(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("not a model")
    assert_one_line_usage_error(lifexport("validate", str(path)), "not an ONNX model")


def test_validate_wrong_input_shape(exported, tmp_path):
    import torch

    drive = tmp_path / "drive.pt"
    torch.save(torch.zeros(10, 1, 63), drive)  # 63 features: the model takes 64
    result = lifexport("validate", str(exported), "--model", SPEC, "--input", str(drive))
    assert_one_line_usage_error(result, "inputs")


def test_export_bad_model_spec(tmp_path):
    out = str(tmp_path / "a.onnx")
    result = lifexport("export", "lifexport.digits:nope", out, "--shape", SHAPE)
    assert_one_line_usage_error(result, "cannot load model spec")


def test_export_into_missing_folder(tmp_path):
    out = tmp_path / "missing" / "a.onnx"
    result = lifexport("export", SPEC, str(out), "--shape", SHAPE)
    assert_one_line_usage_error(result, "does not exist")


def test_demo_end_to_end_on_a_tiny_budget(tmp_path):
    """Train from scratch for one epoch, export, validate, compare predictions, time, draw."""
    result = lifexport("demo", "--train", "--epochs", "1", "--out", str(tmp_path), "--json")
    assert result.returncode == EXIT_OK, result.stdout[-2000:] + result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert data["same_predictions"] is True
    assert data["onnxruntime_accuracy"] == data["torch_accuracy"] > 0.3  # 10 classes: chance 0.1
    assert data["validation_passed"] is True
    for path in data["files"].values():
        assert Path(path).stat().st_size > 0
    assert Path(data["raster"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(data["speed_ms"]) == {"torch eager", "torch compiled", "onnxruntime sequence"}


# -- validate runs only the model the user names ----------------------------------------

PAYLOAD = """
from pathlib import Path

Path(__file__).with_name("payload-ran").write_text("imported")


def build():
    Path(__file__).with_name("payload-ran").write_text("called")
"""


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The user's working folder, as the CLI's current directory; sys.path restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the working folder
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name in ("payload", "factories"):
            del sys.modules[name]


def forge(path: Path, source: str, original: Path | None = None) -> Path:
    """A lifexport ONNX file whose `lifexport.source` names ``source``: a copy of
    ``original``, or a one-node graph with the metadata validation reads."""
    import onnx
    from onnx import TensorProto, helper

    if original is not None:
        model = onnx.load(original)
        keep = [(p.key, p.value) for p in model.metadata_props if p.key != "lifexport.source"]
        del model.metadata_props[:]
        for key, value in keep:
            model.metadata_props.add(key=key, value=value)
    else:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", "B", 4])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        contract = GraphContract(
            kind="sequence", mode="inference", states=(), example_shape=(3, 1, 4), dtype="float32"
        )
        for key, value in contract.to_metadata().items():
            model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key="lifexport.source", value=source)
    onnx.save(model, path)
    return path


def test_validate_never_imports_the_module_the_file_names(user_dir, capsys):
    """A forged file naming a module with side effects: validate exits 2 and imports nothing."""
    (user_dir / "payload.py").write_text(PAYLOAD)
    forged = forge(user_dir / "forged.onnx", "payload:build")
    line = usage_error(["validate", str(forged)], capsys, "--model", "'payload:build'")
    assert "exported from" in line
    assert not (user_dir / "payload-ran").exists()
    assert "payload" not in sys.modules


def test_validate_runs_the_given_model_not_the_recorded_one(exported, user_dir, capsys):
    (user_dir / "payload.py").write_text(PAYLOAD)
    forged = forge(user_dir / "forged.onnx", "payload:build", original=exported)
    argv = ["validate", str(forged), "--model", SPEC, "--steps", "20"]
    code = main([*argv, "--providers", "CPUExecutionProvider", "--json"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    assert json.loads(out)["providers"]["CPUExecutionProvider"]["passed"]
    assert not (user_dir / "payload-ran").exists()
    assert "payload" not in sys.modules


def test_validate_without_model_names_the_recorded_source_as_a_hint(exported):
    result = lifexport("validate", str(exported))
    assert_one_line_usage_error(result, "pass --model", repr(SPEC))


def test_validate_unreadable_input_file(exported, tmp_path):
    drive = tmp_path / "drive.pt"
    drive.write_text("not a tensor file")
    result = lifexport("validate", str(exported), "--model", SPEC, "--input", str(drive))
    assert_one_line_usage_error(result, "cannot read --input")


# -- usage errors: exit 2, one line, no traceback, nothing run ---------------------------

FACTORIES = '''
import torch

import lifexport


def needs_arguments(width):
    return lifexport.LIFRefrac()


def raises():
    raise RuntimeError("no weights here")


not_a_function = 3


def with_lstm():
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LSTM(4, 4))


def stack_with_lstm():
    return lifexport.SequentialState(torch.nn.LSTM(4, 4), lifexport.LIFRefrac())


def wide_stack():
    """tests.cli_models.small_lif_stack with 7 input features instead of 6."""
    return lifexport.SequentialState(
        torch.nn.Linear(7, 8), lifexport.LIF(), torch.nn.Linear(8, 3), lifexport.LI()
    )
'''


@pytest.fixture
def factories(user_dir) -> Path:
    (user_dir / "factories.py").write_text(FACTORIES)
    return user_dir


@pytest.mark.parametrize(
    "function, words",
    [
        ("needs_arguments", ["factories:needs_arguments takes arguments (width)"]),
        ("raises", ["cannot build the model from factories:raises: RuntimeError: no weights"]),
        ("not_a_function", ["factories:not_a_function is not callable (a int)"]),
        ("with_lstm", ["got Sequential"]),
        ("stack_with_lstm", ["LSTM"]),
    ],
)
def test_export_bad_factory_is_a_usage_error(factories, capsys, function, words):
    out = factories / "a.onnx"
    argv = ["export", f"factories:{function}", str(out), "--shape", "3,1,4"]
    usage_error(argv, capsys, *words)
    assert not out.exists()


def test_validate_bad_factory_is_a_usage_error(factories, capsys):
    forged = forge(factories / "f.onnx", "factories:raises")
    usage_error(["validate", str(forged), "--model", "factories:raises"], capsys, "RuntimeError")


def test_bad_factory_in_a_subprocess_has_no_traceback(factories):
    out = factories / "a.onnx"
    result = lifexport("export", "factories:raises", str(out), "--shape", "3,1,4", cwd=factories)
    assert_one_line_usage_error(result, "lifexport export: error: cannot build the model")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["bench", "--t", "0"], ["--t", "positive", "'0'"]),
        (["bench", "--n", "-1"], ["--n", "positive", "'-1'"]),
        (["bench", "--repeats", "0"], ["--repeats"]),
        (["bench", "--b", "x"], ["--b"]),
        (["bench", "--warmup", "-1"], ["--warmup", ">= 0"]),
        (["bench", "--threads", "-2"], ["--threads", ">= 0"]),
    ],
)
def test_bench_sizes_are_checked_before_any_work(argv, words, capsys, monkeypatch):
    from lifexport import bench

    ran = []
    monkeypatch.setattr(bench, "bench", lambda *a, **k: ran.append(a))
    usage_error(argv, capsys, *words)
    assert ran == []


class _BenchResult:
    """What ``lifexport.bench.bench`` returns, as far as the command reads it."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures

    def to_dict(self) -> dict:
        return {"rows": [{"variant": "floor: copy"}], "failures": self.failures}

    def format(self) -> str:
        return "| workload | variant | pass | ms (median) |"


@pytest.mark.parametrize("json_out", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(
    "failures, code",
    [([], EXIT_OK), (["W1 norse eager forward: RuntimeError: boom\nsecond line"], EXIT_MISMATCH)],
    ids=["ok", "failed"],
)
def test_bench_prints_the_result_and_exits_1_on_a_failed_measurement(
    failures, code, json_out, capsys, monkeypatch
):
    from lifexport import bench

    configs = []

    def measure(cfg, log):
        configs.append(cfg)
        log("W1  lifexport eager scan")
        return _BenchResult(failures)

    monkeypatch.setattr(bench, "bench", measure)
    argv = ["bench", "--t", "3", "--threads", "2", "--no-norse"]
    assert main([*argv, *(["--json"] if json_out else [])]) == code
    out, err = capsys.readouterr()
    assert configs == [bench.Config(t=3, threads=2, norse=False)]
    if json_out:
        assert json.loads(out) == {"rows": [{"variant": "floor: copy"}], "failures": failures}
    else:
        assert out == "| workload | variant | pass | ms (median) |\n"
    expected = ["W1  lifexport eager scan"]  # progress
    if failures:
        expected.append(
            "lifexport bench: 1 measurement(s) failed: W1 norse eager forward: RuntimeError: "
            "boom; second line"
        )
    assert err.splitlines() == expected


def test_demo_epochs_are_checked_before_any_work(capsys, monkeypatch, tmp_path):
    from lifexport import _demo

    ran = []
    monkeypatch.setattr(_demo, "run_demo", lambda *a, **k: ran.append(a))
    argv = ["demo", "--train", "--epochs", "0", "--out", str(tmp_path / "out")]
    usage_error(argv, capsys, "--epochs", "positive")
    assert ran == [] and not (tmp_path / "out").exists()


def test_validate_steps_are_checked_before_any_work(capsys):
    usage_error(["validate", "missing.onnx", "--steps", "0"], capsys, "--steps", "positive")


def test_bench_options_cover_the_config():
    from lifexport.bench import Config

    args = build_parser().parse_args(["bench"])
    assert {name: getattr(args, name) for name in asdict(Config())} == asdict(Config())
    args = build_parser().parse_args(["bench", "--t", "7", "--no-norse", "--no-onnxruntime"])
    assert (args.t, args.norse, args.onnxruntime) == (7, False, False)


def test_bench_config_rejects_bad_sizes():
    from lifexport.bench import Config

    with pytest.raises(ValueError, match="Config.t must be an int >= 1"):
        Config(t=0)
    with pytest.raises(ValueError, match="Config.threads"):
        Config(threads=-1)


# -- files and arguments are data: bounded work, one line, exit 2 ---------------------------


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    """tests.cli_models.small_lif_stack (6 features in) as a sequence graph, example (5, 2, 6)."""
    import torch

    from lifexport.export import to_onnx
    from tests.cli_models import small_lif_stack

    path = tmp_path_factory.mktemp("small") / "small.onnx"
    to_onnx(small_lif_stack(), torch.zeros(5, 2, 6), path)
    return path


@pytest.mark.parametrize(
    "argv, option",
    [
        (["export", SPEC, "a.onnx", "--shape", "100000000000,1,4"], "--shape"),
        (["nir", "export", SPEC, "a.nir", "--input-shape", "100000000000"], "--input-shape"),
        (["nir", "import", "a.nir", "a.onnx", "--shape", "100000,100000,64"], "--shape"),
    ],
)
def test_huge_shapes_are_refused_before_anything_runs(argv, option, capsys, monkeypatch):
    from lifexport.cli import _load
    from lifexport.limits import LIMITS

    ran = []
    monkeypatch.setattr(_load, "load_model", lambda spec: ran.append(spec))
    line = usage_error(argv, capsys, f"argument {option}: an input of shape (")
    assert f"elements, over the limit of {LIMITS.max_elements} " in line
    assert ran == []


def test_the_limit_is_the_one_in_force(capsys, monkeypatch):
    from lifexport.limits import LIMITS

    monkeypatch.setattr(LIMITS, "max_elements", 1000)
    line = usage_error(["export", SPEC, "a.onnx", "--shape", "32,1,64"], capsys, "--shape")
    assert line.endswith(
        "an input of shape (32, 1, 64) has 2048 elements, over the limit of 1000 "
        "(lifexport.limits.LIMITS.max_elements; raise it if a real use needs more)"
    )


def test_validate_steps_over_the_limit_are_refused(small_onnx, capsys):
    usage_error(
        ["validate", str(small_onnx), "--model", SPEC, "--steps", "100000000000"],
        capsys,
        f"--steps 100000000000: the drive for '{small_onnx}' of shape (100000000000, 2, 6) "
        "has 1200000000000 elements, over the limit",
    )


def test_validate_a_model_of_another_width_is_a_usage_error(small_onnx, factories, capsys):
    """Not a mismatch (exit 1): the file came from another model; name both sizes."""
    line = usage_error(
        ["validate", str(small_onnx), "--model", "factories:wide_stack"],
        capsys,
        "--model factories:wide_stack does not fit",
        "whose input is (T, B, 6)",
        "layer 0 (Linear) takes 7 input features (last dimension), got 6",
    )
    assert "mat1" not in line


def test_validate_a_torch_error_from_the_model_is_a_usage_error(small_onnx, capsys, monkeypatch):
    import lifexport.validation

    def failing(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x6 and 7x8)")

    monkeypatch.setattr(lifexport.validation, "validate", failing)
    argv = ["validate", str(small_onnx), "--model", "tests.cli_models:small_lif_stack"]
    usage_error(argv, capsys, "--model tests.cli_models:small_lif_stack does not fit", "mat1")


@pytest.mark.parametrize("command", ["demo", "validate"])
def test_a_misspelt_provider_is_named_with_the_available_ones(command, capsys, monkeypatch):
    import onnxruntime as ort

    from lifexport import _demo

    ran = []
    monkeypatch.setattr(_demo, "run_demo", lambda *a, **k: ran.append(a))
    argv = [command, *(["missing.onnx"] if command == "validate" else [])]
    line = usage_error(
        [*argv, "--providers", "CPUExecutionProvider", "CPUExecutionProvidr"],
        capsys,
        "argument --providers: unknown onnxruntime execution provider 'CPUExecutionProvidr'",
        "did you mean 'CPUExecutionProvider'?",
    )
    assert line.endswith(f"(available here: {', '.join(ort.get_available_providers())})")
    assert ran == []


def test_demo_out_that_is_a_file_is_refused_before_any_work(capsys, monkeypatch, tmp_path):
    from lifexport import _demo

    ran = []
    monkeypatch.setattr(_demo, "run_demo", lambda *a, **k: ran.append(a))
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    usage_error(
        ["demo", "--out", str(notes)],
        capsys,
        f"argument --out: expected a folder (created if missing), got {str(notes)!r}, which "
        "is a file",
    )
    assert ran == [] and notes.read_text() == "mine"


def test_run_demo_checks_its_arguments_before_any_work(tmp_path):
    from lifexport._demo import run_demo

    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(ValueError, match=r"^out_dir '.*notes\.txt' is a file; name a folder"):
        run_demo(notes)
    with pytest.raises(ValueError, match=r"^out_dir '.*notes\.txt/out' cannot be created: "):
        run_demo(notes / "out")
    assert notes.read_text() == "mine"
    with pytest.raises(ValueError, match=r"^providers: unknown .* 'CPU' \(available here: "):
        run_demo(tmp_path / "out", providers=("CPU",))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "error",
    [
        ValueError("example_input does not fit"),
        TypeError("model must be a module"),
        __import__("lifexport.errors").errors.ExportError("layer 3 (LSTM) cannot be exported"),
        PermissionError(13, "Permission denied", "/somewhere/file"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_command_reports_api_errors_in_one_line(error, capsys, monkeypatch, tmp_path):
    import lifexport.export

    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(lifexport.export, "to_onnx", failing)
    line = usage_error(["export", SPEC, str(tmp_path / "a.onnx"), "--shape", SHAPE], capsys)
    assert line.startswith("lifexport export: error: ")
    assert (error.strerror if isinstance(error, OSError) else str(error)) in line


def test_export_masks_select_then_validate(tmp_path, capsys):
    out = tmp_path / "select.onnx"
    argv = ["export", SPEC, str(out), "--shape", SHAPE, "--masks", "select"]
    assert main(argv) == EXIT_OK, capsys.readouterr().err
    model = onnx.load(out)
    scan = next(n for n in model.graph.node if n.op_type == "Scan")
    body = [n.op_type for n in next(a.g for a in scan.attribute if a.name == "body").node]
    assert body.count("Where") == 3  # the LIFRefrac layer's masks, as selections
    capsys.readouterr()
    assert main(["validate", str(out), "--model", SPEC, "--providers", "CPUExecutionProvider"]) == 0
    argv = ["export", SPEC, str(tmp_path / "t.onnx"), "--shape", SHAPE, "--masks", "select"]
    usage_error([*argv, "--mode", "training"], capsys, "masks='select' is for inference graphs")
