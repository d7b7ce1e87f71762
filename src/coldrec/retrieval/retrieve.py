"""``coldrec retrieve``: train the Two-Tower model, export its vectors, retrieve top-M
candidates with FAISS for every evaluated user, and score them in the harness.

A retrieval run folder holds ``config.json``, ``metrics-seed<N>.json`` (Two-Tower-only
ranking over its candidates, with candidate Recall@M per segment), ``candidates.parquet``
(:mod:`coldrec.candidates`), ``valid_candidates.parquet`` (the same for the validation
view, from the model trained there), ``user_vectors.npy``/``item_vectors.npy`` with JSON sidecars,
and the weights in ``two_tower.safetensors``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from coldrec.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.eval.protocol import CANDIDATE_MS, EvaluationPlan, evaluate
from coldrec.eval.runner import (
    RunConfig,
    config_hash,
    data_hash,
    seed_everything,
    training_summary,
    write_run,
)
from coldrec.retrieval.index import IndexConfig, build_index, search
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig

__all__ = ["RetrieveConfig", "run_retrieval"]

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


def _validation_candidates(dataset: Dataset, model: TwoTower, config: RetrieveConfig) -> Candidates:
    """Top-M of the validation-view model for the validation view's users, so that later
    stages can choose their weights on validation with the candidates they will get."""
    assert model.validation_vectors is not None
    view = validation_view(dataset, config.model.valid_share)
    plan = EvaluationPlan.of(view)
    users, items = model.validation_vectors
    index = build_index(items, config.index)
    return search(
        index, plan.users, users[plan.users], config.top_m, plan.history, config.index.batch_size
    )


def run_retrieval(config: RetrieveConfig, out: Path) -> dict[str, Any]:
    """Fit, export, retrieve and evaluate; write everything into ``out`` and return the metrics."""
    seed_everything(config.seed)
    dataset = Dataset.load(config.dataset)
    start = time.perf_counter()
    model = TwoTower(config.model).fit(dataset)
    fitted = time.perf_counter()
    plan = EvaluationPlan.of(dataset)
    index = build_index(model.item_vectors, config.index)
    user_vectors = model.user_vectors[plan.users]
    candidates = search(
        index, plan.users, user_vectors, config.top_m, plan.history, config.index.batch_size
    )
    retrieved = time.perf_counter()
    metrics = evaluate(
        model, dataset, config.ks, candidates, config.candidate_ms, config.batch_size
    )
    done = time.perf_counter()
    model.save(out)
    candidates.save(out / "candidates.parquet")
    if model.validation_vectors is not None:
        _validation_candidates(dataset, model, config).save(out / "valid_candidates.parquet")
    result = {
        "method": config.method,
        "seed": config.seed,
        "config_hash": config_hash(config, dataset),
        "data_hash": data_hash(dataset),
        **metrics,
        "training": training_summary(model),
        "timings": {
            "fit_s": round(fitted - start, 3),
            "retrieve_s": round(retrieved - fitted, 3),
            "evaluate_s": round(done - retrieved, 3),
        },
    }
    write_run(out, config, result)
    log.info(
        "%s: %d users x %d candidates written to %s",
        config.method,
        len(plan.users),
        config.top_m,
        out,
    )
    return result
