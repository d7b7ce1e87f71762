from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coldrec.config import validate
from coldrec.data import Dataset, prepare
from coldrec.data.sources import SyntheticSource
from coldrec.experiment.config import ExperimentConfig
from coldrec.experiment.run import run_experiment
from tests.test_experiment import TINY

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


@pytest.fixture(scope="session")
def second_server(llama_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second replica beside :func:`llama_server` (the Ray engines' tests)."""
    from coldrec.llm.server import local_server

    with local_server(log=tmp_path_factory.mktemp("server2") / "server.log") as base:
        yield base


@pytest.fixture(scope="session")
def ray_runtime() -> Iterator[None]:
    """One local Ray runtime for the in-process Ray tests (each run joins it instead of
    starting its own)."""
    ray = pytest.importorskip("ray", reason="needs Ray (installed by make test)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def served_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished E0-like run (no labels) of the tiny synthetic experiment, its retriever
    trained enough for its content projection to mean something (the serve tests'), its
    fusion with an evidence blend (κ = 2), so that serving must follow it."""
    root = tmp_path_factory.mktemp("serve")
    retrieve = {"top_m": 100, "model": {"dim": 32, "training": {"epochs": 10}}}
    rank = {**TINY["rank"], "kappas": [2.0]}
    config = validate(ExperimentConfig, {**TINY, "supervise": None, "losses": [],
                                         "baselines": {}, "retrieve": retrieve,
                                         "rank": rank})  # fmt: skip
    run_experiment(config, root / "run")
    return root / "run"
