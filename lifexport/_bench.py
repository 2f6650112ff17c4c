"""Speed of LIF-refrac layers: lifexport eager, compiled and in onnxruntime, against Norse
1.1.0 and the hardware floors, on CPU or CUDA. Run it with ``scripts/bench.py`` or
``lifexport bench``:

    lifexport bench                                   # CPU, (T, B, N) = (100, 32, 512)
    lifexport bench --device cuda                     # the same on CUDA
    lifexport bench --device cuda --t 500 --b 256 --n 1024 --spikingjelly

Workloads (time-major input of shape (T, B, N), float32):
    W1  neuron only:      LIFRefrac
    W2  Linear + neurons: Linear(N, N) applied to all T*B rows, then LIFRefrac
Variants, each forward (under ``no_grad``) and forward+backward:
    norse eager               Norse 1.1.0's LIFRefracCell in a Python loop (when installed)
    lifexport eager scan      the sequence layer with ``backend="scan"`` (the step function)
    lifexport eager triton    ``backend="triton"``: the fused kernel (CUDA only; on CPU it runs
                              only in Triton's interpreter, which is no speed measure)
    lifexport compiled scan   ``lifexport.compile`` of the scan layer
    lifexport compiled triton ``lifexport.compile`` of the triton layer (CUDA only)
    lifexport compiled triton bf16
                              W1 only, CUDA only: the same on the input in bfloat16, called
                              under ``torch.autocast("cuda", dtype=torch.bfloat16)`` (float32
                              dynamics, bfloat16 spikes; the kernel reads and writes bfloat16)
onnxruntime, forward: the sequence graph on the CPU EP (host arrays) and, with ``--device cuda``,
on the CUDA EP with IO binding (the input bound in place on the device, outputs left on it);
on CPU also the step graph driven once per step at B=1 (reported per step).
Floors, in the same run: ``copy``, ``x.clone()`` of the input (reads and writes T*B*N elements
once, and allocates its result as every variant does), on CUDA also ``copy bf16``, the same
of the input in bfloat16 (the floor of the bf16 row), and ``gemm``, ``x @ W`` with W2's
Linear weight, a (T*B, N) x (N, N) product.
Peak memory of one W1 forward+backward per variant, above what was allocated before it (the
input is allocated before; its gradient and the spikes count): on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set of a fresh process (Linux's
VmHWM, reset through ``/proc/self/clear_refs``), where torch's CPU allocator has no counter.

``--spikingjelly`` (CUDA only) adds workload ``LIF T=32 B=64 N=65536``, SpikingJelly's Triton LIF
tutorial's shape, forward and forward+backward, each variant with the input in float32 and in
bfloat16 (its name ends in `` float32`` or `` bf16``):
    spikingjelly LIFNode (triton)           SpikingJelly 2.0's multi-step LIFNode on its Triton
                                            implementation; bf16: the bfloat16 input as it is
                                            (its fused paths take it, with a float32 state)
    lifexport LIF eager triton MODE         ``LIF(backend="triton", memory=MODE)``; bf16: the
                                            bfloat16 input under ``torch.autocast``, as above
    lifexport LIF compiled triton MODE      ``lifexport.compile`` of the same
    lifexport LIFRefrac compiled triton MODE  the same for ``LIFRefrac``, for its cost over LIF
MODE is what the fused kernel's backward works from: ``store`` (every step's state, kept by
the forward) or ``recompute`` (a checkpoint every 32 steps, the rest recomputed). Each
variant's peak memory of one forward+backward is measured too, against its input's size.

Ratios, from the rows of one run, with the issues' targets where they set one: lifexport
against the floors (W1 forward, bf16 too) and Norse, onnxruntime against ``lifexport.compile``;
beside SpikingJelly, per dtype and mode: lifexport LIF / SpikingJelly (forward+backward
<= 0.8), LIFRefrac / LIF (forward+backward <= 1.2), peak memory of ``store`` / SpikingJelly's
(<= 1) and of ``recompute`` / the input (<= 3).

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones (compilation
happens there); on CUDA each timed run is bracketed by ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import inspect
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lifexport.export import to_onnx
from lifexport.graph import X, StateLayout
from lifexport.kernels import triton_available
from lifexport.modules import LIF, LIFRefrac, SequentialState
from lifexport.modules import compile as lifexport_compile
from lifexport.validation import make_session

DEVICES = ("cpu", "cuda")
SPIKINGJELLY_SHAPE = (32, 64, 65536)  # (T, B, N) of SpikingJelly's Triton LIF tutorial
PRECISIONS = {"float32": torch.float32, "bf16": torch.bfloat16}  # variant suffix: input dtype
MEMORY_MODES = ("store", "recompute")  # the fused backward's modes compared with SpikingJelly
BF16_W1 = "lifexport compiled triton bf16"  # W1 on a bfloat16 input under autocast (CUDA)
CPU_EP, CUDA_EP = "CPUExecutionProvider", "CUDAExecutionProvider"
Run = Callable[[torch.Tensor], torch.Tensor]  # input (T, B, N) -> spikes (T, B, N)


@dataclass
class Config:
    t: int = 100  # time steps
    b: int = 32  # batch
    n: int = 512  # neurons (and Linear width)
    repeats: int = 10  # timed runs per figure (the median is reported)
    warmup: int = 3  # untimed runs first (compilation happens here)
    threads: int = 0  # torch and onnxruntime threads; 0 keeps torch's default
    device: str = "cpu"  # "cpu" or "cuda"; on CUDA every timed run is synchronised
    norse: bool = True  # include Norse 1.1.0 when it is installed
    onnxruntime: bool = True  # include the onnxruntime rows
    compiled: bool = True  # include the lifexport.compile rows (each graph compiles first)
    memory: bool = True  # peak memory of one forward+backward per W1 (and SpikingJelly) variant
    spikingjelly: bool = False  # SpikingJelly's Triton LIF vs lifexport LIF, float32 and bf16

    def __post_init__(self) -> None:
        lows = dict(t=1, b=1, n=1, repeats=1, warmup=0, threads=0)
        for name, low in lows.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Config.{name} must be an int >= {low}, got {value!r}")
        if self.device not in DEVICES:
            raise ValueError(f"Config.device must be one of {DEVICES}, got {self.device!r}")

    def timed(self, fn: Callable[[], object]) -> float:
        """:func:`median_ms` with this run's repeats, warm-up and device synchronisation."""
        sync = torch.cuda.synchronize if self.device == "cuda" else None
        return median_ms(fn, self.repeats, self.warmup, sync=sync)


