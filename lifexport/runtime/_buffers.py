"""Where a session's state lives between steps, and how one step runs on it.

:class:`HostBuffers`: numpy arrays in host memory, bound once to two IO bindings whose state
inputs and outputs are swapped: a step copies ``x`` into its buffer, runs one binding and
flips to the other, so nothing is allocated or bound per step. :class:`DeviceBuffers`: the
same on a CUDA device (``OrtValue`` s in device memory), so the state never leaves the device;
each binding may be captured as a CUDA graph of its own (``gpu_graph_id``), as the fixed
addresses that capture needs are exactly the two bindings' buffers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The run option that names the CUDA graph a run captures or replays (onnxruntime's
#: ``kOrtRunOptionsConfigCudaGraphAnnotation``).
CUDA_GRAPH_ID = "gpu_graph_id"


class Layout:
    """The shapes and dtypes of one session's buffers at batch ``B``."""

    def __init__(
        self,
        x: tuple[tuple[int, ...], np.dtype],
        y: tuple[tuple[int, ...] | None, np.dtype],
        states: Mapping[str, tuple[tuple[int, ...], np.dtype]],
        next_names: Mapping[str, str],
    ) -> None:
        self.x, self.y, self.states, self.next_names = x, y, dict(states), dict(next_names)


class HostBuffers:
    """The state in host memory; steps through IO binding with preallocated outputs."""

    def __init__(self, session: Any, layout: Layout) -> None:
        self.session, self.layout = session, layout
        self.current = {n: np.empty(s, d) for n, (s, d) in layout.states.items()}
        self.spare = {n: np.empty(s, d) for n, (s, d) in layout.states.items()}
        self.x = np.empty(*layout.x)
        y_shape, y_dtype = layout.y
        self.y = None if y_shape is None else np.empty(y_shape, y_dtype)
        self.bindings = None if self.y is None else [self._bind(0), self._bind(1)]
        self.turn = 0

    def _bind(self, turn: int) -> Any:
        inputs, outputs = (self.current, self.spare) if turn == 0 else (self.spare, self.current)
        binding = self.session.io_binding()
        for name, array in (("x", self.x), *inputs.items()):
            binding.bind_input(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        named = [("y", self.y), *((self.layout.next_names[n], a) for n, a in outputs.items())]
        for name, array in named:
            binding.bind_output(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
        return binding

    def step(self, x: np.ndarray) -> np.ndarray:
        if self.bindings is None:  # outputs of unknown shape: onnxruntime allocates them
            outputs = self.session.run(None, {"x": x, **self.current})
            for array, new in zip(self.current.values(), outputs[1:], strict=True):
                np.copyto(array, new)
            return outputs[0]
        np.copyto(self.x, x)
        self.session.run_with_iobinding(self.bindings[self.turn])
        self.turn ^= 1
        self.current, self.spare = self.spare, self.current
        return self.y.copy()

    def get(self, name: str) -> np.ndarray:
        return self.current[name].copy()

    def put(self, name: str, array: np.ndarray, rows: Sequence[int] | None = None) -> None:
        if rows is None:
            np.copyto(self.current[name], array)
        else:
            self.current[name][list(rows)] = array


class DeviceBuffers:
    """The state in CUDA device memory (``OrtValue`` s), kept there between steps.

    With ``graph_ids`` (two positive ints, new for every set of buffers: a captured graph
    replays the addresses it was captured with), each of the two bindings is captured as the
    CUDA graph of its id once and replayed after."""

    def __init__(
        self, session: Any, layout: Layout, device_id: int, graph_ids: tuple[int, int] | None
    ) -> None:
        import onnxruntime as ort

        def device_value(shape, dtype):
            return ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", device_id)

        self.session, self.layout, self.turn = session, layout, 0
        self.current = {n: device_value(s, d) for n, (s, d) in layout.states.items()}
        self.spare = {n: device_value(s, d) for n, (s, d) in layout.states.items()}
        self.bindings, self.options = [], []
        y_shape, y_dtype = layout.y
        if y_shape is None:  # a sequence graph (or a y of dynamic shape): no step bindings
            return
        self.x = device_value(*layout.x)
        self.y = device_value(y_shape, y_dtype)
        first, second = self.current, self.spare
        for turn, (inputs, outputs) in enumerate(((first, second), (second, first))):
            binding = session.io_binding()
            binding.bind_ortvalue_input("x", self.x)
            for name, value in inputs.items():
                binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output("y", self.y)
            for name, value in outputs.items():
                binding.bind_ortvalue_output(layout.next_names[name], value)
            options = ort.RunOptions()
            if graph_ids is not None:  # one captured graph per binding (0 is onnxruntime's)
                options.add_run_config_entry(CUDA_GRAPH_ID, str(graph_ids[turn]))
            self.bindings.append(binding)
            self.options.append(options)

    def step(self, x: np.ndarray) -> np.ndarray:
        if not self.bindings:
            raise ValueError(
                "the output y has dynamic dimensions besides the batch; a CUDA session keeps "
                "its buffers on the device and needs fixed output shapes"
            )
        self.x.update_inplace(np.ascontiguousarray(x))
        binding = self.bindings[self.turn]
        binding.synchronize_inputs()
        self.session.run_with_iobinding(binding, self.options[self.turn])
        binding.synchronize_outputs()
        self.turn ^= 1
        self.current, self.spare = self.spare, self.current
        return self.y.numpy()

    def get(self, name: str) -> np.ndarray:
        return self.current[name].numpy()

    def put(self, name: str, array: np.ndarray, rows: Sequence[int] | None = None) -> None:
        if rows is not None:
            whole = self.current[name].numpy()
            whole[list(rows)] = array
            array = whole
        self.current[name].update_inplace(np.ascontiguousarray(array))
