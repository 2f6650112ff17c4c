"""Argument checks shared by the functional steps.

They run on shapes, dtypes and Python numbers only, never on tensor values, so under
``torch.compile`` they are evaluated once while tracing and cost nothing afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ForwardRef, NamedTuple

import torch
from torch import Tensor

from lifexport.functional.threshold import check_alpha, check_method


def check_input(name: str, x: object, min_dim: int = 1) -> None:
    """``x`` must be a floating-point tensor of at least ``min_dim`` dimensions."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            f"convert it first, e.g. {name}.float()"
        )
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch, ...), got shape "
            f"{tuple(x.shape)}"
        )


def check_dt(dt: object) -> None:
    """``dt`` must be a finite, positive real number (seconds)."""
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt must be a positive number of seconds, got {type(dt).__name__}")
    # Comparisons rather than math.isfinite, which a symbolic float under torch.compile breaks.
    if not 0 < dt < math.inf:
        raise ValueError(f"dt must be a positive, finite number of seconds, got {dt}")


def check_state(state: object, classes: tuple[type, ...], shape: torch.Size, like: Tensor) -> Any:
    """``state`` must have the fields of the NamedTuple ``classes[0]``, each a tensor of
    ``like``'s dtype and device that broadcasts to ``shape``, except the fields nested in it:
    those whose annotated type is one of ``classes[1:]`` (``LIFRefracState.lif``, a
    ``LIFState``), which must have that class's fields, each such a tensor.

    Returns:
        ``state`` with every tensor expanded to ``shape`` (a view; as Norse, a scalar ``v``
        stands for every neuron's), so the step's outputs all have the input's shape.
    """
    cls, *nested = classes
    if getattr(state, "_fields", None) != cls._fields:
        raise TypeError(f"state must be a {cls.__name__}, got {type(state).__name__}")
    fields = []
    for field, t in zip(cls._fields, state):
        inner = nested_state_class(cls, field, nested)
        if inner is not None:
            if getattr(t, "_fields", None) != inner._fields:
                raise TypeError(f"state.{field} must be a {inner.__name__}, got {type(t).__name__}")
            t = type(t)(
                *(
                    check_tensor(f"state.{field}.{sub_field}", sub_t, shape, like)
                    for sub_field, sub_t in zip(t._fields, t)
                )
            )
            fields.append(t)
        else:
            fields.append(check_tensor(f"state.{field}", t, shape, like))
    return type(state)(*fields)


def nested_state_class(cls: type, field: str, nested: Iterable[type]) -> type | None:
    """The class among ``nested`` that field ``field`` of the NamedTuple ``cls`` is annotated
    with (``LIFRefracState.lif: LIFState``), by name; ``None`` when it is none of them."""
    annotation = getattr(cls, "__annotations__", {}).get(field)
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None)
    if name is None:
        return None
    name = name.rpartition(".")[2]
    return next((c for c in nested if c.__name__ == name), None)


def check_tensor(name: str, t: object, shape: torch.Size, like: Tensor) -> Tensor:
    """A tensor with ``like``'s dtype and device that broadcasts to ``shape``; returned
    expanded to ``shape``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    check_like(name, t, like)
    if t.shape == shape:
        return t
    if _broadcasts_to(t.shape, shape):
        return t.expand(shape)
    raise ValueError(
        f"{name} must have shape {tuple(shape)} to match the input (or broadcast to it), got "
        f"{tuple(t.shape)}; start from a state of the input's shape (e.g. zeros) or one "
        "returned by a step"
    )


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without enlarging it."""
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def check_like(name: str, t: Tensor, like: Tensor) -> None:
    """``t`` must have ``like``'s dtype and device: nothing is promoted or moved silently."""
    if t.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the input has {like.dtype}; convert one")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but the input is on {like.device}")


def check_parameter_type(p: object, classes: tuple[type, ...], name: str = "p") -> None:
    """``p`` must have the fields of the NamedTuple ``classes[0]`` (a Norse tuple of the same
    fields passes) and its ``lif`` field those of ``classes[1]``, if given: else a
    ``TypeError`` naming ``name`` and the class expected."""
    cls, *nested = classes
    fields = getattr(p, "_fields", None)
    if fields != cls._fields:
        got = type(p).__name__
        if got == cls.__name__:  # another package's tuple of that name: the fields differ
            got += f" with fields {fields}, not {cls._fields}"
        hint = ""
        if nested and fields == nested[0]._fields:  # p is what a cls holds
            hint = f"; wrap it: {cls.__name__}(lif={name}, ...)"
        elif fields and "lif" in fields and getattr(p.lif, "_fields", None) == cls._fields:
            hint = f"; pass {name}.lif, or use the step that takes a {type(p).__name__}"
        raise TypeError(f"{name} must be a {cls.__name__}, got {got}{hint}")
    if nested:
        check_parameter_type(p.lif, (nested[0],), f"{name}.lif")