def median_ms(
    fn: Callable[[], object],
    repeats: int,
    warmup: int,
    sync: Callable[[], object] | None = None,
) -> float:
    """The median wall time of ``repeats`` calls after ``warmup`` untimed ones, in ms.

    ``sync`` (``torch.cuda.synchronize`` for CUDA work) is called before the first timed call
    and inside each timed region after the call, so a figure covers the device's work too.
    """
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def device_problem(device: str) -> str:
    """Why torch cannot run the benchmark on ``device`` ("" when it can)."""
    if device not in DEVICES:
        return f"unknown device {device!r}; expected one of {DEVICES}"
    if device == "cuda" and not torch.cuda.is_available():
        return (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); run on a machine with a CUDA GPU, or use --device cpu"
        )
    return ""


# -- what runs -------------------------------------------------------------------------------

VARIANTS = (
    "norse eager",
    "lifexport eager scan",
    "lifexport eager triton",
    "lifexport compiled scan",
    "lifexport compiled triton",
)


def _linear(cfg: Config) -> torch.nn.Linear:
    """W2's Linear layer: the same weights for every variant."""
    torch.manual_seed(1)
    return torch.nn.Linear(cfg.n, cfg.n)


def _norse(linear: torch.nn.Linear | None, device: str) -> Run:
    """Norse 1.1.0's way: its LIFRefracCell in a Python loop over time."""
    from norse.torch import LIFRefracCell

    cell = LIFRefracCell().to(device)

    def run(x):
        h = x if linear is None else linear(x)
        state, spikes = None, []
        for h_t in h:
            z, state = cell(h_t, state)
            spikes.append(z)
        return torch.stack(spikes)

    return run


def build(variant: str, linear: torch.nn.Linear | None, device: str) -> Run:
    """The variant's model on ``device`` as a function from input to spikes; W2 with
    ``linear``, W1 without."""
    if linear is not None:
        linear = copy.deepcopy(linear).to(device)
    if variant == "norse eager":
        return _norse(linear, device)
    backend = variant.rsplit(" ", 1)[-1]
    neurons = LIFRefrac(backend=backend)
    model = (neurons if linear is None else SequentialState(linear, neurons)).to(device)
    if " compiled " in variant:
        model = lifexport_compile(model)
    return lambda x: model(x)[0]


def in_precision(run: Run, precision: str, device: str) -> Run:
    """``run`` as lifexport's layers are called in ``precision`` (a :data:`PRECISIONS` key):
    ``"float32"`` as it is; ``"bf16"`` under ``torch.autocast(device, dtype=torch.bfloat16)``,
    where a float32 layer takes the bfloat16 input, computes in float32 and returns bfloat16
    spikes. The backward runs outside autocast, as torch recommends."""
    if precision == "float32":
        return run

    def autocast(x):
        with torch.autocast(device, dtype=PRECISIONS[precision]):
            return run(x)

    return autocast


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module object without a spec, as in some test set-ups
        return module in sys.modules


