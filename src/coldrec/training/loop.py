"""The one epoch loop every trained model plugs into, and what it records.

A model starts a training by returning an :class:`EpochTrainer` (its network, optimiser
and batches for one Dataset); :func:`run_epochs` drives it: progress, logs, patience,
and restoring the best weights when the epoch count is chosen on validation. The loop
records each epoch's loss, validation score and seconds in an :class:`EpochLog`; a
model's :class:`TrainingLog` holds the log of its validation training and of its final
one.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from coldrec._util.progress import progress_bar
from coldrec.training.checkpoint import Checkpoint
from coldrec.training.distributed import from_rank_zero

__all__ = [
    "EpochLog",
    "EpochTrainer",
    "TrainedConfig",
    "TrainingConfig",
    "TrainingLog",
    "run_epochs",
]

log = logging.getLogger(__name__)


class TrainingConfig(BaseModel):
    """Optimisation settings shared by the trained models. Training runs on the CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(50, gt=0)
    """Most epochs to run."""
    batch_size: int = Field(1024, gt=0)
    lr: float = Field(3e-4, gt=0)
    """Learning rate of the model's optimiser (AdamW for the sequential models and the
    Two-Tower, Adam for the models trained pair by pair)."""
    weight_decay: float = Field(0.01, ge=0)
    """Weight decay: decoupled with AdamW, an L2 gradient term with Adam."""
    eval_every: int = Field(1, gt=0)
    """Validate every this many epochs (with early stopping)."""
    patience: int = Field(5, gt=0)
    """Stop after this many validations without improvement."""


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
class EpochLog:
    """One training on one Dataset: per-epoch losses, validation scores, and the epoch
    kept (the best validated one, or the last)."""

    epochs_run: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    losses: list[float] = field(default_factory=list)
    scores: dict[int, float] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    """Wall time of each epoch's training (validation excluded)."""

    def summary(self) -> dict[str, Any]:
        """Epochs run, epoch kept, validation score (``None`` without validation) and the
        median seconds per training epoch."""
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "seconds_per_epoch": statistics.median(self.seconds) if self.seconds else None,
        }


@dataclass
class TrainingLog:
    """A trained model's history: the training on the validation view that chose the
    epoch count (with early stopping) and the final training on all history."""

    validation: EpochLog | None = None
    final: EpochLog | None = None

    def summary(self) -> dict[str, dict[str, Any]]:
        """:meth:`EpochLog.summary` of each training that ran, by name."""
        return {name: run.summary() for name, run in self._runs().items()}

    def to_json(self) -> dict[str, Any]:
        """Every recorded figure, for a saved model's sidecar (see :meth:`from_json`)."""
        return {name: {**asdict(run), "best_score": run.summary()["best_score"]}
                for name, run in self._runs().items()}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingLog:
        """The log :meth:`to_json` wrote."""
        runs = {}
        for name, run in data.items():
            score = -math.inf if run["best_score"] is None else run["best_score"]
            scores = {int(epoch): value for epoch, value in run["scores"].items()}
            runs[name] = EpochLog(**{**run, "best_score": score, "scores": scores})
        return cls(**runs)

    def _runs(self) -> dict[str, EpochLog]:
        return {name: run for name, run in (("validation", self.validation),
                                            ("final", self.final)) if run is not None}  # fmt: skip


@dataclass
class Progress:
    """Where :func:`run_epochs` stands after an epoch (what a checkpoint keeps of it)."""

    log: EpochLog
    epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    waited: int = 0

    def finished(self, config: TrainingConfig) -> bool:
        """Whether every epoch ran or patience ran out."""
        return self.epoch >= config.epochs or self.waited >= config.patience


class EpochTrainer(Protocol):
    """One training of one network on one Dataset, driven by :func:`run_epochs`."""

    @property
    def net(self) -> torch.nn.Module:
        """The network being trained (its best weights are restored after validation)."""
        ...

    def train_epoch(self, epoch: int) -> float:
        """Train one epoch; return its mean loss."""
        ...

    def validation_score(self) -> float:
        """The selection score of the network as it is now (higher is better), on the
        Dataset's own test split: the held-out part of a validation view."""
        ...


def run_epochs(
    trainer: EpochTrainer,
    config: TrainingConfig,
    validate: bool,
    name: str,
    checkpoint: Checkpoint | None = None,
) -> EpochLog:
    """Run up to ``config.epochs`` epochs. With ``validate``, score every
    ``eval_every`` epochs, stop after ``patience`` validations without improvement and
    keep the best weights (restored into ``trainer.net``); else keep the last. With a
    ``checkpoint``, resume from it when it holds one and keep it up to date."""
    state = checkpoint.load(trainer) if checkpoint is not None else None
    if state is not None:
        log.info("%s: resumed after epoch %d", name, state.epoch)
    state = state or Progress(log=EpochLog())
    result: EpochLog = state.log
    with progress_bar() as progress:
        task = progress.add_task(name, total=config.epochs, completed=state.epoch)
        while not state.finished(config):
            state.epoch += 1
            _one_epoch(trainer, config, validate, name, state)
            progress.advance(task)
            if state.waited >= config.patience:
                log.info("%s: no improvement in %d validations, stopping", name, state.waited)
            if checkpoint is not None:
                checkpoint.save(trainer, state, last=state.finished(config))
    if state.best_state is not None:
        trainer.net.load_state_dict(state.best_state)
    else:
        result.best_epoch = result.epochs_run
    trainer.net.eval()
    return result


def _one_epoch(
    trainer: EpochTrainer, config: TrainingConfig, validate: bool, name: str, state: Progress
) -> None:
    """Train epoch ``state.epoch`` (and validate it when due), recording it in ``state``."""
    result, epoch = state.log, state.epoch
    trainer.net.train()
    start = time.perf_counter()
    loss = trainer.train_epoch(epoch)
    result.seconds.append(time.perf_counter() - start)
    result.epochs_run = epoch
    result.losses.append(loss)
    line = f"{name} epoch {epoch}: loss {loss:.4f}"
    if validate and epoch % config.eval_every == 0:
        trainer.net.eval()
        with torch.no_grad():  # on rank 0 alone in a data-parallel run
            score = from_rank_zero(trainer.validation_score)
        result.scores[epoch] = score
        line += f", validation {score:.4f}"
        if score > result.best_score:
            result.best_score, result.best_epoch, state.waited = score, epoch, 0
            state.best_state = copy.deepcopy(trainer.net.state_dict())
        else:
            state.waited += 1
    log.info(line)
