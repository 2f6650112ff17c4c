"""Kernel tests run the Triton kernels in Triton's interpreter on CPU tensors.

Triton reads ``TRITON_INTERPRET`` when the kernels are defined (on their first use in the
process), so it is set here, at collection, before any test runs a kernel. Where CUDA is
available it is left alone, so the ``cuda`` tests run the compiled kernels; the interpreter
tests then skip (run them with ``TRITON_INTERPRET=1 pytest tests/kernels``).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture
def interpreter():
    """Skip unless the kernels run in Triton's interpreter (CPU tensors)."""
    pytest.importorskip("triton")
    from lifexport.kernels import _triton

    if not _triton.INTERPRETED:
        pytest.skip("the kernels are compiled for the GPU here; TRITON_INTERPRET=1 runs these")
