"""Bad backends, memory modes and inputs the kernels cannot run get errors that say what is
needed; ``use_kernel``'s rules for each device and dtype."""

from __future__ import annotations

import pytest
import torch

import lifexport.kernels as kernels
from lifexport.functional import LIFParameters, LIFRefracParameters
from lifexport.modules import LI, LIF, LIFRefrac, LIFRefracRecurrent
from tests.kernels._reference import HALF, case, inputs


@pytest.mark.parametrize("cls", (LIFRefrac, LIF, LI))
@pytest.mark.parametrize("backend", ("cuda", "Triton", None, 1))
def test_unknown_backend(cls, backend):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'scan', 'triton'; got"):
        cls(backend=backend)


@pytest.mark.parametrize("memory", ("Store", "none", "", None, 1))
def test_unknown_memory(memory):
    message = "memory must be one of 'auto', 'store', 'recompute'; got"
    with pytest.raises(ValueError, match=message):
        kernels.check_memory(memory)
    with pytest.raises(ValueError, match=message):
        kernels.stores_states(memory, 10, 10, 2, torch.float32)
    with pytest.raises(ValueError, match=message):
        LIF(memory=memory)


@pytest.mark.usefixtures("interpreter")
def test_unknown_memory_in_a_sequence_call():
    c = case("lif_refrac", "super", inputs(3, 1, 2))
    with pytest.raises(ValueError, match="memory must be one of"):
        kernels.lif_refrac_sequence(c.x, c.state, c.scan.p, c.scan.dt, memory="stored")


@pytest.mark.parametrize("backend", ("cuda", None))
def test_recurrent_layers_check_backend_and_memory(backend):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'scan', 'triton'; got"):
        LIFRefracRecurrent(3, 4, backend=backend)
    with pytest.raises(ValueError, match="memory must be one of 'auto', 'store', 'recompute'"):
        LIFRefracRecurrent(3, 4, memory=backend)


def test_auto_takes_scan_on_cpu():
    assert not kernels.use_kernel("auto", torch.zeros(2, 3))
    assert not kernels.use_kernel("scan", torch.zeros(2, 3))


def test_triton_without_triton(monkeypatch):
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"needs the triton package \(pip install triton\)"):
        LIFRefrac(backend="triton")(inputs(2, 1, 3))
    assert not kernels.use_kernel("auto", torch.zeros(2, 3))


def test_triton_on_cpu_without_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setattr(kernels, "_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA tensor.*TRITON_INTERPRET=1"):
        LIF(backend="triton")(inputs(2, 1, 3))


@pytest.mark.usefixtures("interpreter")
def test_unsupported_dtype():
    x = torch.zeros(2, 3, dtype=torch.int64)
    with pytest.raises(RuntimeError, match="float32 or float64, got input of dtype torch.int64;"):
        kernels.use_kernel("triton", x)
    message = "got input of dtype torch.int64 for a layer computing in torch.float32"
    with pytest.raises(RuntimeError, match=message):
        kernels.use_kernel("triton", x, compute_dtype=torch.float32)
    # A float input of another float dtype than the layer's: not what the kernels compute.
    message = "got input of dtype torch.float32 for a layer computing in torch.float64"
    with pytest.raises(RuntimeError, match=message):
        kernels.use_kernel("triton", torch.zeros(2, 3), compute_dtype=torch.float64)


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("dtype", HALF)
def test_half_input_takes_a_float32_layer(dtype):
    x = torch.zeros(2, 3, dtype=dtype)
    assert kernels.use_kernel("triton", x, compute_dtype=torch.float32)
    assert not kernels.use_kernel("auto", x, compute_dtype=torch.float32)  # CPU: scan
    for compute in (None, torch.float16, torch.bfloat16, torch.float64):
        message = (
            f"reads {dtype} input only into a float32 layer .* but this layer computes in "
            f"{compute or dtype}; run a float32 layer under torch.autocast instead of "
            "converting it, or use backend='scan'"
        )
        with pytest.raises(RuntimeError, match=message):
            kernels.use_kernel("triton", x, compute_dtype=compute)


@pytest.mark.usefixtures("interpreter")
def test_layer_converted_to_bfloat16_says_why():
    layer = LI(backend="triton").to(torch.bfloat16)
    with pytest.raises(RuntimeError, match="this layer computes in torch.bfloat16; run a float32"):
        layer(inputs(2, 1, 3, dtype=torch.bfloat16))


class _OnCuda:
    """What ``use_kernel`` reads of an input (device and dtype), for a CUDA input on a machine
    without one."""

    is_cuda = True
    device = torch.device("cuda")

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


@pytest.mark.parametrize(
    ("dtype", "compute", "auto"),
    (
        (torch.float32, None, True),
        (torch.float16, torch.float32, True),
        (torch.bfloat16, torch.float32, True),
        (torch.float64, None, False),  # a float64 kernel does not compile for the GPU
        (torch.bfloat16, None, False),  # a layer converted to bfloat16
        (torch.float16, torch.bfloat16, False),
        (torch.float32, torch.float64, False),
        (torch.int64, torch.float32, False),
    ),
)
def test_rules_for_cuda_inputs(monkeypatch, dtype, compute, auto):
    monkeypatch.setattr(kernels, "triton_available", lambda: True)
    x = _OnCuda(dtype)
    assert kernels.use_kernel("auto", x, compute_dtype=compute) is auto
    assert not kernels.use_kernel("scan", x, compute_dtype=compute)
    if auto:
        assert kernels.use_kernel("triton", x, compute_dtype=compute)
    else:
        with pytest.raises(RuntimeError, match="backend='triton' (reads|computes)"):
            kernels.use_kernel("triton", x, compute_dtype=compute)
    monkeypatch.setattr(kernels, "triton_available", lambda: False)
    assert not kernels.use_kernel("auto", x, compute_dtype=compute)


def test_cuda_float64_names_the_dtype(monkeypatch):
    monkeypatch.setattr(kernels, "triton_available", lambda: True)
    message = "computes CUDA tensors in float32, got torch.float64"
    with pytest.raises(RuntimeError, match=message):
        kernels.use_kernel("triton", _OnCuda(torch.float64))
    with pytest.raises(RuntimeError, match="computes CUDA tensors in float32, got torch.int64"):
        kernels.use_kernel("triton", _OnCuda(torch.int64))


@pytest.mark.usefixtures("interpreter")
@pytest.mark.parametrize("backend", ("scan", "triton"))
def test_bad_input_same_errors_as_scan(backend):
    p = LIFRefracParameters(LIFParameters(v_th=torch.ones(7)))
    with pytest.raises(ValueError, match=r"p.lif.v_th of shape \(7,\) does not broadcast"):
        LIFRefrac(p, backend=backend)(inputs(3, 2, 5))
    layer = LIFRefrac(backend=backend)
    with pytest.raises(ValueError, match="input has no time steps"):
        layer(torch.zeros(0, 2, 5))
    with pytest.raises(TypeError, match="input must be a floating-point tensor"):
        layer(torch.zeros(3, 2, 5, dtype=torch.int64))
    state = layer.initial_state(torch.zeros(2, 5))
    bad = state._replace(rho=torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"state.rho must have shape \(2, 5\)"):
        layer(inputs(3, 2, 5), bad)
