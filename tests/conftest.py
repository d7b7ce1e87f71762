from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldrec.data import Dataset, prepare
from coldrec.data.sources import SyntheticSource

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data sets beside the project; tests that need them skip without them."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session", autouse=True)
def isolated_vector_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Text vectors go to a per-session folder, never to the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("coldrec-cache")
    previous = os.environ.get("COLDREC_CACHE_DIR")
    os.environ["COLDREC_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["COLDREC_CACHE_DIR"]
    else:
        os.environ["COLDREC_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def small_dataset() -> Dataset:
    """A prepared synthetic data set small enough for every model (global 70/30 split)."""
    return prepare(SyntheticSource(n_users=300, n_items=200, seed=5).load())


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp server (OpenAI API) serving SmolLM2 on a free local port."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (installed by make test)")
    from coldrec.llm.server import local_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    with local_server(log=log) as base:
        yield base
