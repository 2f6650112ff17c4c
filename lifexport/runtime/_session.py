""":class:`Session`: an exported file in onnxruntime, with the state kept for the caller."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifexport.graph import INITIAL_STATE_KEY, GraphContract, X, Y
from lifexport.runtime._buffers import DeviceBuffers, HostBuffers, Layout

#: onnxruntime's element types of the tensors a session feeds, as numpy dtypes.
_ORT_TYPES = {
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
}
_CPU, _CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class Session:
    """An exported file in onnxruntime that keeps every state tensor for the caller.

    It reads the file's contract (its ``lifexport.*`` metadata), starts each stream from the
    model's own state at rest (``lifexport.initial_state``) and feeds each step's
    ``next_state.*`` back as the next step's ``state.*``. The batch size ``B`` is that of the
    first input (or ``batch``) and stays until :meth:`reset` sets another.

    On the CPU execution provider a step runs through IO binding into preallocated outputs,
    swapping two state buffers. With ``CUDAExecutionProvider`` first, the state stays on the
    device between steps, and with its provider option ``enable_cuda_graph`` a step graph is
    captured as CUDA graphs and replayed.

    Args:
        path: the ``.onnx`` file written by ``lifexport.to_onnx`` (an inference graph).
        providers: onnxruntime execution providers, in order of preference (default: CPU).
        provider_options: per provider, a dict of options: a list in ``providers``' order,
            or a dict by provider name.
        batch: ``B`` to start the state with; ``None``: that of the first input.
        session_options: an ``onnxruntime.SessionOptions`` (threads, optimization level, ...).

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike``; ``providers`` or
            ``provider_options`` of the wrong type.
        FileNotFoundError: no such file.
        ValueError: a file onnxruntime cannot load (with these providers), one without
            lifexport's contract or a training graph; a provider that is not installed;
            options for a provider not in ``providers``; ``enable_cuda_graph`` on a sequence
            graph.

    Examples:
        >>> session = Session("model.onnx")  # doctest: +SKIP
        >>> y_t = session.step(x_t)  # doctest: +SKIP
        >>> session.reset(rows=[0])  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        provider_options: Sequence[Mapping[str, Any]]
        | Mapping[str, Mapping[str, Any]]
        | None = None,
        *,
        batch: int | None = None,
        session_options: Any = None,
    ) -> None:
        import onnxruntime as ort

        self.path = _check_path(path)
        if session_options is not None and not isinstance(session_options, ort.SessionOptions):
            raise TypeError(
                "session_options must be an onnxruntime.SessionOptions, got "
                f"{type(session_options).__name__}"
            )
        where = f"path {str(self.path)!r}"
        providers, options = _providers(providers, provider_options, ort)
        try:
            session = ort.InferenceSession(
                str(self.path), session_options, providers=providers, provider_options=options
            )
        except Exception as error:  # onnxruntime's own errors (InvalidGraph, Fail, ...)
            raise ValueError(
                f"onnxruntime cannot load {where} with providers {providers} (not an ONNX model, "
                f"or one these providers cannot run): {error}"
            ) from None
        metadata = session.get_modelmeta().custom_metadata_map
        try:
            contract = GraphContract.from_metadata(metadata)
        except ValueError as error:
            raise ValueError(
                f"{where} {error}; Session runs files written by lifexport.to_onnx"
            ) from None
        if contract.training:
            raise ValueError(
                f"{where} is a training graph (lifexport.mode 'training'); Session runs "
                "inference graphs: export with mode='inference'"
            )
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        if tuple(inputs) != contract.input_names or tuple(outputs) != contract.output_names:
            raise ValueError(
                f"{where}: the graph's inputs {list(inputs)} and outputs {list(outputs)} are not "
                f"those its metadata records ({list(contract.input_names)}, "
                f"{list(contract.output_names)}); the file was changed after export"
            )
        self._session, self.contract = session, contract
        self._x_dtype = _element_type(inputs[X], where)
        self._y_dtype = _element_type(outputs[Y], where)
        self._samples = {n: _sample_shape(inputs[n], where) for n in contract.state_names}
        self._dtypes = {n: _element_type(inputs[n], where) for n in contract.state_names}
        # y's buffer serves step graphs, whose y is (B, ...); a sequence graph's T varies
        step = contract.kind == "step"
        self._y_sample = _sample_shape(outputs[Y], where, dynamic_ok=True) if step else None
        active = session.get_providers()
        self._device_id = None
        self._cuda_graph = False
        if active and active[0] == _CUDA:
            cuda = session.get_provider_options().get(_CUDA, {})
            self._device_id = int(cuda.get("device_id", 0))
            self._cuda_graph = cuda.get("enable_cuda_graph", "0") in ("1", "True", "true")
            if self._cuda_graph and contract.kind != "step":
                raise ValueError(
                    f"{where} is a sequence graph, whose T changes from call to call; CUDA "
                    "graph capture needs fixed shapes: drop enable_cuda_graph or export "
                    "graph='step'"
                )
        self._batch: int | None = None
        self._graphs = 0  # CUDA graph ids taken
        self._buffers: HostBuffers | DeviceBuffers | None = None
        self._unset: set[str] = set()
        if batch is not None:
            self.reset(batch=batch)

    # -- what the file holds -----------------------------------------------------------------

    @property
    def graph(self) -> str:
        """``"step"`` or ``"sequence"``."""
        return self.contract.kind

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state inputs, in the graph's order."""
        return self.contract.state_names

    @property
    def providers(self) -> list[str]:
        """The execution providers the session runs on."""
        return self._session.get_providers()

    @property
    def batch(self) -> int | None:
        """``B`` of the state held, ``None`` before the first input."""
        return self._batch

    @property
    def state(self) -> StateView:
        """The state by name, readable and settable: ``session.state["state.1.v"]``."""
        return StateView(self)

    def __repr__(self) -> str:
        return (
            f"Session({str(self.path)!r}, graph={self.graph!r}, batch={self._batch}, "
            f"providers={self.providers})"
        )

    # -- running ----------------------------------------------------------------------------

    def step(self, x_t: np.ndarray) -> np.ndarray:
        """One time step of a step graph: ``y_t`` for ``x_t`` ``(B, ...)``; the state moves on.

        Raises:
            ValueError: a sequence graph; ``x_t`` of the wrong shape or dtype; a state not
                set (a file without ``lifexport.initial_state``).
            TypeError: ``x_t`` is not a numpy array.
        """
        if self.contract.kind != "step":
            raise ValueError(
                f"step() runs step graphs; {str(self.path)!r} is a sequence graph: call run(x) "
                "with x of shape (T, B, ...)"
            )
        self._check_x(x_t, time=False)
        if self._unset:
            self._raise_unset()
        return self._buffers.step(x_t)

    def run(self, x: np.ndarray) -> np.ndarray:
        """A whole sequence: ``y`` ``(T, B, ...)`` for ``x`` ``(T, B, ...)``, from the state
        held (a stream goes on across calls), which it leaves at the last step's.

        A sequence graph runs it in one call; a step graph steps over the time axis.

        Raises:
            ValueError: ``x`` of the wrong shape or dtype; a state not set.
            TypeError: ``x`` is not a numpy array.
        """
        self._check_x(x, time=True)
        if self._unset:
            self._raise_unset()
        if self.contract.kind == "step":
            first = self._buffers.step(x[0])
            ys = np.empty((x.shape[0], *first.shape), first.dtype)  # (T, B, ...)
            ys[0] = first
            for t in range(1, x.shape[0]):
                ys[t] = self._buffers.step(x[t])
            return ys
        names = self.contract.state_names
        feeds = {X: x, **{n: self._buffers.get(n) for n in names}}
        outputs = self._session.run(None, feeds)
        for name, value in zip(names, outputs[1:], strict=True):
            self._buffers.put(name, value)
        return outputs[0]

    def reset(self, rows: int | Sequence[int] | None = None, *, batch: int | None = None) -> None:
        """Back to the model's state at rest: every row, or only batch ``rows`` (streams that
        end); ``batch`` starts a state of another ``B`` (every row at rest).

        Raises:
            ValueError: rows outside ``[0, B)``; ``rows`` with ``batch``; a file without
                ``lifexport.initial_state``; ``batch`` not a positive int.
            TypeError: ``rows`` not an int or a sequence of ints.
        """
        if batch is not None:
            if rows is not None:
                raise ValueError("pass rows or batch to reset(), not both")
            if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
                raise ValueError(f"batch must be a positive int, got {batch!r}")
            self._start(int(batch))
            return
        if self._batch is None:
            return  # no state yet: the first input starts at rest
        initial = self._initial_state()
        if rows is None:
            for name, value in initial.items():
                self._buffers.put(name, value)
            self._unset.clear()
            return
        picked = _rows(rows, self._batch)
        for name, value in initial.items():
            self._buffers.put(name, value[picked], picked)

    # -- the state by name ------------------------------------------------------------------

    def get_state(self, name: str) -> np.ndarray:
        """A copy of state ``name`` ``(B, ...)``.

        Raises:
            KeyError: no state of that name (the message lists them).
            ValueError: no state yet (before the first input), or one not set.
        """
        self._check_name(name)
        if self._batch is None:
            raise ValueError(
                f"no state yet: the batch size comes from the first input; run a step, or "
                f"pass batch= to Session or reset(batch=...) first, to read {name!r}"
            )
        if name in self._unset:
            self._raise_unset()
        return self._buffers.get(name)

    def set_state(self, name: str, array: np.ndarray) -> None:
        """Set state ``name`` to ``array`` ``(B, ...)`` (copied); before any input, its rows
        set ``B``.

        Raises:
            KeyError: no state of that name (the message lists them).
            TypeError: ``array`` is not a numpy array.
            ValueError: ``array`` of another shape or dtype than the state's.
        """
        self._check_name(name)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"state {name!r} must be a numpy array, got {type(array).__name__}")
        sample, dtype = self._samples[name], self._dtypes[name]
        batch = self._batch
        if batch is None and array.ndim == len(sample) + 1 and array.shape[0] > 0:
            batch = array.shape[0]  # the first state set before any input chooses B
        expected = (batch, *sample) if batch is not None else ("B", *sample)
        if array.shape != expected or array.dtype != dtype:
            raise ValueError(
                f"state {name!r} must be a {dtype} array of shape {_shown(expected)}, got "
                f"{array.dtype} {_shown(array.shape)}"
                + ("; reset(batch=...) first to change B" if array.ndim == len(expected) else "")
            )
        if self._batch is None:
            self._start(batch)
        self._buffers.put(name, array)
        self._unset.discard(name)

    # -- internals --------------------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in self._samples:
            names = ", ".join(self.contract.state_names) or "none: the graph takes no state"
            raise KeyError(f"no state named {name!r}; the states are: {names}")

    def _check_x(self, x: Any, time: bool) -> None:
        """``x`` is ``(B, ...)`` (``time``: ``(T, B, ...)``) of the file's dtype and features."""
        what = "x_t" if not time else "x"
        features = self.contract.feature_shape
        lead = 1 if time else 0
        axes = "(T, B" if time else "(B"
        if self._batch is not None:
            axes += f"={self._batch}"
        expected = f"{axes}, {', '.join(map(str, features))})" if features else f"{axes})"
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"{what} must be a numpy array of shape {expected} and dtype {self._x_dtype}, "
                f"got {type(x).__name__}"
            )
        if x.dtype != self._x_dtype:
            raise ValueError(
                f"{what} must have dtype {self._x_dtype} (the file's lifexport.dtype), got "
                f"{x.dtype}; convert it with .astype(np.{self._x_dtype})"
            )
        shape = x.shape
        if len(shape) != lead + 1 + len(features) or shape[lead + 1 :] != features:
            hint = "; add a time axis" if time and len(shape) == 1 + len(features) else ""
            raise ValueError(f"{what} must have shape {expected}, got {_shown(shape)}{hint}")
        rows = shape[lead]
        if time and shape[0] < 1:
            raise ValueError(f"{what} must have at least one time step, got {_shown(shape)}")
        if self._batch is None:
            if rows < 1:
                raise ValueError(f"{what} must have at least one batch row, got {_shown(shape)}")
            self._start(rows)
        elif rows != self._batch:
            raise ValueError(
                f"{what} must have shape {expected}, got {_shown(shape)}: the state holds "
                f"B={self._batch} rows; call reset(batch={rows}) to start {rows} streams"
            )

    def _start(self, batch: int) -> None:
        """Buffers for ``batch`` rows, at rest where the file records the state at rest."""
        names = self.contract.state_names
        layout = Layout(
            x=((batch, *self.contract.feature_shape), self._x_dtype),
            y=(
                None if self._y_sample is None else (batch, *self._y_sample),
                self._y_dtype,
            ),
            states={n: ((batch, *self._samples[n]), self._dtypes[n]) for n in names},
            next_names=dict(zip(names, self.contract.next_names, strict=True)),
        )
        if self._device_id is None:
            buffers = HostBuffers(self._session, layout)
        else:
            graph_ids = None
            if self._cuda_graph:  # new buffers, new addresses: graphs of their own
                graph_ids = (self._graphs + 1, self._graphs + 2)
                self._graphs += 2
            buffers = DeviceBuffers(self._session, layout, self._device_id, graph_ids)
        self._buffers, self._batch = buffers, batch
        if self.contract.initial_state is None:
            self._unset = set(names)
            return
        for name, value in self._initial_state().items():
            buffers.put(name, value)
        self._unset = set()

    def _initial_state(self) -> dict[str, np.ndarray]:
        """The state at rest for the batch held, by name."""
        initial = self.contract.initial_state
        if initial is None and self.contract.states:
            raise self._no_rest_state()
        states = {}
        for name, value in (initial or {}).items():
            sample = self._samples[name]
            if not value.fits(sample):
                raise ValueError(
                    f"{str(self.path)!r} has bad metadata: {INITIAL_STATE_KEY} {name!r} has "
                    f"shape {list(value.shape)}, which does not broadcast to the state's "
                    f"{['B', *sample]}"
                )
            rest = np.asarray(value.values, np.float64).astype(self._dtypes[name])
            states[name] = np.broadcast_to(rest.reshape(value.shape), (self._batch, *sample))
        return states

    def _raise_unset(self) -> None:
        names = ", ".join(n for n in self.contract.state_names if n in self._unset)
        raise self._no_rest_state(f", and {names} are not set")

    def _no_rest_state(self, detail: str = "") -> ValueError:
        return ValueError(
            f"{str(self.path)!r} records no state at rest (metadata {INITIAL_STATE_KEY}, "
            f"written by lifexport.to_onnx since this version){detail}: set the state by name "
            "with set_state(), or re-export the model"
        )


