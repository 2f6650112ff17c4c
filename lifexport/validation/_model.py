"""Stage 3 of :func:`~lifexport.validation.validate`: the model must be the one the file's
contract describes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lifexport.graph import METADATA, GraphFile, StateLayout, Y
from lifexport.limits import check_elements
from lifexport.modules import neuron_layers, step_module

_EXAMPLE_KEY = next(m.key for m in METADATA if m.field == "example_shape")


def check_model(
    model: torch.nn.Module,
    info: GraphFile,
    xs: Tensor,
    target: Tensor | None,
    loss: Callable | None,
) -> dict[str, torch.nn.Parameter]:
    """The model must be the one the contract describes: it takes the file's input (one step
    on the drive's first, in a ``try``) and has its states and parameters; what torch records
    over the drive stays within the limits.

    Returns:
        The parameter for each parameter input of a training graph, by input name.

    Raises:
        ValueError: a model that is not a lifexport model, does not take the file's input,
            has other states or lacks a parameter input; a missing or superfluous
            ``target``/``loss``; records over the limits.
        TypeError: ``target`` is not a tensor.
    """
    check_target(info, target, loss)
    try:
        neuron_layers(model)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {error}; validate the model that was exported") from error
    x = xs[0].to(device(model))
    try:
        with torch.no_grad():
            state = step_module(model).initial_state(x)
            y, _ = step_module(model).step(x, state)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        raise ValueError(
            f"model ({type(model).__name__}) does not take this file's input: the graph's x "
            f"is {_x_pattern(info)} (metadata {_EXAMPLE_KEY} {list(info.example_shape)}), "
            f"and one step of shape {tuple(x.shape)} raised {type(error).__name__}: {error}; "
            "validate the model that was exported"
        ) from error
    layout = StateLayout(state)
    names = layout.names
    for name, tensor in ((Y, y), *zip(names, layout.flatten(state))):
        check_elements(f"torch's record of {name} over {len(xs)} steps", (len(xs), *tensor.shape))
    if info.state_names and names != info.state_names:
        raise ValueError(
            f"the model's states {list(names)} are not the graph's {list(info.state_names)}; "
            "validate the model that was exported"
        )
    found = dict(model.named_parameters())
    missing = [n for n in info.parameter_names if n not in found]
    if missing:
        raise ValueError(
            f"the graph takes parameters {missing} that the model does not have (its "
            f"parameters: {list(found)}); validate the model that was exported"
        )
    return {n: found[n] for n in info.parameter_names}


def check_target(info: GraphFile, target: Tensor | None, loss: Callable | None) -> None:
    """``target`` and ``loss`` are given exactly where the graph takes a ``target``."""
    if info.has_target:
        if target is None or loss is None:
            raise ValueError(
                f"{info.path.name} takes a 'target' input: pass target= and the loss= it was "
                "exported with"
            )
        if not isinstance(target, Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    elif target is not None or loss is not None:
        what = (
            "training graph has no 'target' input"
            if info.mode == "training"
            else ("inference graph has no loss")
        )
        raise ValueError(
            f"{info.path.name}: this {what} (its loss, if any, is the sum of y); drop target= "
            "and loss="
        )


def device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer; CPU for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _x_pattern(info: GraphFile) -> str:
    """The shape of the graph's ``x``: ``(B, <features>)`` or ``(T, B, <features>)``."""
    axes = ("B",) if info.graph == "step" else ("T", "B")
    return f"({', '.join([*axes, *map(str, info.feature_shape)])})"
