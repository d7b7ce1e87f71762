"""Pseudo labels, the hand-off from the LLM stages to the rankers (``DESIGN.md``).

Writing (:func:`labels_from_rankings`): each user's final ranking, a list of rows with
``item``, ``score`` (0–5) and ``source``, becomes

- **edges**: every row with ``score >= min_score`` (2), weight ``score / 5``; a row a
  fallback produced (``source`` ending in ``_fallback``) weighs ``fallback_weight``;
- **triplets**, at most ``triplets_per_user`` (3) per user, the higher-scored item as
  ``pos``: first adjacent rows with different scores, weight ``gap / 5``; then
  head-vs-tail pairs (first vs last, second vs second-to-last, …) with different
  scores, weight ``gap / 5``; and only when every score ties, head-vs-tail pairs by
  position, weight ``tie_weight``. A triplet with a fallback row weighs at most
  ``fallback_weight`` and takes that row's ``source``; else the ``pos`` row's.

Reading (:func:`read_labels`):

``edges.parquet``: ``user``, ``item`` (Dataset ids, int64), ``weight`` (float), ``source``
(string: the stage or fallback that wrote the row). ``triplets.parquet``: ``user``,
``pos``, ``neg``, ``weight``, ``source``. Rows are kept only when the user and every
item are ids of the Dataset and the user has at least ``min_history`` (2) history
interactions, as in the thesis; everything dropped is counted by reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from coldrec._util.io import atomic_write, require_file
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.errors import DataError

__all__ = [
    "EDGE_COLUMNS",
    "TRIPLET_COLUMNS",
    "LabelFiles",
    "LabelRules",
    "Labels",
    "cap_edges",
    "labels_from_rankings",
    "read_labels",
    "write_labels",
]

log = logging.getLogger(__name__)

EDGE_COLUMNS = ("user", "item", "weight", "source")
TRIPLET_COLUMNS = ("user", "pos", "neg", "weight", "source")


class LabelRules(BaseModel):
    """How final rankings become edges and triplets (module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: int = Field(2, ge=0, le=5)
    fallback_weight: float = Field(0.2, ge=0)
    triplets_per_user: int = Field(3, ge=0)
    tie_weight: float = Field(0.1, ge=0)


class Ranked(Protocol):
    """A row of a final ranking (:class:`coldrec.supervision.stages.Pick`)."""

    item: int
    score: int
    source: str


def _is_fallback(row: Ranked) -> bool:
    return row.source.endswith("_fallback")


def edges_of(ranking: Sequence[Ranked], rules: LabelRules) -> list[tuple[int, float, str]]:
    """``(item, weight, source)`` of the rows that become edges."""
    return [
        (row.item, rules.fallback_weight if _is_fallback(row) else row.score / 5, row.source)
        for row in ranking
        if row.score >= rules.min_score
    ]


def triplets_of(ranking: Sequence[Ranked], rules: LabelRules) -> list[tuple[int, int, float, str]]:
    """``(pos, neg, weight, source)``: at most ``triplets_per_user`` (module doc)."""
    n = len(ranking)
    adjacent = [(i, i + 1) for i in range(n - 1)]
    head_tail = [(i, n - 1 - i) for i in range(n // 2)]
    pairs = [
        p for p in dict.fromkeys(adjacent + head_tail) if ranking[p[0]].score != ranking[p[1]].score
    ]
    tied = n > 1 and len({row.score for row in ranking}) == 1
    out = []
    for i, j in head_tail if tied else pairs:
        high, low = sorted((ranking[i], ranking[j]), key=lambda row: -row.score)
        weight = rules.tie_weight if tied else (high.score - low.score) / 5
        fallback = next((r.source for r in (high, low) if _is_fallback(r)), None)
        if fallback is not None:
            weight = min(weight, rules.fallback_weight)
        source = fallback or high.source
        out.append((high.item, low.item, weight, source))
    return out[: rules.triplets_per_user]


def labels_from_rankings(
    rankings: Mapping[int, Sequence[Ranked]], rules: LabelRules | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(edges, triplets)`` frames in the columns of :data:`EDGE_COLUMNS` and
    :data:`TRIPLET_COLUMNS`, users in the order given."""
    rules = rules or LabelRules()
    edges = [(u, *e) for u, ranking in rankings.items() for e in edges_of(ranking, rules)]
    triplets = [(u, *t) for u, ranking in rankings.items() for t in triplets_of(ranking, rules)]
    return _frame(edges, EDGE_COLUMNS), _frame(triplets, TRIPLET_COLUMNS)


def _frame(rows: list[tuple], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    ids = {c: "int64" for c in columns[:-2]}
    return frame.astype({**ids, "weight": "float64", "source": "string"})


def write_labels(folder: Path, edges: pd.DataFrame, triplets: pd.DataFrame) -> None:
    """Write ``edges.parquet`` and ``triplets.parquet`` into ``folder`` atomically."""
    for name, frame in (("edges", edges), ("triplets", triplets)):
        with atomic_write(folder / f"{name}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)


@dataclass
class Labels:
    """Filtered pseudo edges and triplets, and what was dropped (reason → rows)."""

    edges: pd.DataFrame
    triplets: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def items(self) -> np.ndarray:
        """Every item id the labels mention."""
        return np.unique(self._mentions())

    def item_rows(self, n_items: int) -> np.ndarray:
        """Per item id, the label rows naming it (an edge, each side of a triplet)."""
        return np.bincount(self._mentions(), minlength=n_items)

    def _mentions(self) -> np.ndarray:
        ids = [self.edges["item"], self.triplets["pos"], self.triplets["neg"]]
        return np.concatenate([c.to_numpy(np.int64) for c in ids])


@dataclass(frozen=True)
class LabelFiles:
    """Where a ranker's pseudo labels are: ``edges.parquet`` (``L_sim``) and
    ``triplets.parquet`` (``L_pair``); either may be absent. ``validation``: the labels
    made from the validation view's history only, which a ranker trained on that view
    reads instead (none: it reads these, whose prompts saw what the view holds out).
    ``edge_cap`` keeps at most that many edges per item when they are read (the
    highest-weighted)."""

    edges: Path | None = None
    triplets: Path | None = None
    validation: LabelFiles | None = None
    edge_cap: int | None = None

    @classmethod
    def of_run(
        cls, folder: Path, edges: bool = True, triplets: bool = True, validation: bool = False
    ) -> LabelFiles:
        """The label files of a ``coldrec supervise`` run folder (with ``validation``,
        its ``valid/`` labels for the validation view too)."""
        view = cls.of_run(folder / "valid", edges, triplets) if validation else None
        return cls(folder / "edges.parquet" if edges else None,
                   folder / "triplets.parquet" if triplets else None, view)  # fmt: skip

    def capped(self, cap: int | None) -> LabelFiles:
        """The same files read with at most ``cap`` edges per item."""
        view = self.validation.capped(cap) if self.validation is not None else None
        return replace(self, edge_cap=cap, validation=view)

    def paths(self) -> dict[str, Path]:
        """The files, by name (``valid_edges`` … for the validation view's)."""
        mine = {name: path for name, path in (("edges", self.edges),
                                              ("triplets", self.triplets)) if path}  # fmt: skip
        view = self.validation.paths() if self.validation is not None else {}
        return {**mine, **{f"valid_{name}": path for name, path in view.items()}}

    def read(self, dataset: Dataset) -> Labels:
        """The labels filtered against ``dataset`` (:func:`read_labels`), edges capped;
        the validation view's own labels when ``dataset`` is that view and they exist."""
        if dataset.is_validation_view and self.validation is not None:
            return self.validation.read(dataset)
        labels = read_labels(dataset, self.edges, self.triplets)
        if self.edge_cap is not None:
            kept = cap_edges(labels.edges, self.edge_cap)
            labels.dropped["edges_over_item_cap"] = len(labels.edges) - len(kept)
            labels.edges = kept
        return labels

    def __bool__(self) -> bool:
        return self.edges is not None or self.triplets is not None


def cap_edges(edges: pd.DataFrame, cap: int) -> pd.DataFrame:
    """At most ``cap`` edges per item: its highest-weighted (ties to the lower user id),
    in their original order."""
    order = edges.sort_values(["item", "weight", "user"], ascending=[True, False, True],
                              kind="stable")  # fmt: skip
    keep = order.groupby("item", sort=False).cumcount() < cap
    return edges.loc[np.sort(order.index[keep.to_numpy()])].reset_index(drop=True)


def read_labels(
    dataset: Dataset,
    edges: Path | None = None,
    triplets: Path | None = None,
    min_history: int = 2,
) -> Labels:
    """Read and filter the label files (either may be absent)."""
    counts = np.bincount(
        dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS), "user_idx"],
        minlength=dataset.n_users,
    )
    dropped: dict[str, int] = {}
    kept = [
        _filtered(path, columns, item_columns, dataset, counts, min_history, dropped)
        for path, columns, item_columns in (
            (edges, EDGE_COLUMNS, ("item",)),
            (triplets, TRIPLET_COLUMNS, ("pos", "neg")),
        )
    ]
    if any(dropped.values()):
        log.info("labels dropped: %s", dropped)
    return Labels(edges=kept[0], triplets=kept[1], dropped=dropped)


def _filtered(
    path: Path | None,
    columns: tuple[str, ...],
    item_columns: tuple[str, ...],
    dataset: Dataset,
    history_counts: np.ndarray,
    min_history: int,
    dropped: dict[str, int],
) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in columns[:-2]}).assign(
            weight=pd.Series(dtype="float64"), source=pd.Series(dtype="string")
        )
    frame = pd.read_parquet(require_file(path, "label"))
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    frame = frame[list(columns)]
    name = Path(path).stem
    user = frame["user"].to_numpy()
    known_user = (user >= 0) & (user < dataset.n_users)
    known_items = np.ones(len(frame), dtype=bool)
    for column in item_columns:
        ids = frame[column].to_numpy()
        known_items &= (ids >= 0) & (ids < dataset.n_items)
    enough = known_user & (history_counts[np.where(known_user, user, 0)] >= min_history)
    dropped[f"{name}_unknown_user"] = int((~known_user).sum())
    dropped[f"{name}_unknown_item"] = int((known_user & ~known_items).sum())
    dropped[f"{name}_short_history"] = int((known_user & known_items & ~enough).sum())
    keep = known_user & known_items & enough
    return frame.loc[keep].reset_index(drop=True)
