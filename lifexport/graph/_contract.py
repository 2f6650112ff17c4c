"""The contract of an exported graph: its interface and the metadata that records it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lifexport.graph._layout import NEXT_PREFIX, StateSlot
from lifexport.graph._structure import dims, element_type, loop_ops, type_name, weight_types
from lifexport.limits import check_elements

GRAPHS = ("step", "sequence")
MODES = ("inference", "training")

#: Fixed input and output names.
X, TARGET, Y, LOSS = "x", "target", "y", "loss"
GRAD_PREFIX = "grad."


@dataclass(frozen=True)
class MetadataKey:
    """One ``metadata_props`` entry of an exported file.

    Attributes:
        key: the entry's key.
        field: the :class:`GraphContract` field it stores (JSON unless a plain string).
        writer: what writes it.
        reader: what reads it back.
        required: whether a lifexport file must have it.
    """

    key: str
    field: str
    writer: str
    reader: str
    required: bool = True


#: The key ``lifexport export`` stores the model's ``MODULE:FUNCTION`` under.
SOURCE_KEY = "lifexport.source"
#: The key that records how an int8 file's weights were quantized.
QUANTIZE_KEY = "lifexport.quantize"
_TO_ONNX, _READ = "lifexport.to_onnx", "lifexport.graph.read_graph (validation, cli)"
#: Every metadata key lifexport writes, with its writer and reader.
METADATA = (
    MetadataKey("lifexport.version", "version", _TO_ONNX, "reports; not checked"),
    MetadataKey("lifexport.graph", "kind", _TO_ONNX, _READ),
    MetadataKey("lifexport.mode", "mode", _TO_ONNX, _READ),
    MetadataKey("lifexport.state_names", "states", _TO_ONNX, _READ),
    MetadataKey("lifexport.parameters", "parameters", _TO_ONNX, _READ),
    MetadataKey("lifexport.target_rank", "target_rank", _TO_ONNX, _READ),
    MetadataKey("lifexport.example_shape", "example_shape", _TO_ONNX, _READ),
    MetadataKey("lifexport.dtype", "dtype", _TO_ONNX, _READ),
    MetadataKey("lifexport.layers", "layers", _TO_ONNX, "tools; neuron parameters for humans"),
    MetadataKey("lifexport.inputs", "input_names", _TO_ONNX, _READ + ", checked against the file"),
    MetadataKey("lifexport.outputs", "output_names", _TO_ONNX, _READ + ", checked likewise"),
    MetadataKey(
        QUANTIZE_KEY,
        "quantize",
        "lifexport.to_onnx(quantize='int8')",
        _READ + ", held to the graph's int8 weights; validate judges such files on a flip budget",
        required=False,
    ),
    MetadataKey(
        SOURCE_KEY,
        "source",
        "lifexport export (the CLI's MODULE:FUNCTION)",
        "lifexport validate's hint",
        required=False,
    ),
)
_KEYS = {m.field: m.key for m in METADATA}


@dataclass(frozen=True)
class GraphContract:
    """What an exported graph takes and returns, in order, and what it was exported from.

    Inputs: the trainable ``parameters`` (training graphs), ``x``, ``target`` (training
    graphs exported with a loss), then one ``state.<k>.<field>`` per state slot. Outputs:
    ``loss`` (training), ``y``, one ``next_state.<k>.<field>`` per slot, then
    ``grad.<parameter>`` (training). A sequence graph exported without state has no slots.

    Attributes:
        kind: ``"step"`` or ``"sequence"``.
        mode: ``"inference"`` or ``"training"``.
        states: the state slots, in the graph's order.
        parameters: the trainable parameters, by the exported model's ``named_parameters``.
        target_rank: the rank of the ``target`` input, ``None`` without one.
        example_shape: the shape of the example ``x`` it was exported with.
        dtype: the element type of ``x``, as torch names it (``"float32"``).
        layers: per neuron layer: its index, type, dt, method, alpha and parameters.
        version: the lifexport version that exported it.
        source: ``lifexport export``'s ``MODULE:FUNCTION``, else ``None``.
        quantize: how the weights were quantized (``"int8 QDQ: ..."``), ``None`` for float.
    """

    kind: str
    mode: str
    states: tuple[StateSlot, ...]
    example_shape: tuple[int, ...]
    dtype: str
    parameters: tuple[str, ...] = ()
    target_rank: int | None = None
    layers: tuple[dict[str, Any], ...] = ()
    version: str = ""
    source: str | None = None
    quantize: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in GRAPHS:
            raise ValueError(f"graph must be one of {GRAPHS}, got {self.kind!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "inference" and (self.parameters or self.target_rank is not None):
            raise ValueError("an inference graph takes no parameters and no target")

    @property
    def training(self) -> bool:
        return self.mode == "training"

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(slot.name for slot in self.states)

    @property
    def next_names(self) -> tuple[str, ...]:
        return tuple(slot.next_name for slot in self.states)

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return tuple(GRAD_PREFIX + p for p in self.parameters)

    @property
    def input_names(self) -> tuple[str, ...]:
        target = (TARGET,) if self.target_rank is not None else ()
        return (*self.parameters, X, *target, *self.state_names)

    @property
    def output_names(self) -> tuple[str, ...]:
        loss = (LOSS,) if self.training else ()
        return (*loss, Y, *self.next_names, *self.gradient_names)

    @property
    def spike_states(self) -> tuple[str, ...]:
        """The state outputs that hold spikes."""
        return tuple(slot.next_name for slot in self.states if slot.is_spike)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The dimensions of ``x`` after time and batch."""
        return self.example_shape[1 if self.kind == "step" else 2 :]

    @property
    def batch(self) -> int:
        """B of the example input."""
        return self.example_shape[0 if self.kind == "step" else 1]

    def output_kind(self, name: str) -> str:
        """``"y"``, ``"state"``, ``"gradient"`` or ``"loss"``: what an output holds."""
        if name in (Y, LOSS):
            return name
        if name.startswith(NEXT_PREFIX):
            return "state"
        if name.startswith(GRAD_PREFIX):
            return "gradient"
        raise ValueError(f"{name!r} is not an output of this graph: {self.output_names}")

    def to_metadata(self) -> dict[str, str]:
        """The ``metadata_props`` that record the contract (see :data:`METADATA`)."""
        values = {
            "version": self.version,
            "kind": self.kind,
            "mode": self.mode,
            "states": json.dumps(self.state_names),
            "parameters": json.dumps(self.parameters),
            "target_rank": json.dumps(self.target_rank),
            "example_shape": json.dumps(self.example_shape),
            "dtype": self.dtype,
            "layers": json.dumps(self.layers),
            "input_names": json.dumps(self.input_names),
            "output_names": json.dumps(self.output_names),
        }
        for name in ("source", "quantize"):
            if getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return {_KEYS[f]: value for f, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> GraphContract:
        """The contract a file's ``metadata_props`` record, every value checked for what
        ``to_onnx`` writes there (a file is data: its values are never trusted).

        Raises:
            ValueError: a required key is missing, or a value is not what ``to_onnx`` writes
                (the message names the key); an ``example_shape`` over
                :attr:`lifexport.limits.Limits.max_elements`.
        """
        missing = [m.key for m in METADATA if m.required and m.key not in metadata]
        if missing:
            raise ValueError(f"has no lifexport metadata (missing {', '.join(missing)})")
        value = {m.field: metadata.get(m.key) for m in METADATA}
        kind = _choice(value["kind"], "kind", GRAPHS)
        mode = _choice(value["mode"], "mode", MODES)
        names = _json(value["states"], "states", _is_names, "a JSON list of distinct state names")
        try:
            states = tuple(StateSlot.parse(n) for n in names)
        except ValueError as error:
            raise ValueError(f"has bad metadata: {_KEYS['states']}: {error}") from None
        parameters = _json(
            value["parameters"], "parameters", _is_names, "a JSON list of distinct names"
        )
        target_rank = _json(
            value["target_rank"], "target_rank", _is_rank, "null or a non-negative int"
        )
        if mode == "inference" and (parameters or target_rank is not None):
            raise ValueError(
                f"has bad metadata: an inference graph takes no parameters and no target, but "
                f"{_KEYS['parameters']} is {_short(value['parameters'])} and "
                f"{_KEYS['target_rank']} {_short(value['target_rank'])}"
            )
        shape = _example_shape(value["example_shape"], kind)
        dtype = _choice(value["dtype"], "dtype", FLOAT_DTYPES)
        layers = _json(value["layers"], "layers", _is_objects, "a JSON list of objects")
        quantize = value["quantize"]
        if quantize is not None and (mode != "inference" or not quantize.startswith("int8")):
            raise ValueError(
                f"has bad metadata: {QUANTIZE_KEY} must describe int8 weights ('int8 QDQ: ...') "
                f"of an inference graph, got {_short(quantize)} on a {mode} graph"
            )
        contract = cls(
            kind=kind,
            mode=mode,
            states=states,
            parameters=tuple(parameters),
            target_rank=target_rank,
            example_shape=shape,
            dtype=dtype,
            layers=tuple(layers),
            version=value["version"],
            source=value["source"],
            quantize=quantize,
        )
        for name in ("input_names", "output_names"):
            recorded = tuple(_json(value[name], name, _is_strings, "a JSON list of names"))
            if recorded != getattr(contract, name):
                raise ValueError(
                    f"has metadata {_KEYS[name]} {list(recorded)} disagrees with the contract's "
                    f"{list(getattr(contract, name))}"
                )
        return contract


#: The element types a graph's ``x`` may have, as torch names them.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


_UNREADABLE = object()


def _short(text: object, limit: int = 80) -> str:
    """``repr(text)``, cut to ``limit`` characters: a file's values can be of any length."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 5] + " ...'"


def _choice(text: str, field: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise ValueError(
            f"has bad metadata: {_KEYS[field]} must be one of {allowed}, got {_short(text)}"
        )
    return text


def _json(text: str, field: str, check: Callable[[Any], bool], expected: str) -> Any:
    """The JSON value of a metadata entry, or a ``ValueError`` naming its key."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = _UNREADABLE
    if value is _UNREADABLE or not check(value):
        raise ValueError(f"has bad metadata: {_KEYS[field]} must be {expected}, got {_short(text)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_names(value: Any) -> bool:
    return _is_strings(value) and len(set(value)) == len(value)


def _is_rank(value: Any) -> bool:
    return value is None or (_is_int(value) and value >= 0)


def _is_objects(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)


def _example_shape(text: str, kind: str) -> tuple[int, ...]:
    """The example shape: positive ints, ``(B, ...)`` for a step graph, ``(T, B, ...)`` for a
    sequence graph, within :attr:`~lifexport.limits.Limits.max_elements`."""
    rank, axes = (1, "(B, ...)") if kind == "step" else (2, "(T, B, ...)")
    shape = _json(
        text,
        "example_shape",
        lambda v: isinstance(v, list) and len(v) >= rank and all(_is_int(d) and d > 0 for d in v),
        f"a JSON list of at least {rank} positive ints ({axes} for a {kind} graph)",
    )
    try:
        check_elements(f"metadata {_KEYS['example_shape']}", shape)
    except ValueError as error:
        raise ValueError(f"has bad metadata: {error}") from None
    return tuple(shape)


@dataclass(frozen=True)
class GraphFile:
    """An exported ``.onnx`` file and its contract: what ``to_onnx`` returns and
    :func:`read_graph` reads back.

    The contract's names are also attributes here (``graph``, ``mode``, ``input_names``,
    ``output_names``, ``state_names``, ``parameter_names``, ...).
    """

    path: Path
    contract: GraphContract = field(repr=False)

    graph = property(lambda self: self.contract.kind)
    mode = property(lambda self: self.contract.mode)
    input_names = property(lambda self: self.contract.input_names)
    output_names = property(lambda self: self.contract.output_names)
    state_names = property(lambda self: self.contract.state_names)
    parameter_names = property(lambda self: self.contract.parameters)
    example_shape = property(lambda self: self.contract.example_shape)
    feature_shape = property(lambda self: self.contract.feature_shape)
    source = property(lambda self: self.contract.source)

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.contract.dtype)

    @property
    def has_target(self) -> bool:
        return self.contract.target_rank is not None


def read_graph(path: str | os.PathLike) -> GraphFile:
    """Load an ``.onnx`` file written by ``lifexport.to_onnx`` and read its contract.

    A file is data, checked before anything is built from it. Every metadata value must be
    what ``to_onnx`` writes (see :data:`METADATA`; the error names the key), and the contract
    must agree with the graph itself:

    - its inputs (initializers aside) and outputs, by name and order;
    - ``x``: a float tensor of the metadata's dtype, of the rank of the example shape, with its
      feature dimensions (time and batch may be dynamic);
    - a step graph holds no time loop (``Scan``/``Loop``) in its main graph, and a sequence
      graph with state inputs holds one;
    - a file whose ``lifexport.quantize`` claims int8 weights holds them: every
      ``MatMul``/``Gemm``/``Conv`` weight read from an initializer, in ``Scan`` bodies too,
      is dequantized from int8 (``DequantizeLinear``), and there is at least one. A float
      file claiming int8 is refused, not judged on the looser int8 budget: a file does not
      choose its own tolerance.

    The example shape counts against :attr:`lifexport.limits.Limits.max_elements`.

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike`` of a text path.
        FileNotFoundError: no such file.
        ValueError: a folder, a file that is not an ONNX model, a model without lifexport
            metadata, metadata that is not what ``to_onnx`` writes, or a graph that disagrees
            with its metadata.
    """
    import onnx

    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(
            f"onnx_path must be a str or os.PathLike of a text path (such as 'model.onnx'), got "
            f"{type(path).__name__}"
        )
    path = Path(path)
    where = f"onnx_path {str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{where} is a folder; give the .onnx file")
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:
        raise ValueError(f"{where} is not an ONNX model: {error}") from error
    if model.ir_version == 0 or not model.graph.output:
        raise ValueError(f"{where} is not an ONNX model (no IR version or no graph outputs)")
    try:
        contract = GraphContract.from_metadata({p.key: p.value for p in model.metadata_props})
    except ValueError as error:
        raise ValueError(f"{where} {error}; validate files written by lifexport.to_onnx") from error
    initializers = {t.name for t in model.graph.initializer}
    inputs = {i.name: i for i in model.graph.input if i.name not in initializers}
    outputs = tuple(o.name for o in model.graph.output)
    if tuple(inputs) != contract.input_names or outputs != contract.output_names:
        raise ValueError(
            f"{where}: the graph's inputs {list(inputs)} and outputs {list(outputs)} are not "
            f"those its metadata records ({list(contract.input_names)}, "
            f"{list(contract.output_names)}); the file was changed after export"
        )
    _check_time_loop(model, contract, where)
    _check_x(inputs[X], contract, where)
    if contract.quantize is not None:
        _check_int8(model, contract, where)
    return GraphFile(path, contract)


