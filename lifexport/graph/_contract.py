"""The contract of an exported graph: its interface and the metadata that records it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lifexport.graph._layout import NEXT_PREFIX, StateSlot

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
        _READ + "; validate judges such files on a flip budget",
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
        """The contract a file's ``metadata_props`` record.

        Raises:
            ValueError: a required key is missing, or a value is not what ``to_onnx`` writes.
        """
        missing = [m.key for m in METADATA if m.required and m.key not in metadata]
        if missing:
            raise ValueError(f"has no lifexport metadata (missing {', '.join(missing)})")
        value = {m.field: metadata.get(m.key) for m in METADATA}
        try:
            contract = cls(
                kind=value["kind"],
                mode=value["mode"],
                states=tuple(StateSlot.parse(n) for n in json.loads(value["states"])),
                parameters=tuple(json.loads(value["parameters"])),
                target_rank=json.loads(value["target_rank"]),
                example_shape=tuple(json.loads(value["example_shape"])),
                dtype=value["dtype"],
                layers=tuple(json.loads(value["layers"])),
                version=value["version"],
                source=value["source"],
                quantize=value["quantize"],
            )
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"has unreadable lifexport metadata: {error}") from error
        for name in ("input_names", "output_names"):
            recorded = tuple(json.loads(value[name]))
            if recorded != getattr(contract, name):
                raise ValueError(
                    f"has metadata {_KEYS[name]} {list(recorded)} disagrees with the contract's "
                    f"{list(getattr(contract, name))}"
                )
        return contract


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

    The contract comes from the file's metadata and must agree with the graph itself: its
    inputs (initializers aside) and outputs, by name and order, and the element type of ``x``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a file that is not an ONNX model, a model without lifexport
            metadata, or one whose graph disagrees with its metadata.
    """
    import onnx

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
    elem_type = inputs[X].type.tensor_type.elem_type
    dtype = torch.from_numpy(np.zeros(0, onnx.helper.tensor_dtype_to_np_dtype(elem_type))).dtype
    if str(dtype).removeprefix("torch.") != contract.dtype:
        raise ValueError(f"{where}: x is {dtype}, its metadata says {contract.dtype}")
    return GraphFile(path, contract)
