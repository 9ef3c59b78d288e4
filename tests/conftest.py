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


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread for the whole run, restored afterwards. Session-wide and autouse, so that module-scoped
    fixtures (a poison crafted once per module) run at the same thread count as the tests that compare against
    them: CPU kernels reduce in a thread-dependent order, so 'same seed, same bytes' holds per thread count. Tiny
    tensors gain nothing from more threads on a shared 2-core machine. Tests about thread counts set their own."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
