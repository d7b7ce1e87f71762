"""The model protocols: :class:`Recommender` (every model) and :class:`Trainable` (every
model trained by the epoch loop), and :class:`TrainedModel`, the base that gives the
trained models their shared behaviour: the epoch count chosen on validation, the
validation model kept for later choices, seeded training, save and load.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import torch

from coldrec.data.dataset import Dataset
from coldrec.data.prepare import validation_view
from coldrec.errors import ConfigError
from coldrec.training.checkpoint import checkpoint_for
from coldrec.training.distributed import rank, world_size
from coldrec.training.loop import (
    EpochLog,
    EpochTrainer,
    TrainedConfig,
    TrainingLog,
    run_epochs,
)
from coldrec.training.saving import Saved, read_saved, write_saved

__all__ = ["Recommender", "Trainable", "TrainedModel"]


@runtime_checkable
class Recommender(Protocol):
    """A model: ``fit`` on a Dataset, then ``score`` users against items.

    - ``fit(dataset)`` learns from the interactions before test
      (:data:`~coldrec.data.dataset.HISTORY_SPLITS`: ``train`` and, when the Dataset has
      one, ``valid``) and returns the model.
    - ``score(users, items=None)``: as :class:`~coldrec.eval.protocol.Scorer`: a
      ``len(users) × n_items`` float32 matrix, or ``len(users) × M`` scores of a
      candidate matrix ``items``; higher is better, ``NaN`` = cannot score.
    """

    def fit(self, dataset: Dataset) -> Self:
        """Learn from ``dataset`` and return ``self``."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores of ``users`` for the catalogue, or for a candidate matrix ``items``."""
        ...


