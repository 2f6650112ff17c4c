"""An exported file: :func:`read_graph` loads it, reads its contract and holds the contract to
what the graph itself shows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifexport.graph._contract import GraphContract, X
from lifexport.graph._metadata import FLOAT_DTYPES, KEYS, QUANTIZE_KEY, short
from lifexport.graph._structure import dims, element_type, loop_ops, type_name, weight_types

if TYPE_CHECKING:
    import torch


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
    initial_state = property(lambda self: self.contract.initial_state)

    @property
    def dtype(self) -> torch.dtype:
        import torch

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
            f"{where}: x is {dtype}, its metadata {KEYS['dtype']} says {contract.dtype}"
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
            f"a {contract.kind} graph (metadata {KEYS['kind']}) exported with example shape "
            f"{list(example)} ({KEYS['example_shape']}) takes {axes} with features "
            f"{list(contract.feature_shape)}; the file was changed after export"
        )


def _check_time_loop(model: Any, contract: GraphContract, where: str) -> None:
    """A step graph has no time loop; a sequence graph with state inputs has one."""
    loops = loop_ops(model.graph)
    if contract.kind == "step" and loops:
        raise ValueError(
            f"{where}: metadata {KEYS['kind']} says 'step', but the graph holds a time loop "
            f"({loops[0]}): it is a sequence graph; the file was changed after export"
        )
    if contract.kind == "sequence" and contract.states and not loops:
        raise ValueError(
            f"{where}: metadata {KEYS['kind']} says 'sequence', but the graph holds no time "
            "loop (Scan or Loop): it is a step graph; the file was changed after export"
        )


def _check_int8(model: Any, contract: GraphContract, where: str) -> None:
    """A file claiming int8 weights holds them, and no float weight."""
    weights = weight_types(model)
    if weights.float or not weights.int8:
        floats = ", ".join(weights.float[:5]) + (" ..." if len(weights.float) > 5 else "")
        found = f"float weights {floats}" if floats else "no int8 weight"
        raise ValueError(
            f"{where}: metadata {QUANTIZE_KEY} claims int8 weights ({short(contract.quantize)}), "
            f"but the graph holds {found} (no DequantizeLinear of an int8 initializer on "
            f"them); a float file is validated as float: the file was changed after export"
        )
