"""One evaluation run: load a Dataset, fit a model, evaluate it, write the metrics file.

A run folder holds ``config.json`` (the resolved settings) and one
``metrics-seed<N>.json`` per seed::

    {"method": …, "seed": …, "config_hash": …, "protocol": "full",
     "segments": {"all"|"warm"|"cold"|"cold_users": {"recall@20": …, "ndcg@20": …}},
     "counts": {segment: {"users": …, "targets": …}}, "excluded": {…},
     "timings": {"fit_s": …, "evaluate_s": …}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coldrec._io import write_json_atomic
from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import KS, evaluate
from coldrec.models import ModelConfig, PopularityConfig

__all__ = ["EvaluateConfig", "config_hash", "run_evaluation"]

log = logging.getLogger(__name__)


class EvaluateConfig(BaseModel):
    """What ``coldrec evaluate`` runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Path
    """A prepared Dataset folder."""
    model: ModelConfig = Field(default_factory=PopularityConfig)
    name: str | None = None
    """Method name in reports; defaults to the model's ``kind``."""
    seed: int = 0
    ks: tuple[int, ...] = KS
    batch_size: int = Field(1024, gt=0)
    """Users scored at once."""

    @property
    def method(self) -> str:
        return self.name or self.model.kind


def config_hash(config: BaseModel, dataset: Dataset) -> str:
    """Hash of the settings and of the data they ran on (source files and preparation),
    not of the dataset's path or the seed."""
    payload = {
        "config": config.model_dump(mode="json", exclude={"dataset", "seed"}),
        "data": {"source": dataset.meta["source"], "prepare": dataset.meta["prepare"]},
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global state and torch."""
    random.seed(seed)
    np.random.seed(seed)  # for libraries that still use the global state
    torch.manual_seed(seed)


def run_evaluation(config: EvaluateConfig, out: Path) -> dict[str, Any]:
    """Fit and evaluate ``config.model`` on ``config.dataset``; write and return the metrics."""
    seed_everything(config.seed)
    dataset = Dataset.load(config.dataset)
    start = time.perf_counter()
    model = config.model.build().fit(dataset)
    fitted = time.perf_counter()
    metrics = evaluate(model, dataset, ks=config.ks, batch_size=config.batch_size)
    done = time.perf_counter()
    result = {
        "method": config.method,
        "seed": config.seed,
        "config_hash": config_hash(config, dataset),
        **metrics,
        "timings": {"fit_s": round(fitted - start, 3), "evaluate_s": round(done - fitted, 3)},
    }
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    write_json_atomic(out / f"metrics-seed{config.seed}.json", result)
    log.info("%s: metrics written to %s", config.method, out)
    return result
