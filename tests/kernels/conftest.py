"""Kernel tests run the Triton kernels in Triton's interpreter on CPU tensors.

Triton reads ``TRITON_INTERPRET`` when it is first imported and defines its jit functions,
so the repository's root ``conftest.py`` sets it, before anything imports triton. Where CUDA
is available it is left alone, so the ``cuda`` tests run the compiled kernels; the
interpreter tests then skip (run them with ``TRITON_INTERPRET=1 pytest tests/kernels``).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def interpreter():
    """Skip unless the kernels run in Triton's interpreter (CPU tensors)."""
    pytest.importorskip("triton")
    from lifexport.kernels import _triton

    if not _triton.INTERPRETED:
        pytest.skip("the kernels are compiled for the GPU here; TRITON_INTERPRET=1 runs these")
