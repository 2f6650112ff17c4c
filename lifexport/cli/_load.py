"""The user's inputs that hold code or data: a model spec (``package.module:function``) and a
tensor file. Every way they can fail is a :class:`~lifexport.cli._common.UsageError`."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifexport.cli._common import UsageError
from lifexport.limits import check_elements

if TYPE_CHECKING:
    import torch


def load_model(spec: str) -> torch.nn.Module:
    """``package.module:function`` -> the torch module that the function returns.

    Every way the named code can fail (it does not import, is not a function, needs arguments,
    raises, returns something else) is the caller's to fix: a :class:`UsageError`.
    """
    import torch

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"model spec must look like package.module:function, got {spec!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:  # as `python -m` does, so that a module beside the user is found
        sys.path.insert(0, cwd)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise UsageError(f"cannot load model spec {spec!r}: {error}") from None
    except Exception as error:  # the user's module failed while importing
        raise UsageError(
            f"cannot load model spec {spec!r}: importing {module_name} raised "
            f"{type(error).__name__}: {error}"
        ) from None
    if not callable(factory):
        raise UsageError(
            f"{spec} is not callable (a {type(factory).__name__}); name a function that "
            "returns the model"
        )
    try:
        inspect.signature(factory).bind()
    except TypeError:
        raise UsageError(
            f"{spec} takes arguments {inspect.signature(factory)}; name a function that "
            "builds the model with no arguments"
        ) from None
    except ValueError:  # no signature to inspect (a builtin): calling it will tell
        pass
    try:
        model = factory()
    except Exception as error:  # the user's code: report it, do not crash with its traceback
        raise UsageError(
            f"cannot build the model from {spec}: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{spec} returned {type(model).__name__}, not a torch module")
    return model


def load_tensor(path: str, option: str) -> Any:
    """A tensor saved with ``torch.save``, loaded with ``weights_only=True`` (no code runs)."""
    import pickle

    import torch

    try:
        value = torch.load(path, weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        raise UsageError(f"cannot read {option} {path!r}: {error}") from None
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{option} {path!r} holds a {type(value).__name__}, not a tensor")
    try:  # a saved view can declare any shape over a small storage
        check_elements(f"{option} {path!r}: a tensor", tuple(value.shape))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return value
