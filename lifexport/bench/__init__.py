"""Speed of LIF-refrac layers: lifexport eager, compiled and in onnxruntime, against Norse
1.1.0 and the hardware floors, on CPU or CUDA. Run it with ``lifexport bench`` (or
``scripts/bench.py``):

    lifexport bench                                   # CPU, (T, B, N) = (100, 32, 512)
    lifexport bench --device cuda                     # the same on CUDA
    lifexport bench --device cuda --t 500 --b 256 --n 1024 --spikingjelly
    lifexport bench --device cuda --t 500 --b 64 --n 512 --recurrent --no-feedforward  # W3 only

Workloads (time-major input of shape (T, B, N), float32), in :mod:`~lifexport.bench.workloads`:
    W1  neuron only:      LIFRefrac
    W2  Linear + neurons: Linear(N, N) applied to all T*B rows, then LIFRefrac
    W3  recurrent:        LIFRefracRecurrent(N, N), with ``--recurrent``
                          (:mod:`~lifexport.bench.recurrent`; ``--no-feedforward`` leaves
                          out W1 and W2 with their floors, onnxruntime, memory and bf16 rows)
Variants, each forward (under ``no_grad``) and forward+backward:
    norse eager               Norse 1.1.0's LIFRefracCell (W3: LIFRefracRecurrentCell) in a
                              Python loop (when installed)
    lifexport eager scan      the sequence layer with ``backend="scan"`` (the step function)
    lifexport eager triton    ``backend="triton"``: the fused kernel (CUDA only; on CPU it runs
                              only in Triton's interpreter, which is no speed measure)
    lifexport compiled scan   ``lifexport.compile`` of the scan layer
    lifexport compiled triton ``lifexport.compile`` of the triton layer (CUDA only)
    lifexport compiled triton bf16
                              W1 only, CUDA only: the same on the input in bfloat16, called
                              under ``torch.autocast("cuda", dtype=torch.bfloat16)``
onnxruntime rows (:mod:`~lifexport.bench.ort_rows`), forward: the sequence graph on the CPU EP
and, on CUDA, on the CUDA EP with IO binding; on CPU also the step graph at B=1, per step.
Floors (:mod:`~lifexport.bench.floors`), in the same run: ``copy``, ``out.copy_(x)`` into a
buffer allocated once; on CUDA also ``copy bf16``, the same in bfloat16; ``gemm``,
``torch.matmul(x, W, out=out)`` with W2's Linear weight into an output allocated once; with
W3, ``gemm recurrent``, its forward's products alone (the input's, then one step's recurrent
product T times), each into an output allocated once; on the torch thread count the report
states.
Peak memory of one W1 forward+backward per variant (:mod:`~lifexport.bench.memory`).
``--spikingjelly`` (CUDA only) adds SpikingJelly's Triton LIF beside lifexport's ``LIF`` and
``LIFRefrac`` (:mod:`~lifexport.bench.spikingjelly_rows`). The ratios and the report are in
:mod:`~lifexport.bench.report`.

Every figure is the median of ``repeats`` timed runs after ``warmup`` untimed ones (compilation
happens there; :func:`~lifexport.bench.timing.median_ms`); on CUDA each timed run is bracketed
by ``torch.cuda.synchronize()``.

The names below are imported on first use: ``import lifexport.bench.timing`` (the timer alone)
loads nothing else of the benchmark.
"""

from __future__ import annotations

import importlib

_LAZY = {  # name: the module that defines it
    "median_ms": "timing",
    "DEVICES": "config",
    "PRECISIONS": "config",
    "MEMORY_MODES": "config",
    "Config": "config",
    "device_problem": "config",
    "VARIANTS": "workloads",
    "BF16_W1": "workloads",
    "build": "workloads",
    "variants": "workloads",
    "in_precision": "workloads",
    "lif_variant": "workloads",
    "bf16_absent": "workloads",
    "floor_runs": "floors",
    "recurrent_rows": "recurrent",
    "recurrent_ratios": "recurrent",
    "CPU_MEMORY_METHOD": "memory",
    "CUDA_MEMORY_METHOD": "memory",
    "memory_row": "memory",
    "SPIKINGJELLY_SHAPE": "spikingjelly_rows",
    "spikingjelly_absent": "spikingjelly_rows",
    "Result": "report",
    "ratios": "report",
    "command_line": "report",
    "environment": "report",
    "bench": "run",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'lifexport.bench' has no attribute {name!r}")
    module = importlib.import_module(f"lifexport.bench.{_LAZY[name]}")
    value = getattr(module, name)
    globals()[name] = value  # later look-ups (and monkeypatching) see a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(_LAZY)
