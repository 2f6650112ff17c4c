"""``lifexport.compile``: ``torch.compile`` with a symbolic time axis for sequence modules."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["compile"]


class CompiledSequence(torch.nn.Module):
    """A compiled sequence module whose inputs have their time axis marked dynamic, so a new
    T reuses the compiled code instead of recompiling."""

    def __init__(self, module: torch.nn.Module, compiled: Any) -> None:
        super().__init__()
        self.module = module
        self._compiled = compiled

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        torch._dynamo.maybe_mark_dynamic(x, 0)
        return self._compiled(x, state)


def compile(module: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:  # noqa: A001
    """``torch.compile(module, fullgraph=True, **kwargs)``, T-dynamic for sequence modules.

    A lifexport sequence module (``LIFRefrac``, ``LIFRefracRecurrent``, a sequence
    ``SequentialState``, ``TimeLoop``) compiles its time loop as one ``scan``; marking the
    time axis dynamic lets one compiled graph serve every T. Cells and other modules are
    compiled as they are. (Equivalently: ``torch._dynamo.mark_dynamic(x, 0)`` before the
    first call of ``torch.compile(module, fullgraph=True)``.)

    Examples:
        >>> import lifexport
        >>> net = lifexport.compile(lifexport.LIFRefrac())
        >>> spikes, state = net(torch.zeros(10, 2, 3))  # later calls may use any T
    """
    compiled = torch.compile(module, fullgraph=True, **kwargs)
    if getattr(module, "is_sequence", False):
        return CompiledSequence(module, compiled)
    return compiled
