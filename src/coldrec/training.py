"""The one trainer loop every trained model plugs into.

A model supplies ``train_epoch(epoch) -> {"loss": …}`` and, for early stopping, a
``validate() -> float`` (higher is better) computed on the validation carve-out. The
loop owns the rest: progress, logs with fields, patience, and restoring the best
weights. Seeding is the caller's (``coldrec.eval.runner.seed_everything``), done once
before the model is built.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from coldrec._progress import progress_bar
from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view

__all__ = ["TrainedConfig", "TrainingConfig", "TrainingLog", "fit_with_validation", "run_epochs"]

log = logging.getLogger(__name__)


class TrainingConfig(BaseModel):
    """Optimisation settings shared by the trained models."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(50, gt=0)
    """Most epochs to run."""
    batch_size: int = Field(1024, gt=0)
    lr: float = Field(3e-4, gt=0)
    """AdamW learning rate."""
    weight_decay: float = Field(0.01, ge=0)
    """AdamW decoupled weight decay."""
    eval_every: int = Field(1, gt=0)
    """Validate every this many epochs (with early stopping)."""
    patience: int = Field(5, gt=0)
    """Stop after this many validations without improvement."""
    device: str = "cpu"


class TrainedConfig(BaseModel):
    """What every model trained by this loop shares: its optimisation settings and how
    the epoch count is chosen. A subclass sets its own ``training`` default; settings
    given for ``training`` (a YAML node, ``--set model.training.lr=…``) are layered over
    that default, so overriding one keeps the model's other defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    training: TrainingConfig = Field(default_factory=TrainingConfig)
    early_stopping: bool = True
    """Choose the epoch count on the validation carve-out, then refit on all history."""
    valid_share: float = Field(0.3, gt=0, lt=1)
    """Share of the history held out for validation (when the Dataset has no ``valid``)."""

    @field_validator("training", mode="before")
    @classmethod
    def _over_the_model_default(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            default = cls.model_fields["training"].get_default(call_default_factory=True)
            return {**default.model_dump(), **value}
        return value


@dataclass
class TrainingLog:
    """What happened: per-epoch losses, validation scores, and the epoch kept."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    losses: list[float] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    """Wall time of each epoch's training (validation excluded)."""


def run_epochs(
    module: torch.nn.Module,
    train_epoch: Callable[[int], dict[str, float]],
    config: TrainingConfig,
    validate: Callable[[], float] | None = None,
    name: str = "training",
) -> TrainingLog:
    """Run up to ``config.epochs`` epochs; with ``validate``, stop early and keep the best
    weights (restored into ``module``), else keep the last."""
    result = TrainingLog()
    best_state: dict[str, torch.Tensor] | None = None
    waited = 0
    with progress_bar() as progress:
        task = progress.add_task(name, total=config.epochs)
        for epoch in range(1, config.epochs + 1):
            module.train()
            start = time.perf_counter()
            metrics = train_epoch(epoch)
            result.seconds.append(time.perf_counter() - start)
            result.epochs_run = epoch
            result.losses.append(metrics["loss"])
            line = f"{name} epoch {epoch}: loss {metrics['loss']:.4f}"
            if validate is not None and epoch % config.eval_every == 0:
                module.eval()
                with torch.no_grad():
                    score = validate()
                result.scores[epoch] = score
                line += f", validation {score:.4f}"
                if score > result.best_score:
                    result.best_score, result.best_epoch, waited = score, epoch, 0
                    best_state = copy.deepcopy(module.state_dict())
                else:
                    waited += 1
            log.info(line)
            progress.advance(task)
            if waited >= config.patience:
                log.info("%s: no improvement in %d validations, stopping", name, waited)
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        result.best_epoch = result.epochs_run
    module.eval()
    return result


def fit_with_validation(
    dataset: Dataset,
    train: Callable[[Dataset, int, bool], TrainingLog],
    epochs: int,
    early_stopping: bool,
    valid_share: float,
    validated: TrainingLog | None = None,
) -> dict[str, TrainingLog]:
    """Choose the epoch count on the validation carve-out, then refit on all history.

    ``train(data, epochs, validate)`` trains a fresh model on ``data``'s history (with
    ``validate``, early stopping on ``data``'s own test split, which is the validation
    view's held-out part) and leaves the model trained. Without ``early_stopping`` the
    model is trained once for ``epochs``. ``validated``: the log of a validation-view
    training already done (it is not repeated).
    """
    logs: dict[str, TrainingLog] = {}
    if early_stopping:
        logs["validation"] = validated or train(validation_view(dataset, valid_share), epochs, True)
        epochs = max(1, logs["validation"].best_epoch)
    logs["final"] = train(dataset, epochs, False)
    return logs