def check_parameters(
    p: NamedTuple,
    shape: torch.Size,
    like: Tensor,
    prefix: str = "p",
    values: bool = True,
    *,
    classes: tuple[type, ...] | None = None,
    rules: Mapping[str, str] | None = None,
) -> None:
    """Neuron parameters: known method, one-number alpha, tensors that broadcast to ``shape``
    with ``like``'s dtype and device, values within ``rules`` (a field name -> one of
    :data:`RULES`; :data:`VALUE_RULES` when ``None``; a tensor's only with ``values``:
    reading them costs a device sync per tensor), and, given ``classes``, the fields of
    those NamedTuple classes (:func:`check_parameter_type`).

    A per-neuron parameter may broadcast *to* the neuron shape (e.g. ``(N,)`` against
    ``(B, N)``) but never enlarge it.
    """
    if classes is not None:
        check_parameter_type(p, classes, prefix)
    for field, value in zip(p._fields, p):
        name = f"{prefix}.{field}"
        if field == "method":
            check_method(value, name)
        elif field == "alpha":
            check_alpha(value, name, values)
        elif hasattr(value, "_fields"):
            check_parameters(value, shape, like, name, values, rules=rules)
        elif isinstance(value, Tensor):
            check_like(name, value, like)
            if not _broadcasts_to(value.shape, shape):
                raise ValueError(
                    f"{name} of shape {tuple(value.shape)} does not broadcast to the neuron "
                    f"shape {tuple(shape)}; use a scalar or a per-neuron tensor such as shape "
                    f"{tuple(shape[1:])}"
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a number or a tensor, got {type(value).__name__}")
        rule = (VALUE_RULES if rules is None else rules).get(field)
        if rule is not None and (values or not isinstance(value, Tensor)):
            check_value(name, value, rule)


#: The value rules a numeric parameter can have: finite and > 0, finite and >= 0, finite.
RULES: tuple[str, ...] = ("positive", "non-negative", "finite")

#: What each numeric parameter of the built-in models must satisfy (one of :data:`RULES`).
#: alpha's rule lives with the spike ops (``check_alpha``). A neuron layer with parameters
#: of other names declares their rules itself (``NeuronModule.value_rules``).
VALUE_RULES: dict[str, str] = {
    "tau_syn_inv": "positive",
    "tau_mem_inv": "positive",
    "v_leak": "finite",
    "v_th": "finite",
    "v_reset": "finite",
    "rho_reset": "non-negative",
}


def check_value(name: str, value: float | Tensor, rule: str) -> None:
    """Raise ``ValueError`` naming the parameter unless every element of ``value`` meets ``rule``.

    A Python number is checked at once; a tensor in eager mode only (under ``torch.compile``
    reading its values would break the graph; modules check theirs at construction).

    Raises:
        ValueError: a value outside ``rule``, or a ``rule`` that is not one of :data:`RULES`.
    """
    if rule not in RULES:
        raise ValueError(f"the rule of {name} must be one of {RULES}, got {rule!r}")
    if isinstance(value, Tensor):
        if torch.compiler.is_compiling():
            return
        v = value.detach()
        ok = torch.isfinite(v).all()
        if rule == "positive":
            ok = ok & (v > 0).all()
        elif rule == "non-negative":
            ok = ok & (v >= 0).all()
        ok = bool(ok)
    else:
        ok = -math.inf < value < math.inf
        ok = ok and (rule != "positive" or value > 0) and (rule != "non-negative" or value >= 0)
    if not ok:
        got = _describe(value) if isinstance(value, Tensor) else value
        want = {"positive": "positive and finite", "non-negative": ">= 0 and finite"}
        raise ValueError(f"{name} must be {want.get(rule, 'finite')}, got {got}")


def _describe(t: Tensor) -> str:
    """A tensor's values in an error message: itself if short, else its range and NaNs."""
    if t.numel() <= 6:
        return str(t.detach().cpu().tolist())
    v = t.detach()
    return (
        f"a tensor of shape {tuple(t.shape)} with min {v.min().item()}, max {v.max().item()}"
        f" and {int(torch.isnan(v).sum())} NaN"
    )


def check_weighted_args(input_tensor: Tensor, dt: float, **weights: Tensor) -> torch.Size:
    """Check the input, ``dt`` and the weights of a step, given by keyword: ``input_weights``
    (hidden, features) and, for a recurrent step, ``recurrent_weights`` (hidden, hidden).
    Returns the state shape ``(*, hidden)``."""
    check_input("input_tensor", input_tensor)
    check_dt(dt)
    axes = {"input_weights": "(hidden, features)", "recurrent_weights": "(hidden, hidden)"}
    for name, w in weights.items():
        if not isinstance(w, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor {axes[name]}, got {type(w).__name__}")
        if w.dim() != 2:
            raise ValueError(
                f"{name} must be a 2-D tensor {axes[name]}, got shape {tuple(w.shape)}"
            )
        check_like(name, w, input_tensor)
    input_weights = weights["input_weights"]
    hidden, features = input_weights.shape
    if features != input_tensor.shape[-1]:
        raise ValueError(
            f"input_weights must have shape (hidden, {input_tensor.shape[-1]}) to match "
            f"input_tensor's last dimension, got {tuple(input_weights.shape)}"
        )
    recurrent_weights = weights.get("recurrent_weights")
    if recurrent_weights is not None and recurrent_weights.shape != (hidden, hidden):
        raise ValueError(
            f"recurrent_weights must have shape ({hidden}, {hidden}) to match input_weights' "
            f"hidden size, got {tuple(recurrent_weights.shape)}"
        )
    return input_tensor.shape[:-1] + (hidden,)
