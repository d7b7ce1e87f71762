"""How good pseudo labels are before anything trains on them.

:func:`label_quality` compares a label set's edges with what its users really did next:
the Dataset's held-out interactions (its ``test`` split; for a validation view, the
validation interactions), the distinct items not already in each user's history, as the
evaluation protocol counts targets. Beside it, the same figures for a **random control**:
for each labelled user as many items drawn uniformly from the items outside their
history. Labels that do no better than the control carry no signal about the users'
taste, whatever they cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from coldrec.data.dataset import HISTORY_SPLITS, Dataset

__all__ = ["label_quality", "quality_line"]


def label_quality(edges: pd.DataFrame, dataset: Dataset, seed: int = 0) -> dict[str, Any]:
    """Precision (share of edges that are a held-out interaction of their user) and
    recall (share of the labelled users' held-out interactions that are edges) of
    ``edges`` (``user``, ``item``), and of a random control with the same number of
    edges per user (drawn with ``seed``)."""
    inter = dataset.interactions
    before = inter["split"].isin(HISTORY_SPLITS).to_numpy()
    keys = inter["user_idx"].to_numpy(np.int64) * dataset.n_items + inter["item_idx"].to_numpy()
    history = np.unique(keys[before])
    held_out = np.setdiff1d(np.unique(keys[~before]), history)
    labelled = np.unique(edges["user"].to_numpy(np.int64))
    held_out = held_out[np.isin(held_out // dataset.n_items, labelled)]
    pairs = np.unique(edges["user"].to_numpy(np.int64) * dataset.n_items + edges["item"])
    control = _random_pairs(edges, history, dataset.n_items, seed)
    return {
        "edges": len(pairs),
        "users": len(labelled),
        "held_out_pairs": len(held_out),
        **_precision_recall(pairs, held_out, ""),
        **_precision_recall(control, held_out, "random_"),
    }


def _precision_recall(pairs: np.ndarray, held_out: np.ndarray, prefix: str) -> dict[str, Any]:
    hits = int(np.isin(pairs, held_out).sum())
    return {
        f"{prefix}hits": hits,
        f"{prefix}precision": hits / len(pairs) if len(pairs) else None,
        f"{prefix}recall": hits / len(held_out) if len(held_out) else None,
    }


def _random_pairs(edges: pd.DataFrame, history: np.ndarray, n_items: int, seed: int) -> np.ndarray:
    """Per labelled user, as many distinct items outside their history as they have
    distinct edges, drawn uniformly (keys ``user·n_items + item``)."""
    rng = np.random.default_rng(seed)
    per_user = edges.drop_duplicates(["user", "item"]).groupby("user").size()
    drawn = []
    for user, count in zip(per_user.index.to_numpy(np.int64), per_user.to_numpy(), strict=True):
        low, high = np.searchsorted(history, [user * n_items, (user + 1) * n_items])
        seen = history[low:high] % n_items  # history keys are sorted
        free = np.setdiff1d(np.arange(n_items), seen)
        picked = rng.choice(free, min(int(count), len(free)), replace=False)
        drawn.append(user * n_items + picked)
    return np.concatenate(drawn) if drawn else np.zeros(0, dtype=np.int64)


def quality_line(quality: dict[str, Any]) -> str:
    """One line for people: precision and recall beside the random control's."""

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.2%}"

    return (
        f"edges against held-out interactions: precision {share(quality['precision'])} "
        f"(random {share(quality['random_precision'])}), recall {share(quality['recall'])} "
        f"(random {share(quality['random_recall'])}), {quality['held_out_pairs']:,} held-out "
        f"pairs of {quality['users']:,} labelled users"
    )
