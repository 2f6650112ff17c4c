"""The base of every neuron layer: parameters held as buffers (or trained parameters)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from lifexport.functional._checks import check_dt
from lifexport.functional.threshold import check_method, surrogate_alpha


class NeuronModule(torch.nn.Module):
    """Holds neuron parameters so ``.to()``, ``state_dict`` and checkpoints just work.

    Every numeric parameter becomes a float tensor: a buffer, or an ``nn.Parameter`` when its
    name is in ``trainable``. ``method`` and ``alpha`` (the surrogate of spiking models; ``None``
    for models that do not spike) stay plain attributes: they are hyperparameters of the spike
    op, not tensors.

    Subclasses define ``step(x, state)`` (one time step of the functional model) and
    ``initial_state(x)`` (the state at rest for one step's input ``x``).
    """

    #: Names of the numeric parameters, in the order the subclass's parameter tuple uses.
    parameter_names: tuple[str, ...] = ()

    def __init__(
        self,
        values: dict[str, Any],
        method: str | None,
        alpha: Any,
        dt: float,
        trainable: Iterable[str],
    ) -> None:
        super().__init__()
        check_dt(dt)
        trainable = tuple(trainable)
        unknown = sorted(set(trainable) - set(self.parameter_names))
        if unknown:
            raise ValueError(
                f"trainable names unknown parameters {unknown}; choose from "
                f"{list(self.parameter_names)}"
            )
        self.dt = float(dt)
        self.method = method
        self.alpha = None
        if method is not None:
            check_method(method, "p.method")
            self.alpha = surrogate_alpha(alpha, "p.alpha")
        for name in self.parameter_names:
            value = values[name]
            tensor = (
                value.detach().clone() if isinstance(value, Tensor) else torch.tensor(float(value))
            )
            if not tensor.dtype.is_floating_point:
                tensor = tensor.to(torch.get_default_dtype())
            if name in trainable:
                self.register_parameter(name, torch.nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def parameter_values(self) -> dict[str, Tensor]:
        """The numeric parameters by name, as the tensors this module holds."""
        return {name: getattr(self, name) for name in self.parameter_names}

    def extra_repr(self) -> str:
        values = ", ".join(
            f"{name}={t.item():g}" if t.numel() == 1 else f"{name}=<{tuple(t.shape)}>"
            for name, t in self.parameter_values().items()
        )
        surrogate = "" if self.method is None else f", method={self.method!r}, alpha={self.alpha:g}"
        return f"{values}{surrogate}, dt={self.dt:g}"

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One time step: ``(x, state=None) -> (output, state)``."""
        return self.step(x, self.initial_state(x) if state is None else state)


def rest(x: Tensor, shape: tuple[int, ...], value: Tensor | None = None) -> Tensor:
    """A fresh state tensor of ``shape`` on ``x``'s device and dtype: zeros, or ``value``
    (a scalar or per-neuron tensor) broadcast to ``shape``."""
    zeros = torch.zeros(shape, dtype=x.dtype, device=x.device)
    return zeros if value is None else zeros + value.detach().to(x.dtype)
