"""The cell and sequence bases a neuron layer builds on: feed-forward and recurrent cells,
the time-major sequence mixin and its fused-kernel variant."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from lifexport.functional import check_parameters, check_state
from lifexport.kernels import DTYPES, check_backend, check_memory, supports_method, use_kernel
from lifexport.modules._neuron import NeuronModule, abstract, check_rank, check_time_steps
from lifexport.modules._time import time_loop


class FeedForwardCell(NeuronModule, abstract=True):
    """One step of neurons driven by an input current of any shape ``(B, ...)``; the output
    has the input's shape.

    Subclasses define the rest of the protocol (see :class:`NeuronModule`):
    ``parameter_names``, ``state_classes``, ``spike_fields``, ``membrane_call``,
    ``state_at_rest(x)`` and ``dynamics(x, state)``, and a constructor that passes
    ``values``, ``method``, ``alpha``, ``dt`` and ``trainable`` to :class:`NeuronModule`.
    """

    is_sequence = False

    def output_shape(self, shape: torch.Size) -> torch.Size:
        """The output has the input's shape."""
        return shape

    def check_input(self, x: Tensor, time: bool) -> None:
        check_rank(x, 2 if time else 1, "(time, batch, ...)" if time else "(batch, ...)")

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One time step: ``(x, state=None) -> (output, state)``."""
        self.check_input(x, time=False)
        self.check_parameter_values()
        return self.step(x, self.initial_state(x) if state is None else state)


class RecurrentCell(NeuronModule, abstract=True):
    """One step of recurrently connected neurons: ``(B, input_size)`` in, ``(B, hidden_size)``
    out, with Norse's weights, initialisation and ``autapses`` switch.

    When ``autapses`` is ``False`` the diagonal of ``recurrent_weights`` is zeroed and masked in
    every step, so self-connections neither act nor learn (whatever a loaded checkpoint holds).
    Subclasses define ``state_at_rest(x)`` and ``dynamics(x, state)`` using :meth:`weights`.
    """

    is_sequence = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        input_weights: Tensor | None,
        recurrent_weights: Tensor | None,
        autapses: bool,
        **neuron: Any,
    ) -> None:
        super().__init__(**neuron)
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.autapses = autapses
        scale = math.sqrt(2.0 / hidden_size)  # Norse's initialisation
        self.input_weights = _weight(
            "input_weights", input_weights, (hidden_size, input_size), scale
        )
        self.recurrent_weights = _weight(
            "recurrent_weights", recurrent_weights, (hidden_size, hidden_size), scale
        )
        if autapses:
            self.autapse_mask = None
        else:
            mask = 1.0 - torch.eye(hidden_size, dtype=self.recurrent_weights.dtype)
            self.register_buffer("autapse_mask", mask, persistent=False)
            with torch.no_grad():
                self.recurrent_weights.fill_diagonal_(0.0)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"autapses={self.autapses}, {super().extra_repr()}"
        )

    def weights(self) -> tuple[Tensor, Tensor]:
        """``(input_weights, recurrent_weights)`` as a step uses them (autapses masked)."""
        w_rec = self.recurrent_weights
        if self.autapse_mask is not None:
            w_rec = w_rec * self.autapse_mask
        return self.input_weights, w_rec

    def output_shape(self, shape: torch.Size) -> torch.Size:
        """``(..., input_size)`` in, ``(..., hidden_size)`` out."""
        return torch.Size((*shape[:-1], self.hidden_size))

    def check_input(self, x: Tensor, time: bool) -> None:
        # The batch axis is optional, as in Norse: (T, input_size) runs one unbatched sequence.
        axes = f"({'time, ' if time else ''}[batch, ]{self.input_size})"
        check_rank(x, 2 if time else 1, axes)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have {self.input_size} features in its last dimension {axes}, "
                f"got shape {tuple(x.shape)}"
            )

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One time step: ``(x, state=None) -> (output, state)``."""
        self.check_input(x, time=False)
        self.check_parameter_values()
        return self.step(x, self.initial_state(x) if state is None else state)


