"""The neuron-layer protocol's checks: what a :class:`~lifexport.modules.NeuronModule`
subclass misses or gets wrong, found when Python creates the class."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lifexport.functional import RULES, nested_state_class

_ATTRIBUTES = (
    "parameter_names",
    "state_classes",
    "spike_fields",
    "membrane_call",
    "is_sequence",
)
#: Methods a concrete layer defines; ``fused`` only where a base marks it abstract.
_METHODS = ("state_at_rest", "dynamics", "output_shape", "check_input", "forward", "fused")


def protocol_problems(cls: type) -> list[str]:
    """What the neuron-layer class ``cls`` misses or gets wrong (see :class:`NeuronModule`),
    one line each; empty when it implements the protocol."""
    missing = [name for name in _ATTRIBUTES if not hasattr(cls, name)]
    missing += [
        f"{name}()"
        for name in _METHODS
        if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        or getattr(cls, name, None) is torch.nn.Module.forward
    ]
    problems = [f"it does not define {', '.join(missing)}"] if missing else []
    checks = (
        (_parameter_problems, ("parameter_names", "value_rules")),
        (_state_problems, ("state_classes", "spike_fields")),
        (_membrane_problems, ("membrane_call",)),
    )
    for check, needs in checks:
        if all(hasattr(cls, name) for name in needs):
            problems += check(cls)
    if hasattr(cls, "is_sequence") and not isinstance(cls.is_sequence, bool):
        problems.append(f"is_sequence must be True or False, got {cls.is_sequence!r}")
    return problems


def _parameter_problems(cls: type) -> list[str]:
    names, rules = cls.parameter_names, cls.value_rules
    if not isinstance(names, tuple) or not names or not all(isinstance(n, str) for n in names):
        return [f"parameter_names must be a non-empty tuple of names, got {names!r}"]
    problems = []
    bad = [n for n in names if not n.isidentifier() or n in _RESERVED]
    if bad or len(set(names)) != len(names):
        problems.append(
            f"parameter_names must be distinct identifiers other than {sorted(_RESERVED)}, "
            f"got {names!r}"
        )
    if not isinstance(rules, Mapping):
        return [*problems, f"value_rules must be a mapping, got {type(rules).__name__}"]
    unruled = [n for n in names if n not in rules]
    if unruled:
        problems.append(
            f"value_rules has no rule for parameters {unruled}; give each one of {RULES}, "
            "e.g. value_rules = {**lifexport.functional.VALUE_RULES, "
            f"{unruled[0]!r}: 'finite'}}"
        )
    wrong = {n: rules[n] for n in names if n in rules and rules[n] not in RULES}
    if wrong:
        problems.append(f"value_rules must map to one of {RULES}, got {wrong}")
    return problems


def _state_problems(cls: type) -> list[str]:
    classes, spikes = cls.state_classes, cls.spike_fields
    if (
        not isinstance(classes, tuple)
        or not classes
        or not all(isinstance(c, type) and hasattr(c, "_fields") for c in classes)
    ):
        return [f"state_classes must be a non-empty tuple of NamedTuple classes, got {classes!r}"]
    outer, *nested = classes
    problems = []
    stray = [
        c.__name__
        for c in nested
        if not any(nested_state_class(outer, f, (c,)) is c for f in outer._fields)
    ]
    if stray:
        problems.append(
            f"state_classes {stray} are not the annotated type of a field of {outer.__name__}"
        )
    fields = {f for c in classes for f in c._fields}
    if not isinstance(spikes, tuple) or not all(isinstance(f, str) for f in spikes):
        problems.append(f"spike_fields must be a tuple of field names, got {spikes!r}")
    elif set(spikes) - fields:
        problems.append(
            f"spike_fields {sorted(set(spikes) - fields)} are not fields of the state "
            f"{sorted(fields)}; list the state fields that hold spikes, () if none"
        )
    return problems


def _membrane_problems(cls: type) -> list[str]:
    call = cls.membrane_call
    if call is None or (isinstance(call, int) and not isinstance(call, bool) and call >= 0):
        return []
    return [f"membrane_call must be None or an int >= 0, got {call!r}"]


#: Names a parameter cannot take: the layer's other attributes.
_RESERVED = frozenset({"dt", "method", "alpha", "p"})
