"""Small exported models shared by the validation tests (exported once per session)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import lifexport
from lifexport.export import to_onnx
from lifexport.functional import LIFParameters, LIFRefracParameters

FEATURES, HIDDEN, B = 3, 4, 2


def refrac_p(method: str = "super", alpha: float = 100.0, v_th: float = 1.0):
    return LIFRefracParameters(LIFParameters(v_th=v_th, method=method, alpha=alpha))


def linear(n_in: int, n_out: int, seed: int, scale: float = 0.5) -> torch.nn.Linear:
    """Positive weights, so a [0, 3) drive makes the next layer spike."""
    layer = torch.nn.Linear(n_in, n_out)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(n_out, n_in, generator=gen) * scale)
        layer.bias.zero_()
    return layer


def lif_refrac(method: str = "super") -> torch.nn.Module:
    return lifexport.LIFRefrac(refrac_p(method))


def stack() -> torch.nn.Module:
    return lifexport.SequentialState(linear(FEATURES, HIDDEN, seed=1), lifexport.LIFRefracCell())


def linear_lif_refrac() -> torch.nn.Module:
    """Linear -> LIF-refrac: states ``state.1.v``, ``state.1.i``, ``state.1.rho``."""
    return lifexport.SequentialState(linear(FEATURES, HIDDEN, seed=1), lifexport.LIFRefrac())


def recurrent() -> torch.nn.Module:
    torch.manual_seed(2)
    return lifexport.LIFRefracRecurrent(FEATURES, HIDDEN)


def training_stack() -> torch.nn.Module:
    p = refrac_p("triangle", alpha=1.0)
    return lifexport.SequentialState(linear(FEATURES, HIDDEN, seed=3), lifexport.LIFRefrac(p))


def two_spiking_layers(v_th_hidden: float = 1.0) -> torch.nn.Module:
    """x -> identity -> LIF-refrac (layer 1) -> 15 x identity -> LIF-refrac (layer 3): layer 1
    sees the drive exactly, and each of its spikes makes layer 3 spike in the same step."""
    first, second = (
        torch.nn.Linear(FEATURES, FEATURES, bias=False),
        torch.nn.Linear(FEATURES, FEATURES, bias=False),
    )
    with torch.no_grad():
        first.weight.copy_(torch.eye(FEATURES))
        second.weight.copy_(15 * torch.eye(FEATURES))
    return lifexport.SequentialState(
        first, lifexport.LIFRefrac(refrac_p(v_th=v_th_hidden)), second, lifexport.LIFRefrac()
    )


#: name -> (model factory, graph, example input shape, to_onnx keywords)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], str, tuple[int, ...], dict]] = {
    "lif_refrac": (lif_refrac, "sequence", (5, B, FEATURES), {}),
    "lif_refrac_heaviside": (lambda: lif_refrac("heaviside"), "sequence", (5, B, FEATURES), {}),
    "stack_step": (stack, "step", (B, FEATURES), {}),
    "stack_sequence": (linear_lif_refrac, "sequence", (5, B, FEATURES), {}),
    "recurrent": (recurrent, "sequence", (5, B, FEATURES), {}),
    "recurrent_step": (recurrent, "step", (B, FEATURES), {}),
    "two_layers": (two_spiking_layers, "sequence", (5, B, FEATURES), {}),
    "two_layers_step": (two_spiking_layers, "step", (B, FEATURES), {}),
    "training": (training_stack, "sequence", (5, B, FEATURES), {"mode": "training"}),
}


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Callable[[str], tuple[torch.nn.Module, Path]]:
    """``exported(name) -> (a fresh model, its .onnx file)``, each file written once."""
    folder = tmp_path_factory.mktemp("validate")
    files: dict[str, Path] = {}

    def get(name: str) -> tuple[torch.nn.Module, Path]:
        factory, graph, shape, kwargs = MODELS[name]
        if name not in files:
            files[name] = folder / f"{name}.onnx"
            to_onnx(factory(), torch.rand(shape), files[name], graph=graph, **kwargs)
        return factory(), files[name]

    return get


@pytest.fixture(scope="session")
def nets() -> SimpleNamespace:
    """The factories and sizes above, for the tests (conftest is not importable by name)."""
    return SimpleNamespace(
        FEATURES=FEATURES,
        HIDDEN=HIDDEN,
        B=B,
        refrac_p=refrac_p,
        linear=linear,
        mse=mse,
        lif_refrac=lif_refrac,
        two_spiking_layers=two_spiking_layers,
    )


def mse(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss of the target graphs; the target is batch first, (B, HIDDEN)."""
    return ((y - target) ** 2).mean()


@pytest.fixture(scope="session", params=["step", "sequence"])
def with_target(request, tmp_path_factory) -> tuple[torch.nn.Module, Path, str]:
    """A training graph with a ``target`` input and an MSE loss: ``(model, file, graph)``."""
    graph = request.param
    net = lifexport.SequentialState(
        linear(FEATURES, HIDDEN, seed=5), lifexport.LIFRefrac(refrac_p("tanh", alpha=2.0))
    )
    example = torch.rand((B, FEATURES) if graph == "step" else (5, B, FEATURES))
    path = tmp_path_factory.mktemp("target") / f"target_{graph}.onnx"
    target = torch.rand(B, HIDDEN)
    to_onnx(net, example, path, graph=graph, mode="training", loss=mse, target=target)
    return net, path, graph
