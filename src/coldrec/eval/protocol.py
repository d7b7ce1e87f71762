"""Evaluation protocols: full ranking over the catalogue, or re-ranking of candidates.

Who is evaluated, and against what (thesis §5.1):

- a **history** is a user's interactions before test (``train`` and ``valid``); its
  items are masked, so they are never recommended and never count as hits;
- **targets** are the user's distinct test items that are not in the history (a repeat
  of a history item can never be ranked under the mask; such targets are counted as
  ``targets_in_history``);
- segment ``all``: users with a history and at least one target; ``warm`` and ``cold``:
  the same users with only their warm (resp. cold) targets, users left with none are
  left out of that segment; ``cold_users``: users with targets but no history. A model
  knows nothing about them, so by default they get the documented fallback
  (:mod:`coldrec.eval.fallback`: the items most popular in the last 30 days of the
  history), over the whole catalogue (``cold_users="model"``: the model scores them
  all the same, over their candidates if any). Every segment records its users and
  targets.

Ranks are deterministic: ties go to the lower item id in full ranking and to the earlier
candidate in candidate re-ranking. ``NaN``, ``-inf`` and masked scores are never ranked;
a top-K list with fewer rankable items has ``-1`` in its empty slots.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from coldrec._util.sparse import entry_rows, hit_matrix, item_lists, keep_items, list_lengths
from coldrec.data.candidates import Candidates
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.errors import ConfigError
from coldrec.eval.fallback import COLD_USER_FALLBACK, RecentPopularity
from coldrec.eval.metrics import coverage, mean_metrics

__all__ = [
    "CANDIDATE_MS",
    "KS",
    "SEGMENTS",
    "ColdUsers",
    "EvaluationPlan",
    "Scorer",
    "Selection",
    "evaluate",
    "rank",
    "ranked_candidates",
    "selection_score",
    "top_k",
]

KS = (5, 10, 20)
CANDIDATE_MS = (50, 100, 200, 500, 1000, 2000)
SEGMENTS = ("all", "warm", "cold", "cold_users")


@runtime_checkable
class Scorer(Protocol):
    """What the protocol evaluates: anything that scores users against items.

    ``score(users, items=None)`` takes user ids (1-D int array). Without ``items`` it
    returns a ``len(users) × n_items`` float32 matrix over the whole catalogue; with
    ``items`` (a ``len(users) × M`` matrix of item ids, one candidate row per user, ``-1``
    for padding) it returns ``len(users) × M`` scores in the same order. Higher is
    better; ``NaN`` means the scorer cannot score that item (it is never ranked). A
    fitted :class:`~coldrec.training.model.Recommender` is a scorer.
    """

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Scores of ``users`` for the catalogue, or for a candidate matrix ``items``."""
        ...


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores per row, best first, ties to the lower
    index; ``-1`` where fewer than ``k`` scores are finite."""
    n_cols = scores.shape[1]
    k = min(k, n_cols)
    clean = np.where(np.isnan(scores), -np.inf, scores)
    chosen = np.argpartition(-clean, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(clean, chosen, axis=1).min(axis=1)
    # Where a score equal to the k-th lies outside the chosen set, argpartition picked
    # among equals arbitrarily: redo those rows over the (small) set of ties and above.
    for row in np.flatnonzero((clean >= kth[:, None]).sum(axis=1) > k):
        above = np.flatnonzero(clean[row] >= kth[row])
        chosen[row] = above[np.lexsort((above, -clean[row, above]))[:k]]
    values = np.take_along_axis(clean, chosen, axis=1)
    order = np.lexsort((chosen, -values), axis=1)
    ranked = np.take_along_axis(chosen, order, axis=1)
    return np.where(np.take_along_axis(values, order, axis=1) > -np.inf, ranked, -1)


def rank(
    model: Scorer,
    users: np.ndarray,
    history: sparse.csr_array,
    k: int,
    candidates: np.ndarray | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """Top-``k`` item ids per user (rows follow ``users``), history items masked.

    Full ranking scores the whole catalogue; with ``candidates`` (``len(users) × M``
    item ids, ``-1`` for padding) only those are scored and a target outside them can
    never be hit.
    """
    ranked = []
    for start in range(0, len(users), batch_size):
        rows = np.arange(start, min(start + batch_size, len(users)))
        block = candidates[rows] if candidates is not None else None
        scores = np.array(model.score(users[rows], block), dtype=np.float32)
        seen = history[rows]
        if block is None:
            scores[entry_rows(seen), seen.indices] = -np.inf
            ranked.append(top_k(scores, k))
        else:
            scores[(block < 0) | hit_matrix(block, seen)] = -np.inf
            columns = top_k(scores, k)
            items = np.take_along_axis(block, np.maximum(columns, 0), axis=1)
            ranked.append(np.where(columns >= 0, items, -1))
    return np.concatenate(ranked) if ranked else np.empty((0, k), dtype=np.int64)


ColdUsers = Literal["popularity", "model"]
"""Who ranks for users without history: the fallback (recent popularity) or the model."""


def evaluate(
    model: Scorer,
    dataset: Dataset,
    ks: Sequence[int] = KS,
    candidates: Candidates | None = None,
    candidate_ms: Sequence[int] = CANDIDATE_MS,
    batch_size: int = 1024,
    cold_users: ColdUsers = "popularity",
) -> dict[str, Any]:
    """Metrics of a fitted model on the test split, per segment (see the module doc).

    ``candidates`` (retrieved items per user, in retrieval order) switches to candidate
    re-ranking: only they are scored, a user without candidates has none, and candidate
    ``recall@M`` (share of a user's targets among the first M candidates) and
    ``hit_rate@M`` (share of users with at least one) are added for each ``M`` in
    ``candidate_ms`` up to their width.

    ``cold_users`` says who ranks for users without history (module doc).

    Returns ``{"protocol", "segments": {name: {"recall@5": …}}, "counts": {name:
    {"users", "targets"}}, "excluded": {"users_without_history", "targets_in_history"},
    "cold_users", "warnings": [empty or thin segments]}``.
    """
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks must be one or more positive cut-offs, got {list(ks)}")
    plan = EvaluationPlan.of(dataset)
    block = None
    widths: list[int] = []
    if candidates is not None:
        candidates.check(dataset.n_items)
        block = candidates.for_users(plan.users)
        widths = sorted({m for m in candidate_ms if m <= candidates.width} | {candidates.width})
    ranked = _ranked(model, plan, dataset, max(ks), block, batch_size, cold_users)
    segments: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, rows, targets in plan.segments(dataset.items["cold"].to_numpy()):
        hits = hit_matrix(ranked[rows], targets)
        n_targets = list_lengths(targets)
        values = mean_metrics(hits, n_targets, ks)
        for k in ks:
            values[f"coverage@{k}"] = coverage(ranked[rows], dataset.n_items, k)
        if block is not None:  # the candidates, in retrieval order, as a ranking of their own
            retrieved = hit_matrix(block[rows], targets)
            found = mean_metrics(retrieved, n_targets, widths, ("recall", "hit_rate"))
            values |= {f"candidate_{key}": value for key, value in found.items()}
        segments[name] = values
        counts[name] = {"users": len(rows), "targets": int(n_targets.sum())}
    return {
        "protocol": "full" if candidates is None else "candidates",
        "segments": segments,
        "counts": counts,
        "excluded": plan.excluded,
        "cold_users": COLD_USER_FALLBACK if cold_users == "popularity" else "model",
        "warnings": segment_warnings(counts),
    }


def _ranked(
    model: Scorer,
    plan: EvaluationPlan,
    dataset: Dataset,
    k: int,
    block: np.ndarray | None,
    batch_size: int,
    cold_users: ColdUsers,
) -> np.ndarray:
    """The top ``k`` of every evaluated user: the model's, and for users without
    history the fallback's when ``cold_users`` asks for it."""
    if cold_users == "model":
        return rank(model, plan.users, plan.history, k, block, batch_size)
    known = slice(0, plan.n_with_history)
    rest = slice(plan.n_with_history, len(plan.users))
    fallback = RecentPopularity(dataset)
    parts = [
        rank(model, plan.users[known], plan.history[known], k,
             None if block is None else block[known], batch_size),
        rank(fallback, plan.users[rest], plan.history[rest], k, None, batch_size),
    ]  # fmt: skip
    width = max(part.shape[1] for part in parts)  # a short candidate list has fewer columns
    return np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=-1)
                           for p in parts])  # fmt: skip


