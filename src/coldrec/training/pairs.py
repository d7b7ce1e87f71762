"""The (user, item) pairs of a training history, for the models trained pair by pair (BPR
over a graph or a factorisation, the cold-start content models): distinct pairs in
shuffled batches, and uniform negatives that are never one of the user's own items."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from coldrec.data.dataset import HISTORY_SPLITS, Dataset

__all__ = ["HistoryPairs", "history_edges"]

_REDRAWS = 20
"""Rounds of redrawing negatives that hit a user's own item (a user owning most of the
pool is rare; what is left after these rounds stays as drawn)."""


def history_edges(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The user and item ids of every interaction before test (duplicates kept)."""
    history = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
    return history["user_idx"].to_numpy(np.int64), history["item_idx"].to_numpy(np.int64)


class HistoryPairs:
    """The distinct ``(user, item)`` pairs of ``users``/``items`` over a catalogue of
    ``n_items``; negatives come from :attr:`pool`, the items that have a pair."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_items: int) -> None:
        self.n_items = n_items
        self.pairs = torch.as_tensor(np.unique(users * n_items + items))
        """``user · n_items + item`` of each distinct pair, sorted."""
        self.linked = np.bincount(items, minlength=n_items) > 0
        """Per item: has a pair (a strict cold item has none)."""
        self.pool = torch.as_tensor(np.flatnonzero(self.linked))

    def __len__(self) -> int:
        return len(self.pairs)

    def batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch: every pair once, shuffled, as ``(users, items)`` batches; a last
        batch of one pair joins the one before (batch normalisation needs two rows)."""
        order = torch.randperm(len(self.pairs), generator=generator)
        batches = list(order.split(batch_size))
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches[-2:] = [torch.cat(batches[-2:])]
        for batch in batches:
            pairs = self.pairs[batch]
            yield pairs // self.n_items, pairs % self.n_items

    def uniform(self, users: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """``len(users) × k`` uniform draws from the pool, none one of the row's user's
        own items."""
        draw = self.pool[torch.randint(len(self.pool), (len(users), k), generator=generator)]
        return self.unowned(users, draw, generator)

    def unowned(
        self, users: torch.Tensor, draw: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``draw`` (``len(users) × k`` items) with each of the row's user's own items
        replaced by a uniform draw from the pool, redrawn until none is left."""
        users = users[:, None].expand_as(draw)
        for _ in range(_REDRAWS):
            owned = self.owns(users * self.n_items + draw)
            if not owned.any():
                break
            redraw = torch.randint(len(self.pool), (int(owned.sum()),), generator=generator)
            draw[owned] = self.pool[redraw]
        return draw

    def owns(self, codes: torch.Tensor) -> torch.Tensor:
        """Per ``user · n_items + item`` code: whether it is one of the pairs (a binary
        search of the sorted codes; ``torch.isin`` sorts both sides on every call)."""
        if not len(self.pairs):
            return torch.zeros_like(codes, dtype=torch.bool)
        at = torch.searchsorted(self.pairs, codes).clamp_max(len(self.pairs) - 1)
        return self.pairs[at] == codes

    def train_epoch(
        self,
        optimiser: torch.optim.Optimizer,
        batch_size: int,
        generator: torch.Generator,
        loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> float:
        """One epoch of ``optimiser`` steps on ``loss_of(users, positives)`` of each batch;
        the mean loss per pair."""
        total = 0.0
        for users, positives in self.batches(batch_size, generator):
            loss = loss_of(users, positives)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(users)
        return total / len(self)