def variants(cfg: Config, notes: list[str]) -> list[str]:
    """The variants this run measures; why any other is left out goes to ``notes``."""
    chosen = []
    for variant in VARIANTS:
        why = ""
        if variant == "norse eager" and not cfg.norse:
            why = "left out (--no-norse)"
        elif variant == "norse eager" and not _have("norse"):
            why = "Norse is not installed (pip install norse==1.1.0)"
        elif " compiled " in variant and not cfg.compiled:
            why = "left out (--no-compiled)"
        elif variant.endswith("triton") and cfg.device == "cpu":
            why = (
                "CUDA only: on CPU the kernels run only in Triton's interpreter "
                "(TRITON_INTERPRET=1), a correctness tool, not a speed measure"
            )
        elif variant.endswith("triton") and not triton_available():
            why = "Triton is not installed"
        if why:
            notes.append(f"{variant}: {why}")
        else:
            chosen.append(variant)
    return chosen


def bf16_absent(cfg: Config) -> str:
    """Why :data:`BF16_W1` is not measured in this run ("" when it is)."""
    if cfg.device != "cuda":
        return (
            "CUDA only: the row measures the fused kernel reading and writing bfloat16 under "
            "torch.autocast, and the kernel runs on CUDA only (on CPU the layers upcast to "
            "float32 and run the scan path, as the float32 rows do)"
        )
    if not cfg.compiled:
        return "left out (--no-compiled)"
    if not triton_available():
        return "Triton is not installed"
    return ""