@runtime_checkable
class Trainable(Protocol):
    """A model trained by the epoch loop (:func:`~coldrec.training.loop.run_epochs`).

    - ``fit(dataset, valid=None, generator=None)``: with ``early_stopping`` the epoch
      count is chosen on ``valid`` (default: the validation view of ``dataset``,
      :func:`~coldrec.data.prepare.validation_view`), then the model is trained on all of
      ``dataset``'s history for that many epochs. Every random draw (initialisation,
      dropout, batches, negatives) comes from ``generator``; without one, from a
      generator seeded by torch's global generator (seed it with
      :func:`~coldrec.training.runs.seed_everything`).
    - ``training_log``: the :class:`~coldrec.training.loop.TrainingLog`.
    - ``save(folder)``: safetensors weights + ``model.json`` (config, item and user id
      order, data hash, coldrec version, training log), written atomically.
    - ``load(folder, dataset=None)``: the saved model; it scores exactly (bitwise) as
      the model that was saved. With ``dataset``, a Dataset with other items or users
      is refused.
    """

    training_log: TrainingLog

    def fit(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        generator: torch.Generator | None = None,
    ) -> Self:
        """Train on ``dataset`` (epochs chosen on ``valid``) and return ``self``."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`Recommender.score`."""
        ...

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder`` (replaced atomically) and return it."""
        ...

    @classmethod
    def load(cls, folder: Path, dataset: Dataset | None = None) -> Self:
        """The model saved in ``folder``, checked against ``dataset`` when given."""
        ...


class TrainedModel(ABC):
    """The shared part of every :class:`Trainable` model.

    A subclass supplies :meth:`_start` (fresh network, optimiser and batches for one
    Dataset, as an :class:`~coldrec.training.loop.EpochTrainer`), :meth:`_finish`
    (after training: export vectors, transfer residuals), and :meth:`_tensors` and
    :meth:`_restore` (its trained state as named tensors).
    """

    def __init__(self, config: TrainedConfig) -> None:
        self.config = config
        self.training_log = TrainingLog()
        self.validation_model: Self | None = None
        """A copy of the model trained on the validation view (with early stopping), for
        choices made there later (fusion weights, validation candidates)."""
        self.item_ids: list[str] = []
        self.user_ids: list[str] = []
        self.data_hash: str | None = None
        self.folder: Path | None = None
        """Where the model was saved or loaded from."""
        self._generator: torch.Generator | None = None
        self._validated: Dataset | None = None

    @property
    def name(self) -> str:
        """The model's name in logs and progress bars: its ``kind``."""
        return str(getattr(self.config, "kind", type(self).__name__))

    def fit(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        generator: torch.Generator | None = None,
    ) -> Self:
        """Choose the epoch count on ``valid`` (unless :meth:`validate` just did, for this
        ``dataset``), then train on all of ``dataset``'s history (see :class:`Trainable`)."""
        self._use(generator)
        epochs = self.config.training.epochs
        if self.config.early_stopping:
            if self._validated is not dataset:
                self.validate(dataset, valid)
            assert self.training_log.validation is not None
            epochs = max(1, self.training_log.validation.best_epoch)
        self._validated = None
        self.training_log.final = self._train(dataset, epochs, validate=False)
        self.item_ids = dataset.items["item"].tolist()
        self.user_ids = dataset.users["user"].tolist()
        self.data_hash = dataset.data_hash()
        return self

    def validate(
        self,
        dataset: Dataset,
        valid: Dataset | None = None,
        generator: torch.Generator | None = None,
    ) -> Self:
        """Train on the validation view only (``valid``, default the view of
        ``dataset``), with early stopping, keeping the best model as
        :attr:`validation_model`; a following :meth:`fit` on the same ``dataset`` reuses
        this training. It lets settings be compared on validation before one final fit."""
        if not self.config.early_stopping:
            raise ConfigError("validate chooses the epochs on validation: set early_stopping")
        self._use(generator)
        view = valid if valid is not None else validation_view(dataset, self.config.valid_share)
        log = self._train(view, self.config.training.epochs, validate=True)
        self.training_log = TrainingLog(validation=log)
        self.validation_model = self._copy()
        self._validated = dataset
        return self

    def _use(self, generator: torch.Generator | None) -> None:
        if generator is not None:
            self._generator = generator
        elif self._generator is None:
            seed = int(torch.randint(2**62, (1,)).item())
            self._generator = torch.Generator().manual_seed(seed)

    def _train(self, dataset: Dataset, epochs: int, validate: bool) -> EpochLog:
        """One training of a fresh network on ``dataset``, seeded from the model's
        generator; torch's global generator is neither read nor changed. Torch's
        deterministic kernels are used (threaded gradient sums otherwise vary in the last
        bits), so a seed gives the same model on one machine and thread count."""
        assert self._generator is not None
        seed = int(torch.randint(2**62, (1,), generator=self._generator).item())
        options = self.config.training.model_copy(update={"epochs": epochs})
        name = self.name + (" (validation)" if validate else "")
        with torch.random.fork_rng(devices=[]), _deterministic():
            torch.manual_seed(seed)
            trainer = self._start(dataset, torch.Generator().manual_seed(seed))
            if world_size() > 1:  # data-parallel: each process its own dropout masks
                torch.manual_seed(seed + rank())
            fingerprint = {"model": self.config.model_dump(mode="json"), "name": name,
                           "data": dataset.data_hash(), "seed": seed, "epochs": epochs}  # fmt: skip
            result = run_epochs(trainer, options, validate, name, checkpoint_for(fingerprint))
        self._finish(dataset)
        return result

    def _copy(self) -> Self:
        """A copy of the trained state (without its own validation model and generator)."""
        kept = self.validation_model, self._generator, self._validated
        self.validation_model, self._generator, self._validated = None, None, None
        try:
            return copy.deepcopy(self)
        finally:
            self.validation_model, self._generator, self._validated = kept

    @abstractmethod
    def _start(self, dataset: Dataset, generator: torch.Generator) -> EpochTrainer:
        """Build a fresh network for ``dataset`` (kept in the model) and return what
        trains it."""

    def _finish(self, dataset: Dataset) -> None:  # noqa: B027 (an optional hook)
        """After training (best weights restored): export, transfer, …"""

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """The trained state as named tensors (weights and what scoring reads)."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor], saved: Saved) -> None:
        """Rebuild the trained state from :meth:`_tensors`' output."""

    def _extra(self) -> dict[str, Any]:
        """What the sidecar records beside the standard fields (e.g. a transfer summary)."""
        return {}

    def _write_files(self, folder: Path) -> None:  # noqa: B027 (an optional hook)
        """Write files of the saved model beside its weights (e.g. exported vectors)."""

    def save(self, folder: Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``model.json`` into ``folder`` (see
        :class:`Trainable`); ``folder`` is replaced atomically. ``extra``: more fields
        for the sidecar (a fused ranker records its fusion there)."""
        if self.training_log.final is None:
            raise ConfigError(f"fit the {self.name} model before saving it")
        fields = {**self._extra(), **(extra or {})}
        self.folder = write_saved(folder, self, self._tensors(), fields)
        return self.folder

    @classmethod
    def load(cls, folder: Path, dataset: Dataset | None = None) -> Self:
        """The model saved in ``folder`` by :meth:`save`; with ``dataset``, refused
        unless it has the items and users the model was trained on."""
        saved, tensors = read_saved(Path(folder), cls, dataset)
        model = cls(saved.config)
        model.training_log = saved.training_log
        model.item_ids, model.user_ids = saved.item_ids, saved.user_ids
        model.data_hash, model.folder = saved.data_hash, Path(folder)
        model._restore(tensors, saved)
        return model


@contextmanager
def _deterministic() -> Iterator[None]:
    """Torch's deterministic algorithms inside the block, the caller's setting after it."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
