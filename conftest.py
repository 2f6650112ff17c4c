"""Doctests in lifexport/ see ``torch`` without importing it; ``cuda`` tests skip without CUDA.

Without CUDA, the fused-kernel tests run Triton's interpreter. Triton reads
``TRITON_INTERPRET`` when it defines its jit functions, its own library's (``tl.zeros_like``)
included, at its first import; torch may import triton while other tests are collected, so
the variable is set here, before anything else is imported (triton 3.9).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist, the workers share the cores instead of each taking all of them.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_torch(doctest_namespace):
    doctest_namespace["torch"] = torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: torch.cuda.is_available() is False here")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