def _input(cfg: Config, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    torch.manual_seed(0)
    return 3 * torch.rand(shape or (cfg.t, cfg.b, cfg.n), device=cfg.device)  # (T, B, N)


# -- timing ----------------------------------------------------------------------------------


def _time_both(cfg: Config, run: Run, x: torch.Tensor) -> tuple[float, float]:
    """Median ms of ``run`` forward (no grad) and forward+backward (w.r.t. the input)."""
    x_grad = x.detach().clone().requires_grad_()

    def forward():
        with torch.no_grad():
            run(x)

    def forward_backward():
        x_grad.grad = None
        run(x_grad).sum().backward()

    return cfg.timed(forward), cfg.timed(forward_backward)


def _floors(cfg: Config, x: torch.Tensor, add: Callable) -> None:
    weight = _linear(cfg).weight.detach().to(cfg.device).t()  # (N, N): x @ W as Linear does
    add("-", "floor: copy", "forward", cfg.timed(lambda: x.clone()))
    if cfg.device == "cuda":  # the floor of BF16_W1, which runs on CUDA only
        x_bf16 = x.to(torch.bfloat16)  # (T, B, N)
        add("-", "floor: copy bf16", "forward", cfg.timed(lambda: x_bf16.clone()))
    add("-", "floor: gemm", "forward", cfg.timed(lambda: x @ weight))


def _bf16_w1_rows(cfg: Config, x: torch.Tensor, add, result, log) -> None:
    """W1 through ``lifexport.compile`` of the triton layer on ``x`` in bfloat16, under
    autocast (:data:`BF16_W1`), or the reason it is absent in ``result.notes``."""
    absent = bf16_absent(cfg)
    if absent:
        floor = " and floor: copy bf16" if cfg.device != "cuda" else ""
        result.notes.append(f"W1 {BF16_W1}{floor}: {absent}")
        return

    def measure() -> None:
        # A fresh compile cache: every variant before compiled the same forward function, and
        # dynamo's recompile limit (8 graphs per function) would be close.
        torch.compiler.reset()
        run = build("lifexport compiled triton", None, cfg.device)
        run = in_precision(run, "bf16", cfg.device)
        forward, forward_backward = _time_both(cfg, run, x.to(torch.bfloat16))
        add("W1", BF16_W1, "forward", forward)
        add("W1", BF16_W1, "fwd+bwd", forward_backward)

    result.attempt(f"W1 {BF16_W1}", measure, log)


def _onnxruntime(notes: list[str]) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        notes.append(f"onnxruntime rows: onnxruntime does not import ({error})")
        return None
    return onnxruntime


def _cuda_session(ort: Any, path: Path, notes: list[str]) -> Any:
    """A CUDA EP session whose matrix products use TF32 exactly when torch's do (torch's
    float32 default is off), or None with the reason in ``notes``."""
    available = ort.get_available_providers()
    if CUDA_EP not in available:
        notes.append(
            f"onnxruntime CUDA EP: not in onnxruntime {ort.__version__}'s providers "
            f"{available}; install onnxruntime-gpu"
        )
        return None
    tf32 = "1" if torch.backends.cuda.matmul.allow_tf32 else "0"
    options = {"device_id": str(torch.cuda.current_device()), "use_tf32": tf32}
    session = make_session(path, CUDA_EP, options=options)
    if session.get_providers()[0] != CUDA_EP:
        notes.append(f"onnxruntime CUDA EP: the session fell back to {session.get_providers()}")
        return None
    return session


def _io_bound(session: Any, x: torch.Tensor) -> Callable[[], object]:
    """A run of ``session`` on the device tensor ``x`` in place, outputs left on the device."""
    import numpy as np

    x = x.contiguous()
    device = torch.cuda.current_device()
    binding = session.io_binding()
    binding.bind_input(X, "cuda", device, np.float32, list(x.shape), x.data_ptr())
    for output in session.get_outputs():
        binding.bind_output(output.name, "cuda", device)
    return lambda: (session.run_with_iobinding(binding), x)  # x stays alive with the binding


def _ort_rows(
    workload: str, model_cpu: torch.nn.Module, x: torch.Tensor, cfg: Config, add, result, log
) -> None:
    """The sequence graph over the whole input (CPU EP; CUDA EP with --device cuda), and on
    CPU the step graph at B=1, per step; each measured on its own."""
    ort = _onnxruntime(result.notes)
    if ort is None:
        return
    threads = cfg.threads or torch.get_num_threads()
    x_host = x.cpu()
    with tempfile.TemporaryDirectory() as folder:
        seq = to_onnx(model_cpu, x_host[:2], Path(folder) / "seq.onnx", with_state=False)

        def cuda_ep():
            session = _cuda_session(ort, seq.path, result.notes)
            if session is not None:
                run = _io_bound(session, x)
                add(workload, "onnxruntime CUDA EP sequence", "forward", cfg.timed(run))

        def cpu_ep():
            session = make_session(seq.path, threads=threads)
            feeds = {X: x_host.numpy()}
            ms = median_ms(lambda: session.run(None, feeds), cfg.repeats, cfg.warmup)
            add(workload, "onnxruntime CPU EP sequence", "forward", ms)

        if cfg.device == "cuda":
            result.attempt(f"{workload} onnxruntime CUDA EP sequence", cuda_ep, log)
        result.attempt(f"{workload} onnxruntime CPU EP sequence", cpu_ep, log)
        if cfg.device == "cpu":

            def step():
                _ort_step_row(workload, model_cpu, x_host, cfg, add, Path(folder))

            result.attempt(f"{workload} onnxruntime CPU EP step", step, log)


def _ort_step_row(workload, model, x, cfg: Config, add, folder: Path) -> None:
    """The step graph on the CPU EP at B=1, driven once per step; ms per step."""
    step = to_onnx(model, x[0, :1], folder / "step.onnx", graph="step")
    session = make_session(step.path, threads=1)
    x1 = x[:, :1].numpy()  # (T, 1, N)
    rest = model.initial_state(x[0, :1])
    state = dict(zip(step.state_names, (t.numpy() for t in StateLayout(rest).flatten(rest))))
    names = list(step.contract.next_names)

    def stream():
        s = dict(state)
        for x_t in x1:
            out = session.run(names, {X: x_t, **s})
            s = dict(zip(step.state_names, out))

    add(workload, "onnxruntime CPU EP step B=1", "per step", cfg.timed(stream) / cfg.t)


# -- peak memory -----------------------------------------------------------------------------

CPU_MEMORY_METHOD = (
    "CPU: peak resident set (VmHWM, reset through /proc/self/clear_refs) of a fresh process "
    "over one W1 forward+backward, minus its resident set before (input allocated, graphs "
    "compiled at T=2)"
)
CUDA_MEMORY_METHOD = (
    "CUDA: torch.cuda.max_memory_allocated over one forward+backward minus "
    "torch.cuda.memory_allocated before it (input allocated, graphs compiled)"
)


def _cuda_peak(run: Run, x: torch.Tensor) -> int:
    """Bytes allocated at the peak of one forward+backward above those allocated before."""
    x_grad = x.detach().clone().requires_grad_()
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run(x_grad).sum().backward()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _status_kb(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no {key} in /proc/self/status")
    return int(match.group(1))


def peak_child(spec: str) -> None:
    """In a fresh process: print the resident bytes at the peak of one W1 forward+backward
    of ``spec``'s variant (JSON: variant, config) above the resident bytes before it."""
    spec_data = json.loads(spec)
    cfg = Config(**spec_data["config"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = build(spec_data["variant"], None, "cpu")
    small = _input(cfg, (2, cfg.b, cfg.n)).requires_grad_()
    run(small).sum().backward()  # compiles, and makes every lazy first-call allocation
    x = _input(cfg).requires_grad_()
    del small
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status_kb("VmRSS")
    run(x).sum().backward()
    print(json.dumps({"peak_bytes": 1024 * (_status_kb("VmHWM") - base)}))


def _cpu_peak(variant: str, cfg: Config) -> int:
    """:func:`peak_child` in a subprocess: a fresh process, whose allocator holds no memory
    freed by earlier rows (which would hide new allocations from the resident set)."""
    spec = json.dumps(dict(variant=variant, config=asdict(cfg)))
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, path) if p))
    code = "import sys; from lifexport._bench import peak_child; peak_child(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, spec], capture_output=True, text=True, env=env
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        error = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the measuring process failed (exit {done.returncode}): {error}")
    return int(json.loads(lines[-1])["peak_bytes"])


def memory_row(workload: str, variant: str, peak: int, x: torch.Tensor) -> dict:
    """A row of the memory table: ``peak`` bytes above the start, against the input ``x``."""
    input_bytes = x.numel() * x.element_size()
    return dict(
        workload=workload,
        variant=variant,
        peak_mb=round(peak / 1e6, 3),
        input_mb=round(input_bytes / 1e6, 3),
        x_input=round(peak / input_bytes, 2),
    )


def _peak_row(
    workload: str,
    variant: str,
    measure: Callable[[], int],
    x: torch.Tensor,
    log: Callable[[str], None],
    notes: list[str],
) -> dict | None:
    """:func:`memory_row` of ``measure()``'s peak, or None with the reason in ``notes``."""
    try:
        peak = measure()
    except (OSError, RuntimeError, ValueError) as error:  # out of memory is a RuntimeError
        notes.append(f"peak memory of {variant}: not measured ({_first_line(error)})")
        return None
    row = memory_row(workload, variant, peak, x)
    log(f"  mem {variant:26s} +{row['peak_mb']:.4g} MB ({row['x_input']}x the input)")
    return row


def _memory_rows(cfg: Config, runs: dict[str, Run], x: torch.Tensor, log, notes) -> list:
    """Peak memory of one W1 forward+backward for each variant in ``runs``."""
    rows = []
    for variant, run in runs.items():

        def measure(variant=variant, run=run) -> int:
            return _cuda_peak(run, x) if cfg.device == "cuda" else _cpu_peak(variant, cfg)

        row = _peak_row("W1", variant, measure, x, log, notes)
        if row is not None:
            rows.append(row)
    return rows


# -- SpikingJelly ----------------------------------------------------------------------------


def spikingjelly_absent(device: str) -> str:
    """Why the SpikingJelly comparison cannot run ("" when it can)."""
    reasons = []
    if not _have("spikingjelly"):
        reasons.append(
            "spikingjelly is not installed (not a lifexport dependency; pip install "
            "spikingjelly for the comparison)"
        )
    if device != "cuda":
        reasons.append("its Triton LIF runs on CUDA only (use --device cuda)")
    return "; ".join(reasons)


def _spikingjelly_node(device: str) -> tuple[Any, Any]:
    """SpikingJelly's multi-step LIFNode (tau=2) on its Triton implementation, and its
    ``functional`` module."""
    # Releases without a ``backend`` argument pick the CUDA implementation from this variable.
    os.environ.setdefault("SJ_LIF_CUDA_IMPLEMENTATION", "triton")
    from spikingjelly.activation_based import functional, neuron

    kwargs: dict[str, Any] = dict(tau=2.0, step_mode="m")
    if "backend" in inspect.signature(neuron.LIFNode).parameters:
        kwargs["backend"] = "triton"
    return neuron.LIFNode(**kwargs).to(device), functional


def _spikingjelly_implementation(node: Any, functional: Any, device: str) -> str:
    """The implementation SpikingJelly ran (its own report where it has one)."""
    if hasattr(functional, "neuron_implementation"):  # chosen on the first CUDA call
        chosen = functional.neuron_implementation("lif", torch.device(device))
        return str(chosen.get("implementation", chosen) if isinstance(chosen, dict) else chosen)
    return f"backend={getattr(node, 'backend', '?')}"


BESIDE_SPIKINGJELLY = (("LIF", "eager"), ("LIF", "compiled"), ("LIFRefrac", "compiled"))


def lif_variant(layer: str, kind: str, mode: str, precision: str) -> str:
    """The name of a lifexport row beside SpikingJelly's: ``layer`` (``"LIF"`` or
    ``"LIFRefrac"``), ``kind`` (``"eager"`` or ``"compiled"``), the memory ``mode`` and the
    ``precision`` (a :data:`PRECISIONS` key), e.g. ``lifexport LIF compiled triton store bf16``."""
    return f"lifexport {layer} {kind} triton {mode} {precision}"


def _beside_spikingjelly(layer: type, kind: str, mode: str, precision: str, device: str) -> Run:
    """lifexport's ``layer`` on the triton backend with memory ``mode``, eager or compiled
    (``kind``), called in ``precision`` (see :func:`in_precision`)."""
    model = layer(backend="triton", memory=mode).to(device)
    if kind == "compiled":
        # These layers all compile one forward function: a fresh cache for each keeps dynamo's
        # recompile limit (8 graphs per function) from stopping the later ones.
        torch.compiler.reset()
        model = lifexport_compile(model)
    return in_precision(lambda x: model(x)[0], precision, device)


def _spikingjelly_rows(cfg: Config, add, result: Result, log) -> None:
    """SpikingJelly's Triton LIF, lifexport's ``LIF`` (eager and compiled) and ``LIFRefrac``
    (compiled), triton backend, in each of :data:`MEMORY_MODES`, at :data:`SPIKINGJELLY_SHAPE`
    with the input in each of :data:`PRECISIONS`: forward and forward+backward, and the peak
    memory of one forward+backward, each measured on its own."""
    absent = spikingjelly_absent(cfg.device)
    if absent:
        result.notes.append(f"SpikingJelly rows: absent: {absent}")
        return
    workload = "LIF T={} B={} N={}".format(*SPIKINGJELLY_SHAPE)
    layers = {"LIF": LIF, "LIFRefrac": LIFRefrac}
    ours = triton_available()
    if not ours:
        result.notes.append("lifexport LIF rows beside SpikingJelly: Triton is not installed")
    for precision, dtype in PRECISIONS.items():
        x = _input(cfg, SPIKINGJELLY_SHAPE).to(dtype)  # (T, B, N)

        def measure(name: str, run: Run, x: torch.Tensor = x) -> None:
            forward, forward_backward = _time_both(cfg, run, x)
            add(workload, name, "forward", forward)
            add(workload, name, "fwd+bwd", forward_backward)
            if cfg.memory:
                peak = _peak_row(workload, name, lambda: _cuda_peak(run, x), x, log, result.notes)
                result.memory += [] if peak is None else [peak]

        def spikingjelly(precision: str = precision, measure=measure, x=x) -> None:
            node, functional = _spikingjelly_node(cfg.device)

            def run(x):  # a bfloat16 x as it is: SpikingJelly's fused paths take it
                functional.reset_net(node)  # a fresh state each run, as its tutorial does
                return node(x)

            run(x[:1])
            implementation = _spikingjelly_implementation(node, functional, cfg.device)
            measure(f"spikingjelly LIFNode ({implementation}) {precision}", run)

        result.attempt(f"spikingjelly LIFNode {precision}", spikingjelly, log)
        for layer, kind in BESIDE_SPIKINGJELLY if ours else ():
            for mode in MEMORY_MODES:
                name = lif_variant(layer, kind, mode, precision)

                def lifexport(name=name, how=(layers[layer], kind, mode, precision), m=measure):
                    m(name, _beside_spikingjelly(*how, cfg.device))

                result.attempt(name, lifexport, log)


# -- one run ---------------------------------------------------------------------------------


def _version(module: str) -> str:
    if not _have(module):
        return "not installed"
    try:
        return str(getattr(__import__(module), "__version__", "?"))
    except Exception as error:  # reported, not fatal: the rows say what ran
        return f"does not import ({type(error).__name__})"


def _device_name(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        name = found.group(1).strip() if found else name
    return f"{name}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def command_line(cfg: Config) -> str:
    """The ``lifexport bench`` command that repeats this run."""
    words = ["lifexport", "bench"]
    always = ("t", "b", "n", "device")  # the shape and the device, even at their defaults
    for name, default in asdict(Config()).items():
        value = getattr(cfg, name)
        if isinstance(default, bool) and value != default:
            words.append(f"--{name}" if value else f"--no-{name}")
        elif not isinstance(default, bool) and (value != default or name in always):
            words += [f"--{name}", str(value)]
    return " ".join(words)


def environment(cfg: Config) -> dict[str, str]:
    """What the figures depend on: device, library versions, precision, the command."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    return {
        "command": command_line(cfg),
        "device": _device_name(cfg.device),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime"),
        "triton": _version("triton"),
        "norse": _version("norse"),
        "spikingjelly": _version("spikingjelly"),
        "float32 matmul": "TF32" if tf32 else "strict float32 (TF32 off; also on the CUDA EP)",
    }


@dataclass
class Result:
    """One run: its configuration, environment, timed rows, memory rows, and notes on what
    was left out and why."""

    config: Config
    rows: list[dict] = field(default_factory=list)  # workload, variant, pass_, ms
    memory: list[dict] = field(default_factory=list)  # workload, variant, peak_mb, input_mb,
    # x_input (see memory_row)
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    failures: list[str] = field(default_factory=list)  # what raised while measuring
    environment: dict[str, str] = field(default_factory=dict)

    def attempt(self, what: str, fn: Callable[[], object], log: Callable[[str], None]) -> None:
        """Run one measurement; if it raises, record the failure and go on with the next."""
        try:
            fn()
        except Exception as error:  # reported in the output and the exit status
            message = f"{what}: {type(error).__name__}: {_first_line(error)}"
            self.failures.append(message)
            log(f"  FAILED {message}")

    def ratios(self) -> dict[str, float]:
        """:func:`ratios` of this run's rows and memory rows."""
        return ratios(self.rows, self.config.device, self.memory)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready, with the ratios and how memory was measured."""
        data = asdict(self)
        data["ratios"] = self.ratios()
        data["memory_method"] = self.memory_method
        return data

    @property
    def memory_method(self) -> str:
        """How the peak memory was measured on this run's device."""
        return CUDA_MEMORY_METHOD if self.config.device == "cuda" else CPU_MEMORY_METHOD

    def _memory_lines(self) -> list[str]:
        """The memory tables: W1's at the run's shape, then one per other workload, whose
        rows differ in their input's dtype and so in its size."""
        workloads: dict[str, list[dict]] = {}
        for m in self.memory:
            workloads.setdefault(m["workload"], []).append(m)
        w1 = workloads.pop("W1", [])
        lines = []
        if w1:
            lines += ["", "| peak memory, one W1 forward+backward | MB | x input size |"]
            lines += ["|---|---:|---:|"]
            lines += [f"| {m['variant']} | +{m['peak_mb']:.4g} | {m['x_input']} |" for m in w1]
            lines += ["", f"Input: {w1[0]['input_mb']:.4g} MB. {self.memory_method}."]
        for workload, rows in workloads.items():
            header = f"peak memory, one forward+backward at {workload}"
            lines += ["", f"| {header} | MB | input MB | x input size |", "|---|---:|---:|---:|"]
            lines += [
                f"| {m['variant']} | +{m['peak_mb']:.4g} | {m['input_mb']:.4g} | {m['x_input']} |"
                for m in rows
            ]
        if workloads and not w1:
            lines += ["", f"{self.memory_method}."]
        return lines

    def format(self) -> str:
        """Markdown: the environment, the timings, the ratios, peak memory, the notes."""
        cfg = self.config
        lines = [f"`{self.environment.get('command', command_line(cfg))}`", ""]
        lines += [f"- {k}: {v}" for k, v in self.environment.items() if k != "command"]
        synchronised = "; CUDA-synchronised" if cfg.device == "cuda" else ""
        lines += [
            f"- input: (T, B, N) = ({cfg.t}, {cfg.b}, {cfg.n}) float32; medians of "
            f"{cfg.repeats} runs after {cfg.warmup} warm-up runs{synchronised}",
            "",
            "| workload | variant | pass | ms (median) |",
            "|---|---|---|---:|",
        ]
        lines += [
            f"| {r['workload']} | {r['variant']} | {r['pass_']} | {r['ms']:.3f} |"
            for r in self.rows
        ]
        summary = self.ratios()
        if summary:
            lines += ["", "| ratio (same run) | value |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in summary.items()]
        lines += self._memory_lines()
        if self.failures:
            lines += ["", "FAILED:"] + [f"- {failure}" for failure in self.failures]
        if self.notes:
            lines += ["", "Not measured:"] + [f"- {note}" for note in self.notes]
        return "\n".join(lines)


def bench(cfg: Config, log: Callable[[str], None] = print) -> Result:
    """Measure every row of ``cfg`` (see the module docstring), logging each as it comes.

    Raises:
        ValueError: ``cfg.device`` is not usable here (see :func:`device_problem`).
    """
    problem = device_problem(cfg.device)
    if problem:
        raise ValueError(f"Config.device {cfg.device!r} cannot run: {problem}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    result = Result(cfg)

    def add(workload, variant, pass_, ms):
        result.rows.append(dict(workload=workload, variant=variant, pass_=pass_, ms=round(ms, 4)))
        log(f"  {workload:3s} {variant:30s} {pass_:8s} {ms:9.3f} ms")

    def attempt(what: str, fn: Callable[[], object]) -> None:
        result.attempt(what, fn, log)

    x = _input(cfg)
    _floors(cfg, x, add)
    w1_runs: dict[str, Run] = {}
    for workload in ("W1", "W2"):
        linear = _linear(cfg) if workload == "W2" else None
        for variant in variants(cfg, result.notes if workload == "W1" else []):

            def measure(variant=variant, linear=linear, workload=workload):
                run = build(variant, linear, cfg.device)
                forward, forward_backward = _time_both(cfg, run, x)
                add(workload, variant, "forward", forward)
                add(workload, variant, "fwd+bwd", forward_backward)
                if workload == "W1":
                    w1_runs[variant] = run

            attempt(f"{workload} {variant}", measure)
        if cfg.onnxruntime:
            model = LIFRefrac() if linear is None else SequentialState(linear, LIFRefrac())
            attempt(
                f"{workload} onnxruntime export",
                lambda w=workload, m=model: _ort_rows(w, m, x, cfg, add, result, log),
            )
    if not cfg.onnxruntime:
        result.notes.append("onnxruntime rows: left out (--no-onnxruntime)")
    if cfg.memory:
        result.memory += _memory_rows(cfg, w1_runs, x, log, result.notes)
    else:
        result.notes.append("peak memory: left out (--no-memory)")
    _bf16_w1_rows(cfg, x, add, result, log)  # after the W1 memory rows: it resets compilation
    if cfg.spikingjelly:
        _spikingjelly_rows(cfg, add, result, log)
    else:
        result.notes.append("SpikingJelly rows: not requested (--spikingjelly adds them)")
    result.environment = environment(cfg)  # last: spikingjelly is imported as its rows need
    return result


def _target(device: str, kind: str, workload: str, variant: str, pass_: str) -> str:
    """The bound the speed issues set for a ratio, as " (target ...)", or ""."""
    eager, compiled = " eager " in variant, variant == "lifexport compiled scan"
    w1_training = (workload, pass_) == ("W1", "fwd+bwd")
    training = pass_ == "fwd+bwd"
    if device == "cuda":
        bound = {
            "copy": "<= 3",
            "gemm": "<= 1.3",
            "norse": ">= 5" if eager else (">= 30" if w1_training else ""),
            "CUDA EP": "<= 1.5 at (500, 256, 1024)",
            "EP": "< 1 at (100, 32, 512)",
            "spikingjelly": "<= 0.8" if training else "",
            "LIFRefrac": "<= 1.2" if training else "",
            "memory spikingjelly": "<= 1",
            "memory input": "<= 3",
        }.get(kind, "")
    else:  # the CPU targets, which the compiled scan path is held to
        bound = {
            "copy": "<= 4",
            "gemm": "<= 1.3",
            "norse": {"W1": ">= 10", "W2": ">= 3"}.get(workload, "") if pass_ == "fwd+bwd" else "",
            "CPU EP": "<= 1.2" if workload == "W2" else "",
        }.get(kind, "")
        bound = bound if compiled else ""
    return f" (target {bound})" if bound else ""


def ratios(
    rows: list[dict], device: str = "cpu", memory: list[dict] | None = None
) -> dict[str, float]:
    """The ratios the targets are stated in, from the rows and memory rows of one run (those
    present): lifexport against the floors and against Norse, onnxruntime against
    ``lifexport.compile`` and its CUDA EP against its CPU EP; beside SpikingJelly, per input
    dtype and memory mode, lifexport's LIF against SpikingJelly's (time and peak memory),
    LIFRefrac against LIF, and the ``recompute`` mode's peak memory against the input."""
    ms = {(r["workload"], r["variant"], r["pass_"]): r["ms"] for r in rows}
    out: dict[str, float] = {}

    def put(kind: str, w: str, p: str, num: str, den: str, text: str = "") -> None:
        top, bottom = (w, num, p), ("-" if den.startswith("floor") else w, den, p)
        if top in ms and bottom in ms and ms[bottom] > 0:
            variant = den if den.startswith("lifexport") else num
            target = _target(device, kind, w, variant, p)
            out[f"{w} {p} {text or f'{num} / {den}'}{target}"] = ms[top] / ms[bottom]

    ours = [v for v in VARIANTS if v.startswith("lifexport")]
    for w, floor in (("W1", "copy"), ("W2", "gemm")):
        for v in ours:
            put(floor, w, "forward", v, f"floor: {floor}", f"{v} / {floor} floor")
        if w == "W1":
            put(floor, w, "forward", BF16_W1, "floor: copy bf16", f"{BF16_W1} / copy bf16 floor")
        for p in ("forward", "fwd+bwd"):
            for v in ours:
                put("norse", w, p, "norse eager", v)
        for ep in ("CUDA EP", "CPU EP"):
            for v in ("lifexport compiled scan", "lifexport compiled triton"):
                put(ep, w, "forward", f"onnxruntime {ep} sequence", v)
        cuda, cpu = (f"onnxruntime {ep} sequence" for ep in ("CUDA EP", "CPU EP"))
        put("EP", w, "forward", cuda, cpu, "onnxruntime CUDA EP / CPU EP sequence")
    for w, variant, p in list(ms):
        if variant.startswith("spikingjelly"):
            precision = variant.rsplit(" ", 1)[-1]
            for kind in ("eager", "compiled"):
                for mode in MEMORY_MODES:
                    put("spikingjelly", w, p, lif_variant("LIF", kind, mode, precision), variant)
    for w, variant, p in list(ms):
        if variant.startswith("lifexport LIFRefrac "):
            put("LIFRefrac", w, p, variant, variant.replace(" LIFRefrac ", " LIF ", 1))
    out.update(_memory_ratios(memory or [], device))
    return {k: round(v, 2) for k, v in out.items()}


def _memory_ratios(memory: list[dict], device: str) -> dict[str, float]:
    """Beside SpikingJelly: the ``store`` mode's peak memory against SpikingJelly's in the
    same dtype, and the ``recompute`` mode's against the input."""
    peak = {(m["workload"], m["variant"]): m for m in memory}
    out: dict[str, float] = {}
    for (w, variant), m in peak.items():
        if variant.startswith("spikingjelly") and m["peak_mb"] > 0:
            precision = variant.rsplit(" ", 1)[-1]
            for kind in ("eager", "compiled"):
                store = lif_variant("LIF", kind, "store", precision)
                if (w, store) in peak:
                    target = _target(device, "memory spikingjelly", w, store, "")
                    text = f"{w} peak memory {store} / {variant}{target}"
                    out[text] = peak[w, store]["peak_mb"] / m["peak_mb"]
    for (w, variant), m in peak.items():
        if variant.startswith("lifexport ") and " recompute " in variant:
            target = _target(device, "memory input", w, variant, "")
            out[f"{w} peak memory {variant} / input{target}"] = m["x_input"]
    return out
