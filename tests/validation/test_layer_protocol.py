"""Validation takes what it knows of a layer from the layer: the torch reference runs the step
path the graph was traced from whatever the layer's backend, the membrane's spike call is the
layer's ``membrane_call`` and its spike state fields are its ``spike_fields``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lifexport
from lifexport.functional import (
    LIFFeedForwardState,
    LIFParameters,
    LIFRefracFeedForwardState,
    LIFRefracParameters,
    lif_refrac_feed_forward_step,
)
from lifexport.validation import validate
from lifexport.validation._reference import step_path

CPU = "CPUExecutionProvider"
T = 40
V_TH = 0.8  # the model's threshold; the graphs were exported with 1.0


def drive(features: int, batch: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(T, batch, features, generator=torch.Generator().manual_seed(seed)) * 3


def first_differing_step(a: torch.Tensor, b: torch.Tensor) -> int:
    steps = (a != b).flatten(1).any(1).nonzero()
    assert len(steps), "the two models never differ on this drive"
    return int(steps[0])


def hidden(nets, backend: str = "auto", v_th: float = V_TH) -> lifexport.SequentialState:
    """Linear -> LIF-refrac as the ``stack_sequence`` graph, with another threshold."""
    layer = lifexport.LIFRefrac(nets.refrac_p(v_th=v_th), backend=backend)
    return lifexport.SequentialState(nets.linear(nets.FEATURES, nets.HIDDEN, seed=1), layer)


def kernel_problem(layer: torch.nn.Module, xs: torch.Tensor) -> str:
    """Why the fused kernel cannot run here, or ``""`` when it runs."""
    try:
        layer(xs)
    except RuntimeError:  # backend="triton" on CPU without Triton's interpreter
        return "the kernels need CUDA tensors or TRITON_INTERPRET=1 here"
    except Exception as error:
        if type(error).__name__ != "InterpreterError":
            raise
        # Seen with triton 3.6 (torch 2.10's) and numpy 2.4: its interpreter fails on the
        # kernels, which compile and run on CUDA with that triton.
        import triton

        return f"Triton {triton.__version__}'s interpreter cannot run the kernels: {error}"
    return ""


def test_a_fused_layer_is_validated_on_its_step_path(exported, nets) -> None:
    """A model whose LIF-refrac runs the fused kernel (``backend="triton"``, in Triton's
    interpreter on CPU) against a graph with another threshold: the reference steps it as the
    graph does, so the report has the flip's margin and the teacher-forced graph bug at the
    step where the runs first differ, exactly as for the same model on ``scan``."""
    _, path = exported("stack_sequence")
    xs = drive(nets.FEATURES, nets.B)
    fused, scan = hidden(nets, "triton"), hidden(nets, "scan")
    problem = kernel_problem(fused, xs)
    if problem:
        pytest.skip(problem)
    with torch.no_grad():  # the model's own forward runs the kernel, equal to the step path
        assert torch.equal(fused(xs)[0], scan(xs)[0])
        expected = first_differing_step(fused(xs)[0], hidden(nets, "scan", v_th=1.0)(xs)[0])

    report = validate(fused, path, xs, providers=[CPU])
    cpu = report.providers[CPU]
    found = cpu.first_mismatch
    assert not report.passed
    assert (found.step, found.layer) == (expected, 1) and not found.numerical
    assert found.margin is not None and 0 < found.margin <= 1.0 - V_TH + 1e-6
    assert cpu.diagnosis is not None
    assert (cpu.diagnosis.verdict, cpu.diagnosis.step) == ("graph bug", expected)
    assert "margin unknown" not in report.format()
    assert fused[1].backend == "triton"  # restored after the run

    on_scan = validate(scan, path, xs, providers=[CPU]).providers[CPU]
    assert found == on_scan.first_mismatch
    assert cpu.diagnosis == on_scan.diagnosis
    assert cpu.max_abs == on_scan.max_abs and cpu.flips == on_scan.flips
    assert cpu.warm.first_mismatch == on_scan.warm.first_mismatch


def test_the_reference_never_runs_the_kernel(exported, nets) -> None:
    """The graph is right for the model: validation passes without a fused call, wherever the
    kernel could run (a kernel call here would raise), and leaves the backend as it was."""
    _, path = exported("stack_sequence")
    model = hidden(nets, "triton", v_th=1.0)

    def kernel(*args, **kwargs):
        raise AssertionError("the reference ran the fused kernel")

    model[1].fused = kernel
    report = validate(model, path, drive(nets.FEATURES, nets.B), providers=[CPU])
    assert report.passed and report.providers[CPU].first_mismatch is None
    assert report.providers[CPU].warm.passed
    assert model[1].backend == "triton"


@pytest.mark.parametrize("backend", ["auto", "triton", "scan"])
def test_step_path_restores_every_backend_after_an_error(nets, backend) -> None:
    model = lifexport.SequentialState(
        lifexport.LIFRefrac(backend=backend), lifexport.LIF(backend="triton"), lifexport.LI()
    )
    with pytest.raises(RuntimeError, match="in the run"), step_path(model):
        assert [model[k].backend for k in range(3)] == ["scan"] * 3
        raise RuntimeError("in the run")
    assert [model[k].backend for k in range(3)] == [backend, "triton", "auto"]


class RefractoryCallFirst(lifexport.LIFRefrac):
    """Declares the step's second spike call (its input: ``rho``) the membrane's."""

    membrane_call = 1


class NoMembraneCall(lifexport.LIFRefrac):
    """Declares no spike call the membrane's."""

    membrane_call = None