class StateView(MutableMapping):
    """A session's state by name: reading gives a copy, assigning sets it."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __getitem__(self, name: str) -> np.ndarray:
        return self._session.get_state(name)

    def __setitem__(self, name: str, array: np.ndarray) -> None:
        self._session.set_state(name, array)

    def __delitem__(self, name: str) -> None:
        raise TypeError("a session's states cannot be removed; reset() sets them to rest")

    def __iter__(self) -> Iterator[str]:
        return iter(self._session.state_names)

    def __len__(self) -> int:
        return len(self._session.state_names)


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(
            f"path must be a str or os.PathLike of an .onnx file, got {type(path).__name__}"
        )
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; give the .onnx file")
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    return path


def _providers(
    providers: Any, options: Any, ort: Any
) -> tuple[list[str], list[dict[str, str]] | None]:
    """The providers, checked against those installed, and their options as onnxruntime
    takes them (a list of string dicts in the providers' order)."""
    if providers is None:
        providers = [_CPU]
    elif isinstance(providers, str):
        providers = [providers]
    if not (isinstance(providers, Sequence) and all(isinstance(p, str) for p in providers)):
        raise TypeError(f"providers must be a list of provider names, got {providers!r}")
    if not providers:
        raise ValueError("providers must name at least one execution provider")
    available = ort.get_available_providers()
    for name in providers:
        if name not in available:
            raise ValueError(
                f"provider {name!r} is not available in this onnxruntime; available: "
                f"{', '.join(available)}"
            )
    if options is None:
        return list(providers), None
    if isinstance(options, Mapping):
        unknown = [name for name in options if name not in providers]
        if unknown:
            raise ValueError(
                f"provider_options names {unknown}, which are not in providers {list(providers)}"
            )
        options = [options.get(name, {}) for name in providers]
    if not (isinstance(options, Sequence) and all(isinstance(o, Mapping) for o in options)):
        raise TypeError(
            "provider_options must be a list of dicts (one per provider) or a dict of dicts by "
            f"provider name, got {options!r}"
        )
    if len(options) != len(providers):
        raise ValueError(
            f"provider_options must have one dict per provider ({len(providers)}), got "
            f"{len(options)}"
        )
    return list(providers), [{k: _option(v) for k, v in o.items()} for o in options]


def _option(value: Any) -> str:
    """An option value as onnxruntime reads it: booleans as ``"1"``/``"0"``."""
    return ("1" if value else "0") if isinstance(value, bool) else str(value)


def _element_type(value: Any, where: str) -> np.dtype:
    if value.type not in _ORT_TYPES:
        raise ValueError(
            f"{where}: {value.name} is {value.type}; Session feeds "
            f"{', '.join(_ORT_TYPES)} (numpy has no bfloat16)"
        )
    return _ORT_TYPES[value.type]


def _sample_shape(value: Any, where: str, dynamic_ok: bool = False) -> tuple[int, ...] | None:
    """The dimensions after the batch, which must be fixed (``None`` if not, ``dynamic_ok``)."""
    sample = tuple(value.shape[1:])
    if all(isinstance(d, int) for d in sample):
        return sample
    if dynamic_ok:
        return None
    raise ValueError(
        f"{where}: state {value.name} has shape {list(value.shape)}; Session needs fixed "
        "dimensions after the batch"
    )


def _rows(rows: Any, batch: int) -> list[int]:
    """Batch row indices in ``[0, batch)``."""
    if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        rows = [rows]
    if isinstance(rows, np.ndarray):
        rows = rows.tolist()
    if not (
        isinstance(rows, Sequence)
        and all(isinstance(r, (int, np.integer)) and not isinstance(r, bool) for r in rows)
    ):
        raise TypeError(f"rows must be an int or a sequence of ints, got {rows!r}")
    bad = [int(r) for r in rows if not 0 <= r < batch]
    if bad:
        raise ValueError(f"rows must be batch rows in [0, {batch}), got {bad}")
    return [int(r) for r in rows]


def _shown(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
