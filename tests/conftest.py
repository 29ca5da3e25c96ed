"""Shared fixtures."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run torch on one thread for the module: on a small shared machine the default (one thread per core)
    makes training several times slower whenever another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
