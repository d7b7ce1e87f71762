"""The one interface every model implements, and helpers for implementing it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from coldrec.data.dataset import Dataset

__all__ = ["Recommender", "history_splits", "scores_at"]


@runtime_checkable
class Recommender(Protocol):
    """A model: ``fit`` on a Dataset, then ``score`` users against items.

    - ``fit(dataset)`` learns from the interactions before test (``train`` and, when the
      Dataset has one, ``valid``: see :func:`history_splits`) and returns the model.
    - ``score(users, items=None)`` takes user ids (1-D int array). Without ``items`` it
      returns a ``len(users) × n_items`` float32 matrix over the whole catalogue; with
      ``items`` (a ``len(users) × M`` matrix of item ids, one candidate row per user)
      it returns ``len(users) × M`` scores in the same order. Higher is better; ``NaN``
      means the model cannot score that item (it is ranked as not recommendable).
    """

    def fit(self, dataset: Dataset) -> Self:
        """Learn from ``dataset`` and return ``self``."""
        ...

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores of ``users`` for the catalogue, or for a candidate matrix ``items``."""
        ...


def history_splits() -> tuple[str, ...]:
    """The splits a model learns from and the protocol masks: everything before test."""
    return ("train", "valid")


def scores_at(full: np.ndarray, items: np.ndarray | None) -> np.ndarray:
    """Pick candidate columns from full-catalogue scores; a ``-1`` padding slot gets NaN."""
    if items is None:
        return full
    picked = np.take_along_axis(full, np.maximum(items, 0), axis=1).astype(np.float32)
    picked[items < 0] = np.nan
    return picked
