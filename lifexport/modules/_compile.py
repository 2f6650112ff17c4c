"""``lifexport.compile``: ``torch.compile`` with one graph for every sequence length."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from lifexport.kernels import triton_available
from lifexport.modules._layers import FusedSequenceLayer
from lifexport.modules._neuron import NeuronModule
from lifexport.modules.sequential import TimeLoop

__all__ = ["compile"]


class CompiledSequence(torch.nn.Module):
    """A compiled sequence module that serves every T >= 1 with one graph.

    Its inputs have their time axis marked dynamic, and sizes are reasoned about "size
    obliviously" (torch's ``backed_size_oblivious``), so T=1 does not get a graph of its own
    (torch otherwise specialises sizes 0 and 1). Bad input gets the error the eager module
    gives, not a compiler error: see :meth:`forward`.
    """

    def __init__(self, module: torch.nn.Module, compiled: Any) -> None:
        super().__init__()
        self.module = module
        # Not a submodule: it wraps ``module``, whose tensors ``state_dict`` already holds once.
        object.__setattr__(self, "_compiled", compiled)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if isinstance(x, Tensor) and x.dim() > 0:
            torch._dynamo.maybe_mark_dynamic(x, 0)
        try:
            with torch.fx.experimental._config.patch(backed_size_oblivious=True):
                return self._compiled(x, state)
        except torch._dynamo.exc.TorchDynamoException as error:
            compile_error = error
        # The module's argument checks raise inside traced code, where dynamo turns them
        # into its own errors (torch 2.13: `Unsupported`, `UncapturedHigherOrderOpError`).
        # Running the call eagerly raises the documented ValueError/TypeError instead; if
        # eager succeeds, the failure was the compiler's, and its error is the one to see.
        self.module(x, state)
        raise compile_error


def _loops_on_the_host(module: torch.nn.Module) -> bool:
    """Whether some time loop of ``module`` is a ``scan`` (the host runs its iterations), not
    a fused kernel: a ``TimeLoop``, or a sequence layer whose backend will not pick the kernel
    for the module's device."""
    on_cuda = any(t.is_cuda for t in (*module.parameters(), *module.buffers()))
    for layer in module.modules():
        if isinstance(layer, TimeLoop):
            return True
        if isinstance(layer, NeuronModule) and layer.is_sequence:
            fused = (
                isinstance(layer, FusedSequenceLayer)
                and layer.kernel_supported
                and (layer.backend == "triton" or (layer.backend == "auto" and on_cuda))
            )
            if not (fused and triton_available()):
                return True
    return False


def compile(module: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:  # noqa: A001
    """``torch.compile(module, fullgraph=True, **kwargs)``, one graph for every T.

    A lifexport sequence module (``LIFRefrac``, ``LIFRefracRecurrent``, a sequence
    ``SequentialState``, ``TimeLoop``) compiles its time loop as one ``scan``; its time axis
    is marked dynamic, so one compiled graph serves every T >= 1, T=1 included. Bad input
    raises the same ``ValueError``/``TypeError`` as the eager module. Cells and other modules
    are compiled as they are.

    CUDA graphs (``mode="reduce-overhead"`` or ``"max-autotune"``) cannot hold the ``scan``
    loop, whose trip count the host decides: torch 2.11 either fails ("storage data ptrs are
    not allocated in pool") or, with the loop's results copied into the pool, replays wrong
    values. So a sequence module with such a loop compiles in that mode with CUDA graphs
    skipped for its (dynamic-T) graphs, and a warning says so. Cells, and sequence modules
    whose every loop is a fused kernel (``backend="triton"``, or ``"auto"`` on a module already
    on CUDA), have no host loop and get CUDA graphs (recorded once per T).

    Under ``DistributedDataParallel``, compile first and wrap the result:
    ``DistributedDataParallel(lifexport.compile(model))``. The other order is refused: DDP's
    own forward does not trace as one graph (torch 2.13: ``Unsupported`` under
    ``fullgraph=True``), and the wrapper hides that the module is a sequence module, whose
    time axis must be marked dynamic.

    Raises:
        TypeError: ``module`` is a ``DistributedDataParallel``.

    Examples:
        >>> import lifexport
        >>> net = lifexport.compile(lifexport.LIFRefrac())
        >>> spikes, state = net(torch.zeros(10, 2, 3))  # later calls may use any T
    """
    if isinstance(module, DistributedDataParallel):
        raise TypeError(
            "lifexport.compile(module): expected the model itself, got a "
            f"DistributedDataParallel around a {type(module.module).__name__}; compile the "
            "model first, then wrap it in DistributedDataParallel: "
            "DistributedDataParallel(lifexport.compile(model))"
        )
    sequence = getattr(module, "is_sequence", False)
    mode = kwargs.get("mode")
    if sequence and mode is not None and _loops_on_the_host(module):
        options = torch._inductor.list_mode_options(mode)
        if options.get("triton.cudagraphs"):
            warnings.warn(
                f"lifexport.compile(mode={mode!r}): CUDA graphs cannot capture the time loop "
                "(a scan whose trip count the host decides), so this sequence module runs "
                "without them; the rest of the mode applies",
                UserWarning,
                stacklevel=2,
            )
            del kwargs["mode"]
            kwargs["options"] = {
                **options,
                "triton.cudagraph_skip_dynamic_graphs": True,
                **kwargs.get("options", {}),
            }
    compiled = torch.compile(module, fullgraph=True, **kwargs)
    if sequence:
        return CompiledSequence(module, compiled)
    return compiled
