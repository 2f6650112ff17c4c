"""onnxruntime rows, forward: the sequence graph on the CPU EP (host arrays) and, on CUDA, on
the CUDA EP with IO binding (the input bound in place on the device, outputs left on it); on
CPU also the step graph driven once per step at B=1 (reported per step)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lifexport.bench.config import Config
from lifexport.bench.timing import median_ms
from lifexport.export import to_onnx
from lifexport.graph import StateLayout, X
from lifexport.validation import make_session

if TYPE_CHECKING:
    from lifexport.bench.report import Result

CPU_EP, CUDA_EP = "CPUExecutionProvider", "CUDAExecutionProvider"


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


def ort_rows(
    workload: str,
    model_cpu: torch.nn.Module,
    x: torch.Tensor,
    cfg: Config,
    add: Callable,
    result: Result,
    log: Callable[[str], None],
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
                _step_row(workload, model_cpu, x_host, cfg, add, Path(folder))

            result.attempt(f"{workload} onnxruntime CPU EP step", step, log)


def _step_row(workload, model, x, cfg: Config, add, folder: Path) -> None:
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
