"""Top-K metrics over whole users × K matrices.

Every metric takes ``hits``, a boolean ``users × K`` matrix whose entry ``[u, r]`` says
whether the item ranked ``r`` (0-based) for user ``u`` is one of the user's targets, and
``n_targets``, the number of distinct targets per user (at least 1). Each returns one
value per user; report the mean over users. With ``h_u@k`` the hits of user ``u`` in
the first ``k`` ranks and ``T_u`` the target count:

=============  ==============================================================
recall@k       ``h_u@k / T_u``
precision@k    ``h_u@k / k``
hit_rate@k     ``1`` if ``h_u@k > 0`` else ``0``
mrr@k          ``1 / (r + 1)`` for the first hit rank ``r < k``, else ``0``
ndcg@k         ``Σ_{r<k} hit[u, r] / log2(r + 2)``  divided by the ideal
               ``Σ_{r < min(T_u, k)} 1 / log2(r + 2)`` (binary gains)
=============  ==============================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "METRICS",
    "coverage",
    "hit_rate",
    "mean_metrics",
    "mrr",
    "ndcg",
    "precision",
    "recall",
]


def recall(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Share of each user's targets in the top ``k``."""
    return hits[:, :k].sum(axis=1) / n_targets


def precision(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Share of the top ``k`` that are targets."""
    return hits[:, :k].sum(axis=1) / k


def hit_rate(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """1 where at least one target is in the top ``k``."""
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def mrr(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first target in the top ``k`` (0 when none)."""
    top = hits[:, :k]
    first = top.argmax(axis=1)
    return np.where(top.any(axis=1), 1.0 / (first + 1), 0.0)


def ndcg(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    """DCG of the top ``k`` with binary gains over the ideal DCG of ``min(T_u, k)`` hits."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits[:, :k] @ discounts[: hits[:, :k].shape[1]]
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[np.minimum(n_targets, k)]
    return dcg / ideal


Metric = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
METRICS: dict[str, Metric] = {
    "recall": recall,
    "ndcg": ndcg,
    "mrr": mrr,
    "hit_rate": hit_rate,
    "precision": precision,
}


def mean_metrics(
    hits: np.ndarray,
    n_targets: np.ndarray,
    ks: Sequence[int],
    names: Sequence[str] = tuple(METRICS),
) -> dict[str, float]:
    """``{"recall@5": …, "ndcg@5": …, …}``: each metric averaged over users, for each k."""
    if len(n_targets) == 0:
        return {f"{name}@{k}": float("nan") for k in ks for name in names}
    return {
        f"{name}@{k}": float(METRICS[name](hits, n_targets, k).mean()) for k in ks for name in names
    }


def coverage(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top ``k``."""
    shown = ranked[:, :k]
    return float(np.unique(shown[shown >= 0]).size / n_items)
