"""Shared fixtures for the uebench tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# real data kept beside the repository on development machines and CI (../shared/data); a user's clone lacks it
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return SHARED_DATA
