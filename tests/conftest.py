from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data sets beside the project; tests that need them skip without them."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
