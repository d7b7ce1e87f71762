"""One evaluation run: load a Dataset, fit a model, evaluate it, write the metrics file.

A run folder holds ``config.json`` (the resolved settings) and one
``metrics-seed<N>.json`` per seed::

    {"method": …, "seed": …, "config_hash": …, "protocol": "full",
     "segments": {"all"|"warm"|"cold"|"cold_users": {"recall@20": …, "ndcg@20": …}},
     "counts": {segment: {"users": …, "targets": …}}, "excluded": {…},
     "training": {stage: {"epochs_run": …, "best_epoch": …, …}},  # trained models only
     "timings": {"fit_s": …, "evaluate_s": …}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import statistics
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coldrec._io import write_json_atomic
from coldrec.data.dataset import STATS_KEYS, Dataset
from coldrec.eval.protocol import KS, evaluate
from coldrec.models import ModelConfig, PopularityConfig
from coldrec.training import TrainingLog

__all__ = [
    "EvaluateConfig",
    "RunConfig",
    "config_hash",
    "data_hash",
    "json_safe",
    "run_evaluation",
    "seed_everything",
    "write_run",
]

log = logging.getLogger(__name__)


class RunConfig(BaseModel, ABC):
    """What every run (``evaluate``, ``retrieve``, ``rank``) has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: Path
    """A prepared Dataset folder."""
    name: str | None = None
    """Method name in reports; defaults to the model's ``kind``."""
    seed: int = 0
    ks: tuple[Annotated[int, Field(gt=0)], ...] = Field(KS, min_length=1)
    """Cut-offs of every metric."""
    batch_size: int = Field(1024, gt=0)
    """Users scored at once."""

    @property
    def method(self) -> str:
        return self.name or self.default_name()

    @abstractmethod
    def default_name(self) -> str:
        """The method name when ``name`` is not set."""


class EvaluateConfig(RunConfig):
    """What ``coldrec evaluate`` runs."""

    model: ModelConfig = Field(default_factory=PopularityConfig)

    def default_name(self) -> str:
        return self.model.kind


def data_hash(dataset: Dataset) -> str:
    """Fingerprint of the data a run used: source files, preparation and counts."""
    keys = ("source", "prepare", *STATS_KEYS)
    return _hash({key: dataset.meta.get(key) for key in keys})


def config_hash(config: BaseModel, dataset: Dataset) -> str:
    """Hash of the settings and of the data they ran on; the dataset's path, the seed,
    the method name and batch sizes (which change no metric) are left out."""
    settings = config.model_dump(mode="json", exclude={"dataset", "seed", "name", "batch_size"})
    return _hash({"config": settings, "data": data_hash(dataset)})


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by ``None`` (JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global state and torch."""
    random.seed(seed)
    np.random.seed(seed)  # for libraries that still use the global state
    torch.manual_seed(seed)


def training_summary(model: object) -> dict[str, dict[str, float]]:
    """Epochs run, epoch kept, validation score and median seconds per training epoch of
    each stage (``validation``, ``final``) of a model trained by the shared loop."""
    logs: dict[str, TrainingLog] = getattr(model, "training_log", {})
    return {
        name: {
            "epochs_run": t.epochs_run,
            "best_epoch": t.best_epoch,
            "best_score": t.best_score,
            "seconds_per_epoch": statistics.median(t.seconds),
        }
        for name, t in logs.items()
    }


def write_run(out: Path, config: BaseModel, result: dict[str, Any]) -> None:
    """Write ``config.json`` and ``metrics-seed<N>.json`` (NaN written as ``null``)."""
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    write_json_atomic(out / f"metrics-seed{result['seed']}.json", json_safe(result))


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
        "data_hash": data_hash(dataset),
        **metrics,
        **({"training": training_summary(model)} if hasattr(model, "training_log") else {}),
        **({"transfer": moved.summary()} if (moved := getattr(model, "transfer", None)) else {}),
        "timings": {"fit_s": round(fitted - start, 3), "evaluate_s": round(done - fitted, 3)},
    }
    write_run(out, config, result)
    log.info("%s: metrics written to %s", config.method, out)
    return result
