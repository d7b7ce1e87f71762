"""``coldrec retrieve``: train the Two-Tower model, retrieve top-M candidates with FAISS
for every evaluated user, and score them in the harness.

A retrieval run folder holds ``config.json``, ``metrics-seed<N>.json`` (Two-Tower-only
ranking over its candidates, with candidate Recall@M per segment), ``candidates.parquet``
(:mod:`coldrec.data.candidates`), ``valid_candidates.parquet`` (the same for the
validation view, from the model trained there, whose vectors are in ``valid_model/``)
and ``model/``, the saved Two-Tower (weights, ``user_vectors.npy`` and
``item_vectors.npy`` with JSON sidecars).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from scipy import sparse

from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.eval.protocol import CANDIDATE_MS, EvaluationPlan
from coldrec.retrieval.index import IndexConfig, build_index, search
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig
from coldrec.training import distributed
from coldrec.training.runs import RunConfig, run_record, seed_everything, write_run

__all__ = ["RetrieveConfig", "retrieve", "run_retrieval"]

log = logging.getLogger(__name__)


class RetrieveConfig(RunConfig):
    """What ``coldrec retrieve`` runs."""

    model: TwoTowerConfig = Field(default_factory=TwoTowerConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    top_m: int = Field(2000, gt=0)
    """Candidates kept per user."""
    candidate_ms: tuple[Annotated[int, Field(gt=0)], ...] = CANDIDATE_MS

    def default_name(self) -> str:
        return self.model.kind


def retrieve(
    users: np.ndarray,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    history: sparse.csr_array,
    config: RetrieveConfig,
) -> Candidates:
    """The top-M items of each of ``users`` (rows of ``user_vectors`` by user id), never
    an item of their ``history`` (rows follow ``users``)."""
    index = build_index(item_vectors, config.index)
    return search(index, users, user_vectors[users], config.top_m, history, config.index.batch_size)


def run_retrieval(config: RetrieveConfig, dataset_path: Path, out: Path) -> dict[str, Any]:
    """Fit the Two-Tower model on the Dataset in ``dataset_path``, retrieve and evaluate;
    write everything into ``out`` and return the metrics."""
    seed_everything(config.seed)
    dataset = Dataset.load(dataset_path)
    start = time.perf_counter()
    model = TwoTower(config.model).fit(dataset, generator=config.generator())
    fitted = time.perf_counter()
    if not distributed.is_main():  # data-parallel: the other processes only train
        return {}
    plan = EvaluationPlan.of(dataset)
    candidates = retrieve(plan.users, model.user_vectors, model.item_vectors, plan.history, config)
    retrieved = time.perf_counter()
    metrics = config.evaluate(model, dataset, candidates, config.candidate_ms)
    done = time.perf_counter()
    model.save(out / "model")
    candidates.save(out / "candidates.parquet")
    if model.validation_model is not None:  # what later stages choose their weights on
        view = EvaluationPlan.of(validation_view(dataset, config.model.valid_share))
        chosen = model.validation_model
        retrieve(view.users, chosen.user_vectors, chosen.item_vectors, view.history,
                 config).save(out / "valid_candidates.parquet")  # fmt: skip
        (out / "valid_model").mkdir(exist_ok=True)
        chosen._write_files(out / "valid_model")  # its vectors, for the view's labels
    result = run_record(config, dataset, {"dataset": dataset_path}, metrics, model,
                        fit_s=fitted - start, retrieve_s=retrieved - fitted,
                        evaluate_s=done - retrieved)  # fmt: skip
    write_run(out, config, result)
    log.info("%s: %d users x %d candidates written to %s", config.method, len(plan.users),
             config.top_m, out)  # fmt: skip
    return result