class SequenceLayer:
    """Mixed in before a cell class: the cell's step over a time-major ``(T, B, ...)`` input
    (``class IF(SequenceLayer, IFCell)``), through the ``scan`` loop that compiles and
    exports as one loop.

    ``forward(x, state=None) -> (outputs (T, B, ...), final state)``.
    """

    is_sequence = True

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        if self.autocast_dtype(x) is not None:  # upcast once, not in every step
            x, state = self._upcast(x), tree_map(self._upcast, state)
        return time_loop(self.step, x, self.start(x, state))

    def start(self, x: Tensor, state: Any, dtype: torch.dtype | None = None) -> Any:
        """Check the input and parameter values; the state before the first step, in
        ``dtype`` (the dtype the steps compute in; ``x``'s when ``None``)."""
        self.check_input(x, time=True)
        check_time_steps(x)
        self.check_parameter_values()
        x0 = x[0] if dtype in (None, x.dtype) else x[0].to(dtype)  # one step's input
        if state is None:
            return self.state_at_rest(x0)
        # Checked here, before the loop, so a bad state gets its ValueError outside the
        # traced loop body too; a state that broadcasts (a scalar v) becomes full-size, as
        # the loop's carry must keep one shape.
        shape = self.output_shape(x.shape[1:])
        state = check_state(state, self.state_classes, shape, x0)
        return tree_map(torch.Tensor.contiguous, state)


class FusedSequenceLayer(SequenceLayer):
    """A sequence layer whose time loop can also run as one fused kernel
    (:mod:`lifexport.kernels`), chosen by the keyword-only constructor argument ``backend``
    (see :func:`lifexport.kernels.use_kernel`); exports always trace the step's loop.
    ``memory`` chooses what the kernel's backward works from: ``"store"`` (every step's state,
    kept by the forward: fastest), ``"recompute"`` (a checkpoint every 32 steps, the steps in
    between recomputed: a small fraction of the memory), or ``"auto"`` (``store`` while the
    stored states fit :data:`lifexport.kernels.STORE_LIMIT_BYTES`); see
    :func:`lifexport.kernels.stores_states`. Both give the same values.

    Subclasses define ``fused(x, state) -> (outputs, state)``, the kernel's call, and ``p``,
    the parameter tuple of their functional step. The kernels implement the built-in models
    and surrogates (:data:`lifexport.kernels.KERNEL_METHODS`); with another ``method`` the
    layer runs the ``scan`` loop (``backend="auto"``) or says why it cannot run the kernel
    (``backend="triton"``). ``kernel_dtypes``: the dtypes the kernel computes in.
    """

    kernel_dtypes: tuple[torch.dtype, ...] = DTYPES

    def __init__(
        self, *args: Any, backend: str = "auto", memory: str = "auto", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.backend = check_backend(backend)
        self.memory = check_memory(memory)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        self.check_input(x, time=True)
        check_time_steps(x)
        # The checks each step makes on the parameters' shapes, dtypes and devices, against
        # one step's input in the dtype the steps compute in.
        like = x[0] if self.autocast_dtype(x) is None else self._upcast(x[0])
        check_parameters(self.p, self.output_shape(x.shape[1:]), like, values=False)
        kernel = use_kernel(
            self.backend, x, compute_dtype=like.dtype, method=self.method, dtypes=self.kernel_dtypes
        )
        if not kernel:
            return super().forward(x, state)
        # The kernel reads a half-precision x itself and keeps float32 in registers.
        return self.in_precision(self._fused, x, state, upcast_x=False)

    @abstract
    def fused(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """The whole sequence as the fused kernel's call: ``(outputs, final state)``."""
        raise NotImplementedError

    @property
    def kernel_supported(self) -> bool:
        """Whether the kernels implement this layer's ``method`` (else it runs ``scan``)."""
        return supports_method(self.method)

    def _fused(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.fused(x, self.start(x, state, self.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}, memory={self.memory!r}"


def _weight(name: str, value: Tensor | None, shape: tuple[int, int], scale: float):
    """A weight ``nn.Parameter``: the given tensor (copied) or Norse's random init."""
    if value is None:
        return torch.nn.Parameter(torch.randn(shape) * scale)
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name} must be a tensor of shape {shape}, got {got}")
    return torch.nn.Parameter(value.detach().clone())
