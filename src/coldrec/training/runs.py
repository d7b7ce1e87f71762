"""What every run (``coldrec evaluate``, ``retrieve``, ``rank``) shares: its settings'
base, seeding, the hashes that tie a metrics file to its settings and data, and the
run folder it writes.

A run folder holds ``config.json`` (the resolved settings) and one
``metrics-seed<N>.json`` per seed::

    {"method": …, "seed": …, "config_hash": …, "protocol": "full",
     "segments": {"all"|"warm"|"cold"|"cold_users": {"recall@20": …, "ndcg@20": …}},
     "counts": {segment: {"users": …, "targets": …}}, "excluded": {…},
     "inputs": {"dataset": …, …}, "data_hash": …,
     "training": {stage: {"epochs_run": …, "best_epoch": …, …}},  # trained models only
     "timings": {"fit_s": …, "evaluate_s": …}}

A trained model is kept beside them, in ``model/`` (:mod:`coldrec.training.saving`).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from coldrec._util.io import json_hash, write_json_atomic
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import Dataset
from coldrec.eval.protocol import CANDIDATE_MS, KS, ColdUsers, Scorer, evaluate
from coldrec.training.distributed import world_size
from coldrec.training.model import Trainable

__all__ = ["RunConfig", "config_hash", "json_safe", "run_record", "seed_everything", "write_run"]


class RunConfig(BaseModel, ABC):
    """What every run (``evaluate``, ``retrieve``, ``rank``) has. Its inputs (the Dataset
    folder, an earlier run) are arguments of the run, not settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    """Method name in reports; defaults to the model's ``kind``."""
    seed: int = Field(0, ge=0, lt=2**32)
    """Seeds the model's training generator (and Python's, NumPy's and torch's)."""
    ks: tuple[Annotated[int, Field(gt=0)], ...] = Field(KS, min_length=1)
    """Cut-offs of every metric."""
    batch_size: int = Field(1024, gt=0)
    """Users scored at once."""
    cold_users: ColdUsers = "popularity"
    """Who ranks for test users without history: the documented fallback (recent
    popularity, :mod:`coldrec.eval.protocol`) or the model itself."""

    @property
    def method(self) -> str:
        return self.name or self.default_name()

    @abstractmethod
    def default_name(self) -> str:
        """The method name when ``name`` is not set."""

    def generator(self) -> torch.Generator:
        """The generator every random draw of the run's training comes from."""
        return torch.Generator().manual_seed(self.seed)

    def evaluate(
        self,
        model: Scorer,
        dataset: Dataset,
        candidates: Candidates | None = None,
        candidate_ms: Sequence[int] = CANDIDATE_MS,
    ) -> dict[str, Any]:
        """:func:`~coldrec.eval.protocol.evaluate` with the run's cut-offs, batch size
        and rule for users without history."""
        return evaluate(model, dataset, self.ks, candidates, candidate_ms, self.batch_size,
                        self.cold_users)  # fmt: skip


def config_hash(config: BaseModel, dataset: Dataset) -> str:
    """Hash of the settings and of the data they ran on; the seed, the method name and
    batch sizes (which change no metric) are left out."""
    settings = config.model_dump(mode="json", exclude={"seed", "name", "batch_size"})
    return json_hash({"config": settings, "data": dataset.data_hash()})


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
    """Seed Python, NumPy's legacy global state and torch (for libraries that use them;
    coldrec's own training draws from the generator a run passes in)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_record(
    config: RunConfig,
    dataset: Dataset,
    inputs: dict[str, Path],
    metrics: dict[str, Any],
    model: object,
    **timings: float,
) -> dict[str, Any]:
    """The metrics file's content: method, seed, hashes, inputs, the metrics, the
    training summary of a trained model (and how many processes trained it), and the
    timings (seconds, rounded)."""
    record = {
        "method": config.method,
        "seed": config.seed,
        "config_hash": config_hash(config, dataset),
        "data_hash": dataset.data_hash(),
        "inputs": {name: str(path) for name, path in inputs.items()},
        **metrics,
    }
    if isinstance(model, Trainable):
        record["training"] = model.training_log.summary()
        record["training_processes"] = world_size()
    record["timings"] = {name: round(seconds, 3) for name, seconds in timings.items()}
    return record


def write_run(out: Path, config: BaseModel, result: dict[str, Any]) -> None:
    """Write ``config.json`` and ``metrics-seed<N>.json`` (NaN written as ``null``)."""
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    write_json_atomic(out / f"metrics-seed{result['seed']}.json", json_safe(result))
