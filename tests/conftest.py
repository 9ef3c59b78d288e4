"""Shared fixtures for the uebench tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# real data kept beside the repository on development machines and CI (../shared/data); a user's clone lacks it
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One torch thread for tests on tiny tensors (more only add overhead on a shared 2-core machine), restored
    afterwards: torch's thread count is process-wide, so a module that set it at import would change every test
    that runs after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