MIN_SEGMENT_USERS = 50
"""A segment with fewer users gives figures too noisy to compare: warned about."""


def segment_warnings(counts: dict[str, dict[str, int]]) -> list[str]:
    """A warning for each empty or thin segment (fewer than :data:`MIN_SEGMENT_USERS`)."""
    return [
        f"segment {name} is empty: its metrics are null"
        if found["users"] == 0
        else f"segment {name} has only {found['users']} users ({found['targets']} targets): "
        "its figures are noise"
        for name, found in counts.items()
        if found["users"] < MIN_SEGMENT_USERS
    ]


@dataclass(frozen=True)
class EvaluationPlan:
    """Who is evaluated: ``users`` (those with a history first, ``n_with_history`` of
    them, then those without), with their history and targets in the same row order.
    Retrieval uses it too, so candidates are made for exactly the evaluated users."""

    users: np.ndarray
    n_with_history: int
    history: sparse.csr_array
    targets: sparse.csr_array
    excluded: dict[str, int]

    @classmethod
    def of(cls, dataset: Dataset) -> EvaluationPlan:
        inter = dataset.interactions
        before = inter["split"].isin(HISTORY_SPLITS).to_numpy()
        keys = inter["user_idx"].to_numpy(np.int64) * dataset.n_items + inter["item_idx"]
        history_keys = np.unique(keys[before])
        test_keys = np.unique(keys[~before])
        repeat = np.isin(test_keys, history_keys)
        target_keys = test_keys[~repeat]
        tested = np.unique(target_keys // dataset.n_items)
        only_repeats = np.setdiff1d(np.unique(test_keys // dataset.n_items), tested)
        has_history = np.isin(tested, history_keys // dataset.n_items)
        users = np.concatenate([tested[has_history], tested[~has_history]])
        history = _lists_of_keys(history_keys, dataset.n_items, dataset.n_users)
        targets = _lists_of_keys(target_keys, dataset.n_items, dataset.n_users)
        excluded = {
            "users_without_history": int((~has_history).sum()),
            "targets_in_history": int(repeat.sum()),
            "users_with_only_repeat_targets": len(only_repeats),
        }
        return cls(users, int(has_history.sum()), history[users], targets[users], excluded)

    def segments(self, cold_item: np.ndarray) -> Iterator[tuple[str, np.ndarray, sparse.csr_array]]:
        """``(name, rows of users, their targets)`` for each of :data:`SEGMENTS`."""
        rows = np.arange(self.n_with_history)
        all_targets = self.targets[rows]
        yield "all", rows, all_targets
        for name, mask in (("warm", ~cold_item), ("cold", cold_item)):
            part = keep_items(all_targets, mask)
            kept = np.flatnonzero(list_lengths(part) > 0)
            yield name, kept, part[kept]
        rest = np.arange(self.n_with_history, len(self.users))
        yield "cold_users", rest, self.targets[rest]


def _lists_of_keys(keys: np.ndarray, n_items: int, n_users: int) -> sparse.csr_array:
    return item_lists(keys // n_items, keys % n_items, n_users, n_items)


def selection_score(model: Scorer, view: Dataset, k: int = 20) -> float:
    """The default model-selection objective: the mean of warm and cold Recall@k on a
    validation view (a segment without users is left out of the mean). Selecting on
    ``all`` instead always favours the warm end of the warm/cold trade-off."""
    segments = evaluate(model, view, ks=(k,))["segments"]
    return Selection().score(segments["warm"][f"recall@{k}"], segments["cold"][f"recall@{k}"])


class Selection(BaseModel):
    """What a validation sweep (fusion, label weights) maximises, from the warm and cold
    Recall@20 of each point: their ``mean`` (the default, :func:`selection_score`), or
    ``warm`` subject to cold ≥ ``floor`` (``cold`` subject to warm ≥ ``floor``). A point
    that meets the floor beats every point that does not; among those that do not, the
    one nearest the floor wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    maximise: Literal["mean", "warm", "cold"] = "mean"
    floor: float = Field(0.0, ge=0)
    """The other segment's least Recall@20 (``warm`` and ``cold`` only)."""

    def score(self, warm: float, cold: float) -> float:
        """The figure maximised: the mean (a missing segment left out), or the segment."""
        if self.maximise == "mean":
            return float(np.nanmean([warm, cold]))
        return float(warm if self.maximise == "warm" else cold)

    def key(self, warm: float, cold: float) -> tuple[bool, float]:
        """Sort key of a point: meets the floor, then its score (or the other segment's
        Recall, below the floor)."""
        other = cold if self.maximise == "warm" else warm
        if self.maximise == "mean" or other >= self.floor:
            return True, _finite(self.score(warm, cold))
        return False, _finite(other)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -np.inf


def ranked_candidates(
    candidates: Candidates, scorer: Scorer, width: int, batch_size: int = 1024
) -> Candidates:
    """``candidates`` re-ordered by ``scorer``'s scores of them (best first, ties in the
    current order; padding and non-finite scores last, scored ``-inf``), cut to the first
    ``width``: a ranker's output in the candidates' own format."""
    width = min(width, candidates.width)
    n = len(candidates.users)
    items = np.full((n, width), -1, dtype=np.int64)
    scores = np.full((n, width), -np.inf, dtype=np.float32)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        mine = candidates.items[rows]
        got = np.asarray(scorer.score(candidates.users[rows], mine), dtype=np.float32)
        got = np.where(np.isfinite(got) & (mine >= 0), got, -np.inf)
        order = np.argsort(-got, axis=1, kind="stable")[:, :width]
        items[rows] = np.take_along_axis(mine, order, axis=1)
        scores[rows] = np.take_along_axis(got, order, axis=1)
    return Candidates(users=candidates.users.copy(), items=items, scores=scores)