def _check_x(x: Any, contract: GraphContract, where: str) -> None:
    """``x`` is a float tensor of the contract's dtype, rank and feature dimensions."""
    dtype = element_type(x)
    if dtype is None:
        raise ValueError(
            f"{where}: input x must be a float tensor ({', '.join(FLOAT_DTYPES)}), got "
            f"{type_name(x)}; the file was changed after export"
        )
    if dtype != contract.dtype:
        raise ValueError(
            f"{where}: x is {dtype}, its metadata {_KEYS['dtype']} says {contract.dtype}"
        )
    found = dims(x)
    example = contract.example_shape
    axes = "(B, ...)" if contract.kind == "step" else "(T, B, ...)"
    leading = len(example) - len(contract.feature_shape)
    fits = found is not None and len(found) == len(example)
    fits = fits and all(
        isinstance(d, str) or d == e if i < leading else d == e
        for i, (d, e) in enumerate(zip(found, example))
    )
    if not fits:
        raise ValueError(
            f"{where}: input x has shape {list(found) if found is not None else 'unknown'}, but "
            f"a {contract.kind} graph (metadata {_KEYS['kind']}) exported with example shape "
            f"{list(example)} ({_KEYS['example_shape']}) takes {axes} with features "
            f"{list(contract.feature_shape)}; the file was changed after export"
        )


