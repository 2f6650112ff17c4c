"""Fixtures shared by the module tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and with another process busy on this
    2-core machine the thread pool's barriers made a run 25x slower (measured). One thread
    for the test, restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
