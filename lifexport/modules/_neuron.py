"""The base of every neuron layer and the neuron-layer protocol it declares; the cell and
sequence bases a layer builds on."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from lifexport.functional import (
    VALUE_RULES,
    check_dt,
    check_value,
)
from lifexport.functional.threshold import check_alpha, check_method
from lifexport.kernels import (
    HALF_DTYPES,
)
from lifexport.modules._protocol import protocol_problems


def abstract(method: Callable) -> Callable:
    """Mark a :class:`NeuronModule` method as one every concrete layer must define."""
    method.__isabstractmethod__ = True
    return method


class NeuronModule(torch.nn.Module):
    """The base of every neuron layer, and the contract the layers above rely on.

    The protocol is this class: a concrete subclass is checked when Python creates it
    (:meth:`__init_subclass__`) and gets a ``TypeError`` naming each piece it misses or gets
    wrong. A base that leaves pieces to its subclasses says so with ``abstract=True``
    (``class FeedForwardCell(NeuronModule, abstract=True)``). One base class, not a
    ``typing.Protocol``: the layers share its constructor, precision rules and checks, and
    ``isinstance(m, NeuronModule)`` is how stacks, export and validation find them.

    What a concrete layer declares (class attributes):

    - ``parameter_names``: the numeric parameters, in the order its parameter tuple uses;
      each becomes a buffer (or, when named in ``trainable``, an ``nn.Parameter``), so
      ``.to()``, ``state_dict`` and checkpoints just work. At least one.
    - ``value_rules``: a parameter name -> its rule, one of
      :data:`lifexport.functional.RULES` (``"positive"``, ``"non-negative"``,
      ``"finite"``); every parameter needs one. Defaults to
      :data:`lifexport.functional.VALUE_RULES` (the built-in models' names); a layer with
      other names gives its own mapping.
    - ``state_classes``: the state NamedTuple, then the NamedTuple classes of its fields
      that nest one (``(LIFRefracFeedForwardState, LIFFeedForwardState)``: the ``lif``
      field is annotated ``LIFFeedForwardState``).
    - ``spike_fields``: the state fields, at any nesting level, that hold spikes (exactly 0
      or 1, compared exactly): ``("z",)`` for a recurrent LIF state; ``()`` where the state
      holds none (``LI``, and the feed-forward states, whose spikes are only the output).
      Whether the output is spikes is :attr:`spikes` (the layer has a surrogate).
    - ``membrane_call``: the index, among the surrogate spike-op calls one step makes (in
      order; ``lifexport.functional.spike``), of the call whose input is the membrane's
      distance from threshold, ``v - v_th``: 0 for LIF and LIF-refrac (a LIF-refrac step
      then thresholds ``rho``); ``None`` when no call is (``LI``).
    - ``is_sequence``: ``True`` for a time-major layer whose ``forward`` takes
      ``(T, B, ...)``, ``False`` for a cell (one step). The bases below set it.

    What a concrete layer defines (methods; the bases below define the last three):

    - ``state_at_rest(x)``: the state at rest for one step's input ``x``, a NamedTuple of
      ``state_classes[0]`` in ``x``'s dtype and device (its pytree flattening order is the
      order of exported state names).
    - ``dynamics(x, state) -> (y, state)``: one time step's arithmetic in the input's dtype,
      pure torch (compiled and exported as it is: no Python ``if`` on tensor values), with
      every spike through :func:`lifexport.functional.spike` (the layer's ``method`` and
      :meth:`surrogate_alpha`).
    - ``output_shape(shape)``: the shape of ``y`` for a step input of ``shape``.
    - ``check_input(x, time)``: a clear error for an input that cannot be a (time-major)
      input.
    - ``forward``: a cell's step, or a sequence layer's time loop.

    What this class gives, used by :func:`lifexport.compile`, the stacks, export and
    validation:

    - ``initial_state(x)``: :meth:`state_at_rest` under the precision rules.
    - ``step(x, state) -> (y, state)``: one time step, what every time loop runs and what
      export traces; :meth:`dynamics` under the precision rules (:meth:`in_precision`).
    - ``check_parameter_values()``: a clear error for an out-of-range parameter (by
      ``value_rules``), called once per forward call.
    - ``parameter_values()``: the numeric parameters by name; ``dt``, ``method``, ``alpha``
      and :meth:`surrogate_alpha` (alpha as the spike ops take it). ``method`` (a string)
      and ``alpha`` (a 0-dim buffer outside ``state_dict``) describe the surrogate of a
      spiking layer; both are ``None`` for a layer that does not spike.

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

    Examples:
        >>> from lifexport.modules import FeedForwardCell
        >>> class Broken(FeedForwardCell):
        ...     parameter_names = ("v_th",)
        Traceback (most recent call last):
        ...
        TypeError: Broken does not implement the neuron-layer protocol: ...
    """

    #: Names of the numeric parameters, in the order the subclass's parameter tuple uses.
    parameter_names: tuple[str, ...]
    #: The state NamedTuple and the NamedTuple classes nested in its fields.
    state_classes: tuple[type, ...]
    #: State fields (any nesting level) that hold spikes, compared exactly.
    spike_fields: tuple[str, ...]
    #: Which spike-op call of a step thresholds ``v - v_th`` (``None``: none).
    membrane_call: int | None
    #: Whether ``forward`` takes a time-major sequence.
    is_sequence: bool
    #: Each parameter's value rule (see :data:`lifexport.functional.RULES`).
    value_rules: Mapping[str, str] = VALUE_RULES

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        """Check a concrete layer against the protocol (see the class); ``abstract=True``
        skips the check for a base that leaves pieces to its subclasses."""
        super().__init_subclass__(**kwargs)
        if not abstract:
            problems = protocol_problems(cls)
            if problems:
                raise TypeError(
                    f"{cls.__name__} does not implement the neuron-layer protocol: "
                    + "; ".join(problems)
                    + " (see lifexport.modules.NeuronModule, or pass abstract=True in the "
                    "class statement of a base that leaves them to its subclasses)"
                )

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
        missing = [name for name in self.parameter_names if name not in values]
        if missing:
            raise ValueError(
                f"values must give every parameter of {type(self).__name__}: missing {missing}"
            )
        if method is None and (self.spike_fields or self.membrane_call is not None):
            raise ValueError(
                f"{type(self).__name__} declares spikes (spike_fields {self.spike_fields}, "
                f"membrane_call {self.membrane_call}) but was given no method; a layer that "
                "does not spike has spike_fields = () and membrane_call = None"
            )
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
        ``v_th``, ``tau_mem_inv <= 0``, ...) by :attr:`value_rules`. Eager only; the forward
        passes call it once per call, so the steps of a time loop need not read every tensor
        again."""
        for name in self.parameter_names:
            check_value(f"p.{name}", getattr(self, name), self.value_rules[name])
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

    @abstract
    def state_at_rest(self, x: Tensor) -> Any:
        """The state at rest, in ``x``'s shape (or the output's), dtype and device."""
        raise NotImplementedError

    @abstract
    def dynamics(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step's arithmetic in the input's dtype: ``(y, new state)``."""
        raise NotImplementedError

    @abstract
    def output_shape(self, shape: torch.Size) -> torch.Size:
        """The shape of ``y`` for a step input of ``shape``."""
        raise NotImplementedError

    @abstract
    def check_input(self, x: Tensor, time: bool) -> None:
        """Raise a clear error unless ``x`` can be one step's input (``time``: a sequence)."""
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
