"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

# The real datasets live beside the repository (never inside it): <repo>/../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real-data folder; skips the test cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not available at {SHARED_DATA}")
    return SHARED_DATA