def _check_time_loop(model: Any, contract: GraphContract, where: str) -> None:
    """A step graph has no time loop; a sequence graph with state inputs has one."""
    loops = loop_ops(model.graph)
    if contract.kind == "step" and loops:
        raise ValueError(
            f"{where}: metadata {_KEYS['kind']} says 'step', but the graph holds a time loop "
            f"({loops[0]}): it is a sequence graph; the file was changed after export"
        )
    if contract.kind == "sequence" and contract.states and not loops:
        raise ValueError(
            f"{where}: metadata {_KEYS['kind']} says 'sequence', but the graph holds no time "
            "loop (Scan or Loop): it is a step graph; the file was changed after export"
        )


def _check_int8(model: Any, contract: GraphContract, where: str) -> None:
    """A file claiming int8 weights holds them, and no float weight."""
    weights = weight_types(model)
    if weights.float or not weights.int8:
        floats = ", ".join(weights.float[:5]) + (" ..." if len(weights.float) > 5 else "")
        found = f"float weights {floats}" if floats else "no int8 weight"
        raise ValueError(
            f"{where}: metadata {QUANTIZE_KEY} claims int8 weights ({_short(contract.quantize)}), "
            f"but the graph holds {found} (no DequantizeLinear of an int8 initializer on "
            f"them); a float file is validated as float: the file was changed after export"
        )
