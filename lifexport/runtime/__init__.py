"""A deployment runtime for exported files: :class:`Session` runs a file in onnxruntime and
keeps its state for the caller.

It needs numpy and onnxruntime only (no torch, no onnx): it reads the file's contract with
:mod:`lifexport.graph`, starts from the state at rest the file records
(``lifexport.initial_state``), feeds each step's next state back, and resets batch rows whose
stream ends. ``lifexport run`` is the same on the command line.

Modules: ``_session`` (:class:`Session` and its checks), ``_buffers`` (the state in host or
device memory, and one step through IO binding).

Examples:
    >>> from lifexport.runtime import Session
    >>> session = Session("model.onnx")  # doctest: +SKIP
    >>> ys = session.run(xs)  # (T, B, ...)  # doctest: +SKIP
"""

from lifexport.runtime._session import Session, StateView

__all__ = ["Session", "StateView"]