def torch_state_before(p: LIFRefracParameters, xs: torch.Tensor, step: int):
    """The LIF-refrac state before ``step``, from rest by the functional step."""
    zeros = torch.zeros_like(xs[0])
    state = LIFRefracFeedForwardState(LIFFeedForwardState(zeros + p.lif.v_leak, zeros), zeros)
    for t in range(step):
        _, state = lif_refrac_feed_forward_step(xs[t], state, p)
    return state


@pytest.mark.parametrize("layer", [lifexport.LIFRefrac, RefractoryCallFirst, NoMembraneCall])
def test_the_margin_is_the_declared_calls(exported, nets, layer) -> None:
    """A graph with threshold 1.0, a model with 0.8: the first flip's margin is the input of
    the layer's ``membrane_call``: ``|v_decayed - v_th|`` for the call the package's layers
    declare, ``|rho| = 0`` (the neuron was not refractory) for the second call, unknown for
    none; a zero margin makes the flip numerical."""
    _, path = exported("lif_refrac")
    p = nets.refrac_p(v_th=V_TH)
    xs = drive(nets.FEATURES, nets.B, seed=3)
    model = layer(p)
    report = validate(model, path, xs, providers=[CPU], numerical_margin=1e-6)
    found = report.providers[CPU].first_mismatch
    with torch.no_grad():
        graph_ys, _ = lifexport.LIFRefrac(nets.refrac_p(v_th=1.0))(xs)
        model_ys, _ = lifexport.LIFRefrac(p)(xs)
    step = first_differing_step(graph_ys, model_ys)
    index = tuple(int(i) for i in (graph_ys[step] != model_ys[step]).nonzero()[0])
    assert (found.name, found.step, found.index) == ("y", step, index)
    before = torch_state_before(p, xs, step)
    v, i = before.lif.v[index], before.lif.i[index] + xs[step][index]  # the input joins i
    if layer is lifexport.LIFRefrac:  # explicit Euler, LIFParameters' defaults, dt = 1e-3
        d = LIFParameters()
        v_decayed = v + 1e-3 * d.tau_mem_inv * ((d.v_leak - v) + i)
        assert found.margin == pytest.approx(abs(float(v_decayed) - V_TH), rel=1e-5)
        assert found.margin > 1e-3 and not found.numerical and not report.passed
    elif layer is RefractoryCallFirst:
        assert found.margin == abs(float(before.rho[index])) == 0.0
        assert found.numerical and report.passed
    else:
        assert found.margin is None and not found.numerical and not report.passed
        assert "margin unknown" in report.format()


class RhoCompared(lifexport.LIFRefrac):
    """Declares its ``rho`` state field a spike field (compared exactly), as a layer whose
    spike state is not named ``z`` would."""

    spike_fields = ("rho",)


@pytest.mark.parametrize("layer", [lifexport.LIFRefrac, RhoCompared])
def test_spike_fields_are_the_layers(exported, nets, layer) -> None:
    """The spike outputs of the report are ``y`` and the state fields the layer declares."""
    _, path = exported("stack_sequence")
    model = lifexport.SequentialState(
        nets.linear(nets.FEATURES, nets.HIDDEN, seed=1), layer(nets.refrac_p())
    )
    xs = drive(nets.FEATURES, nets.B, seed=1)
    report = validate(model, path, xs, providers=[CPU])
    with torch.no_grad():
        ys, (_, final) = model(xs)
    expected = {"y": int(torch.count_nonzero(ys))}
    if layer is RhoCompared:
        expected["next_state.1.rho"] = int(torch.count_nonzero(final.rho))
    assert expected["y"] > 0 and expected.get("next_state.1.rho", 1) > 0
    assert report.spikes == expected
    assert report.passed and np.isclose(report.providers[CPU].max_abs["y"], 0)
