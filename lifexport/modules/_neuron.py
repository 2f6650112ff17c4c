"""The base of every neuron layer: parameters held as buffers (or trained parameters)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from lifexport.functional import (
    VALUE_RULES,
    check_dt,
    check_parameters,
    check_state,
    check_value,
)
from lifexport.functional.threshold import check_alpha, check_method
from lifexport.kernels import HALF_DTYPES, check_backend, check_memory, use_kernel
from lifexport.modules._time import time_loop


class NeuronModule(torch.nn.Module):
    """The base of every neuron layer, and the contract the layers above rely on.

    Parameters: every numeric parameter (``parameter_names``) is a float tensor, a buffer or,
    when named in ``trainable``, an ``nn.Parameter``, so ``.to()``, ``state_dict`` and
    checkpoints just work. ``method`` (a string) and ``alpha`` (a 0-dim buffer outside
    ``state_dict``) describe the surrogate of spiking models; both are ``None`` for models that
    do not spike.

    The contract, used by :func:`lifexport.compile`, the stacks, export and validation:

    - ``is_sequence``: ``True`` for a time-major layer whose ``forward`` takes ``(T, B, ...)``,
      ``False`` for a cell (one step).
    - ``initial_state(x)``: the state at rest for one step's input ``x``, a NamedTuple of
      tensors (its pytree flattening order is the order of exported state names). Subclasses
      define it as ``state_at_rest(x)``, in ``x``'s dtype; this applies the precision rules.
    - ``step(x, state) -> (y, state)``: one time step, what every time loop runs and what
      export traces; it checks shapes, not parameter values. Subclasses define it as
      ``dynamics(x, state)``, the arithmetic in the input's dtype; ``step`` applies the
      precision rules (:meth:`in_precision`).
    - ``output_shape(shape)``: the shape of ``y`` for a step input of ``shape``.
    - ``check_input(x, time)``: a clear error for an input that cannot be a (time-major) input.
    - ``check_parameter_values()``: a clear error for an out-of-range parameter, called once
      per forward call.
    - ``parameter_values()``: the numeric parameters by name; ``dt``, ``method``, ``alpha``
      and :meth:`surrogate_alpha` (alpha as the spike ops take it).

    Precision: under ``torch.autocast`` on the input's device, a float32 layer runs its
    dynamics in float32, as autocast runs softmax or layer norm: float16/bfloat16 inputs and
    states are upcast, the state stays float32, and spikes leave in the autocast dtype (0 and
    1 are exact), so the next Linear gets its cheap input; a non-spiking layer's output
    (``LI``'s ``v``) stays float32. A feed-forward layer therefore gives exactly the spikes and
    states of its float32 run on the same (upcast) values. A recurrent layer's two matrix
    products are what autocast speeds up, and it treats them as any Linear: half-precision
    operands and result, which join the float32 current. (Turning autocast off for them
    would not hold under ``torch.compile``: torch 2.13 retraces a ``scan`` body for its
    backward under the caller's autocast, so forward and backward would disagree.) A layer
    converted with ``.to(torch.bfloat16)`` (or ``.half()``, ``.double()``) is outside
    autocast's rules: it computes in its own dtype and takes inputs of that dtype only.
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
        # One dtype for all: that of the given tensors (promoted), else torch's default.
        given = [v.dtype for v in values.values() if isinstance(v, Tensor)]
        given = [d for d in given if d.is_floating_point]
        dtype = functools.reduce(torch.promote_types, given, given[0]) if given else None
        dtype = dtype or torch.get_default_dtype()
        if method is None:
            self.alpha: Tensor | None = None
        else:
            check_method(method, "p.method")
            check_alpha(alpha, "p.alpha")
            # A buffer, not a float attribute: compiled code reads it at run time, so a new
            # alpha does not recompile. Not in state_dict: like method, it is a constructor
            # argument, not a learned value.
            if isinstance(alpha, Tensor):
                alpha = alpha.detach().reshape(()).to(dtype=dtype, copy=True)
            else:
                alpha = torch.tensor(float(alpha), dtype=dtype)
            self.register_buffer("alpha", alpha, persistent=False)
        for name in self.parameter_names:
            value = values[name]
            if isinstance(value, Tensor):
                tensor = value.detach().to(dtype=dtype, copy=True)
            else:
                tensor = torch.tensor(float(value), dtype=dtype)
            if name in trainable:
                self.register_parameter(name, torch.nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
        self.check_parameter_values()

    def check_parameter_values(self) -> None:
        """Raise ``ValueError`` naming a parameter whose value is out of range (a NaN
        ``v_th``, ``tau_mem_inv <= 0``, ...). Eager only; the forward passes call it once per
        call, so the steps of a time loop need not read every tensor again."""
        for name in self.parameter_names:
            if name in VALUE_RULES:
                check_value(f"p.{name}", getattr(self, name), VALUE_RULES[name])
        if self.alpha is not None:
            check_alpha(self.alpha, "p.alpha")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters (all share one), which the dynamics compute in."""
        return getattr(self, self.parameter_names[0]).dtype

    @property
    def spikes(self) -> bool:
        """Whether the layer's output is spikes (it has a surrogate), not a potential."""
        return self.method is not None

    def autocast_dtype(self, x: object) -> torch.dtype | None:
        """The autocast dtype this layer's spikes leave in for input ``x``: set while
        ``torch.autocast`` is on for ``x``'s device and the layer is float32, else ``None``."""
        if not isinstance(x, Tensor) or self.dtype != torch.float32:
            return None
        if not torch.is_autocast_enabled(x.device.type):
            return None
        return torch.get_autocast_dtype(x.device.type)

    def in_precision(
        self,
        fn: Callable[[Tensor, Any], tuple[Tensor, Any]],
        x: Tensor,
        state: Any,
        upcast_x: bool = True,
    ) -> tuple[Tensor, Any]:
        """``fn(x, state) -> (y, state)`` under the precision rules (see the class): outside
        autocast, as it is; under it, with half-precision ``state`` (and ``x``, unless
        ``upcast_x`` is false: a fused kernel reads half precision itself) upcast, and spikes
        cast to the autocast dtype. Autocast stays on: the only ops it changes in a step are a
        recurrent layer's matrix products."""
        out = self.autocast_dtype(x)
        if out is None:
            return fn(x, state)
        state = tree_map(self._upcast, state)
        y, state = fn(self._upcast(x) if upcast_x else x, state)
        return (y.to(out) if self.spikes else y), state

    def _upcast(self, t: Any) -> Any:
        """A half-precision tensor in the layer's dtype; anything else as it is."""
        return t.to(self.dtype) if isinstance(t, Tensor) and t.dtype in HALF_DTYPES else t

    def initial_state(self, x: Tensor) -> Any:
        """The state at rest for one step's input ``x`` ``(B, ...)``, in the dtype the step
        computes in (float32 for half ``x`` under autocast, else ``x``'s)."""
        if self.autocast_dtype(x) is not None:
            x = self._upcast(x)
        return self.state_at_rest(x)

    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step from an explicit state: :meth:`dynamics` under the precision rules."""
        return self.in_precision(self.dynamics, x, state)

    def state_at_rest(self, x: Tensor) -> Any:
        """The state at rest, in ``x``'s shape (or the output's), dtype and device."""
        raise NotImplementedError

    def dynamics(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step's arithmetic in the input's dtype: ``(y, new state)``."""
        raise NotImplementedError

    def surrogate_alpha(self) -> Tensor | float | None:
        """``alpha`` as the step passes it to the spike ops: the buffer, read at run time; or,
        inside :func:`constant_surrogates`, its value as a Python float."""
        constant = getattr(self, "_constant_alpha", None)
        return self.alpha if constant is None else constant

    def parameter_values(self) -> dict[str, Tensor]:
        """The numeric parameters by name, as the tensors this module holds."""
        return {name: getattr(self, name) for name in self.parameter_names}

    def extra_repr(self) -> str:
        values = ", ".join(
            f"{name}={t.item():g}" if t.numel() == 1 else f"{name}=<{tuple(t.shape)}>"
            for name, t in self.parameter_values().items()
        )
        surrogate = "" if self.alpha is None else f", method={self.method!r}, alpha={self.alpha:g}"
        return f"{values}{surrogate}, dt={self.dt:g}"


@contextmanager
def constant_surrogates(model: torch.nn.Module) -> Iterator[None]:
    """While inside: every neuron layer of ``model`` passes its ``alpha`` to the spike ops as a
    Python float, so an export records it as a constant (the ONNX node's ``alpha`` attribute)
    instead of a buffer read at run time."""
    layers = [m for m in model.modules() if isinstance(m, NeuronModule) and m.alpha is not None]
    try:
        for layer in layers:
            layer._constant_alpha = float(layer.alpha)
        yield
    finally:
        for layer in layers:
            layer._constant_alpha = None


def rest(x: Tensor, shape: tuple[int, ...], value: Tensor | None = None) -> Tensor:
    """A fresh state tensor of ``shape`` on ``x``'s device and dtype: zeros, or ``value``
    (a scalar or per-neuron tensor) broadcast to ``shape``."""
    zeros = torch.zeros(shape, dtype=x.dtype, device=x.device)
    return zeros if value is None else zeros + value.detach().to(x.dtype)


def check_rank(x: Tensor, min_dim: int, axes: str) -> None:
    """A clear error for an input that is not a floating-point tensor or lacks its time or
    batch axis."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor {axes}, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"input must be a floating-point tensor, got dtype {x.dtype}; convert it first, "
            "e.g. x.float()"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"input must have shape {axes} (at least {min_dim} dimensions), got "
            f"{tuple(x.shape)}; add the missing time or batch dimension"
        )


def check_time_steps(x: Tensor) -> None:
    """A sequence needs at least one time step (an empty one has no state to return)."""
    if x.shape[0] == 0:
        raise ValueError(f"input has no time steps: shape {tuple(x.shape)}, expected T >= 1")


class FeedForwardCell(NeuronModule):
    """One step of neurons driven by an input current of any shape ``(B, ...)``.

    Subclasses define ``state_at_rest(x)``, ``dynamics(x, state)`` and ``state_classes``
    (the state NamedTuple and, for LIF-refrac, its nested ``lif`` NamedTuple).
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


class RecurrentCell(NeuronModule):
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
    """Mixed in before a cell class: the cell's step over a time-major ``(T, B, ...)`` input.

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
    """A feed-forward sequence layer whose time loop can also run as one fused kernel
    (:mod:`lifexport.kernels`), chosen by the keyword-only constructor argument ``backend``
    (see :func:`lifexport.kernels.use_kernel`); exports always trace the step's loop.
    ``memory`` chooses what the kernel's backward works from: ``"store"`` (every step's state,
    kept by the forward: fastest), ``"recompute"`` (a checkpoint every 32 steps, the steps in
    between recomputed: a small fraction of the memory), or ``"auto"`` (``store`` while the
    stored states fit :data:`lifexport.kernels.STORE_LIMIT_BYTES`); see
    :func:`lifexport.kernels.stores_states`. Both give the same values.

    Subclasses define ``fused(x, state) -> (outputs, state)``, the kernel's call.
    """

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
        check_parameters(self.p, x.shape[1:], like, values=False)
        if not use_kernel(self.backend, x, compute_dtype=like.dtype):
            return super().forward(x, state)
        # The kernel reads a half-precision x itself and keeps float32 in registers.
        return self.in_precision(self._fused, x, state, upcast_x=False)

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
