"""Bad backends and inputs the kernels cannot run get errors that say what is needed."""

from __future__ import annotations

import pytest
import torch

import lifexport.kernels as kernels
from lifexport.functional import LIFParameters, LIFRefracParameters
from lifexport.modules import LI, LIF, LIFRefrac, LIFRefracRecurrent
from tests.kernels._reference import inputs


@pytest.mark.parametrize("cls", (LIFRefrac, LIF, LI))
@pytest.mark.parametrize("backend", ("cuda", "Triton", None, 1))
def test_unknown_backend(cls, backend):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'scan', 'triton'; got"):
        cls(backend=backend)


def test_recurrent_layers_have_no_backend():
    with pytest.raises(TypeError):
        LIFRefracRecurrent(3, 4, backend="triton")


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
    with pytest.raises(RuntimeError, match="float32 or float64, got input of dtype torch.float16"):
        LI(backend="triton").half()(inputs(2, 1, 3, dtype=torch.float16))


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
