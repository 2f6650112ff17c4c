"""The exported file: its lifexport metadata, its interface, and the drive it expects."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Metadata ``to_onnx`` writes that validation needs.
REQUIRED_METADATA = (
    "lifexport.graph",
    "lifexport.mode",
    "lifexport.state_names",
    "lifexport.example_shape",
)


@dataclass(frozen=True)
class GraphFile:
    """An exported graph as validation sees it.

    Attributes:
        path: the ``.onnx`` file.
        graph: ``"step"`` or ``"sequence"``.
        mode: ``"inference"`` or ``"training"``.
        input_names: the graph's inputs, in order.
        output_names: the graph's outputs, in order.
        state_names: the state inputs ``state.<k>.<field>`` (empty for a sequence graph
            exported without state).
        parameter_names: training graphs: the parameter inputs (before ``x``).
        example_shape: the shape of the example input it was exported with.
        dtype: the element type of ``x``.
        input_ranks: the rank of each graph input.
        source: the ``package.module:function`` that built the model, when
            ``lifexport export`` wrote the file (``None`` otherwise).
    """

    path: Path
    graph: str
    mode: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    state_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    example_shape: tuple[int, ...]
    dtype: torch.dtype
    input_ranks: dict[str, int]
    source: str | None = None

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The dimensions of ``x`` after time and batch."""
        return self.example_shape[1:] if self.graph == "step" else self.example_shape[2:]

    @property
    def has_target(self) -> bool:
        return "target" in self.input_names


def read_graph(path: str | os.PathLike) -> GraphFile:
    """Load an ``.onnx`` file written by ``lifexport.to_onnx`` and read its interface.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, a file that is not an ONNX model, or a model without
            lifexport metadata.
    """
    import onnx

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"onnx_path {str(path)!r} is a folder; give the .onnx file")
    if not path.is_file():
        raise FileNotFoundError(f"onnx_path {str(path)!r} does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:
        raise ValueError(f"onnx_path {str(path)!r} is not an ONNX model: {error}") from error
    if model.ir_version == 0 or not model.graph.output:
        raise ValueError(
            f"onnx_path {str(path)!r} is not an ONNX model (no IR version or no graph outputs)"
        )
    metadata = {p.key: p.value for p in model.metadata_props}
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ValueError(
            f"onnx_path {str(path)!r} has no lifexport metadata (missing {', '.join(missing)}); "
            "validate files written by lifexport.to_onnx"
        )
    graph, mode = metadata["lifexport.graph"], metadata["lifexport.mode"]
    if graph not in ("step", "sequence") or mode not in ("inference", "training"):
        raise ValueError(
            f"onnx_path {str(path)!r}: unknown lifexport.graph {graph!r} or lifexport.mode "
            f"{mode!r}; expected step|sequence and inference|training"
        )
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    input_names = tuple(i.name for i in inputs)
    if "x" not in input_names:
        raise ValueError(f"onnx_path {str(path)!r} has no input named 'x': {list(input_names)}")
    x = inputs[input_names.index("x")]
    dtype = _torch_dtype(onnx.helper.tensor_dtype_to_np_dtype(x.type.tensor_type.elem_type))
    return GraphFile(
        path=path,
        graph=graph,
        mode=mode,
        input_names=input_names,
        output_names=tuple(o.name for o in model.graph.output),
        state_names=tuple(json.loads(metadata["lifexport.state_names"])),
        parameter_names=input_names[: input_names.index("x")] if mode == "training" else (),
        example_shape=tuple(json.loads(metadata["lifexport.example_shape"])),
        dtype=dtype,
        input_ranks={i.name: len(i.type.tensor_type.shape.dim) for i in inputs},
        source=metadata.get("lifexport.source"),
    )


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _pattern(info: GraphFile) -> str:
    return f"(T, B{''.join(f', {d}' for d in info.feature_shape)})"


def check_inputs(info: GraphFile, inputs: Any, steps: int | None) -> Tensor:
    """The caller's drive as a ``(T, B, ...)`` tensor of the graph's dtype.

    Raises:
        TypeError: not a tensor (or array).
        ValueError: a rank or feature shape other than the exported example's, an empty time
            or batch axis, a dtype other than the graph's, or ``steps`` other than its T.
    """
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor {_pattern(info)}, got {type(inputs)}")
    shape = tuple(inputs.shape)
    expected = len(info.feature_shape) + 2
    if inputs.dim() != expected or shape[2:] != info.feature_shape:
        hint = (
            "; a step graph is driven with a whole sequence, one step at a time: add the time "
            "dimension"
            if info.graph == "step" and inputs.dim() == expected - 1
            else ""
        )
        raise ValueError(
            f"inputs must have shape {_pattern(info)} for this {info.graph} graph (exported "
            f"with example shape {info.example_shape}; T and B may differ), got {shape}{hint}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"inputs must have at least one time step and one sample, got {shape}")
    if inputs.dtype != info.dtype:
        raise ValueError(
            f"inputs must have the graph's dtype {info.dtype}, got {inputs.dtype}; convert it"
        )
    if steps is not None and steps != shape[0]:
        raise ValueError(f"steps={steps} but inputs has {shape[0]} time steps; give one of them")
    return inputs


def synthesize_inputs(info: GraphFile, steps: int | None, seed: int) -> Tensor:
    """A seeded drive ``(T, B, ...)``: uniform currents in ``[0, 3)``, which make LIF-refrac
    neurons at their default parameters spike often but not always; B is the example's."""
    batch = info.example_shape[0] if info.graph == "step" else info.example_shape[1]
    shape = (200 if steps is None else steps, batch, *info.feature_shape)
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=info.dtype) * 3.0
