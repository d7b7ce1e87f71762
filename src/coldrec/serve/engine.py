"""What a server does, without HTTP: recommend, take new items and events, explain.

A recommendation follows one path, candidates → scores → filters → top k:

1. the user's history: a known user's (the run's history plus the events received), or
   the ``history`` a request gives (an anonymous user); none at all takes the fallback;
2. one query vector per user view (the Two-Tower user vector: its ID part for users seen
   in training, the content mean of its recent items for everyone; a second view, as
   STARS's, appends another) and, for each, the top-M allowed items from the index (the
   run's candidate depth; allowed: available, within the filters, not in the history);
   the lists are interleaved;
3. ranker scores (the run's sequential model over the history) and retriever scores,
   fused as the run fused them (mode, α and the evidence blend: items added online have
   no evidence, so they take the content path), best k first.

**Fallback** (a user with no history, or an unknown user id without one): the items
with the most interactions in the last ``recent_days`` of the history and since (events
count), within the filters. Never an error.

Writes (items, deletions, events) go to the durable :class:`WriteLog` first and are
applied from it, in order, here and in every other worker (:meth:`Engine.catch_up`).
"""

from __future__ import annotations

import itertools
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.data.prepare import item_text
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.encode.vectors import l2_normalised
from coldrec.errors import DataError
from coldrec.eval.fallback import COLD_USER_DAYS, recent_popularity
from coldrec.rank.fusion import fuse
from coldrec.rank.sequential import SequentialRecommender
from coldrec.retrieval.index import IndexConfig
from coldrec.serve.catalogue import Catalogue, Filters
from coldrec.serve.run import RunArtifacts
from coldrec.serve.store import WriteLog
from coldrec.supervision.labels import Labels

__all__ = ["BaseEngine", "Engine", "Recommendation", "ServeConfig"]


class ServeConfig(BaseModel):
    """How a run is served."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = None
    """Which seed's ranker of an experiment (default: the first)."""
    index: IndexConfig = Field(default_factory=IndexConfig)
    """``flat`` (exact) or ``hnsw`` for the retriever's index."""
    top_m: int | None = Field(None, gt=0)
    """Candidates per user view; default: the run's own depth (its ``retrieve.top_m``)."""
    initial_items: Literal["all", "trained"] = "all"
    """``trained``: start with the items seen in training only; the others (cold) come
    through ``POST /items``, as in a shop."""
    recent_days: float = Field(COLD_USER_DAYS, gt=0)
    """The fallback's window of popularity."""
    mode: Literal["next", "general", "round_robin"] | None = None
    """STARS runs: the user vector that ranks (``h_next``, ``h_gen`` or their
    round-robin lists); default the model's own ``scoring``. A request may name another."""


@dataclass(frozen=True)
class Recommendation:
    """A list for one request, with what made it."""

    items: list[dict[str, Any]]
    user: str | None
    known_user: bool
    history_length: int
    source: Literal["ranked", "popular"]
    candidates: int = 0
    fallback_reason: str | None = None


@dataclass
class _Users:
    """Users and their histories (rows: the run's users, then users met in events)."""

    ids: list[str]
    histories: list[list[int]]
    times: list[list[int]]
    """The time of each history item (Unix seconds, or the position for order-only data)."""
    trained: int
    """Users ``0..trained-1`` were in the run's training data (their ID vectors count)."""
    changed: set[int] = field(default_factory=set)
    """Users whose history grew while serving (their vectors are recomputed)."""
    row_of: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row_of = {user: row for row, user in enumerate(self.ids)}

    def row(self, user: str) -> int:
        """The user's row, a new one for a user met for the first time."""
        if user not in self.row_of:
            self.row_of[user] = len(self.ids)
            self.ids.append(user)
            self.histories.append([])
            self.times.append([])
        return self.row_of[user]


class BaseEngine(ABC):
    """What every served model shares (see the module doc): the catalogue and its index,
    users and their histories, the durable writes, filters, the popularity fallback and
    the lookups. A subclass gives the vectors (:meth:`_item_vectors`), the ranking of a
    user with a history (:meth:`_ranked`) and its part of explanations and health.
    Thread-safe: requests take a lock around what they read and write."""

    def __init__(
        self,
        dataset: Dataset,
        config: ServeConfig,
        log: WriteLog,
        encoder: TextEncoderConfig,
        vectors: tuple[np.ndarray, np.ndarray],
        top_m: int,
    ) -> None:
        """``vectors``: the index (retriever) and ranker vectors of the Dataset's items;
        ``top_m``: the candidate depth unless the config sets one."""
        self.dataset, self.config, self.log = dataset, config, log
        self.top_m = config.top_m or top_m
        self.encoder = TextEncoder(encoder)
        self.encoder.load()  # so that the first new item does not wait for the model
        history = dataset.interactions.loc[dataset.interactions["split"].isin(HISTORY_SPLITS)]
        counts = np.bincount(history["item_idx"], minlength=dataset.n_items)
        served = counts > 0 if config.initial_items == "trained" else np.ones(len(counts), bool)
        self.catalogue = Catalogue(
            _records(dataset.items),
            self.encoder.encode(dataset.item_text, progress=False),
            *vectors,
            cold=counts == 0,
            index=config.index,
            served=served,
        )
        self.trained_items = len(counts)
        by_user = history.groupby("user_idx", sort=False)
        items = dict(tuple(by_user["item_idx"]))
        times = dict(tuple(by_user["ts"]))
        empty = np.zeros(0, np.int64)
        self.users = _Users(dataset.users["user"].tolist(),
                            [items.get(u, empty).tolist() for u in range(dataset.n_users)],
                            [times.get(u, empty).tolist() for u in range(dataset.n_users)],
                            dataset.n_users)  # fmt: skip
        self.popularity = recent_popularity(dataset, config.recent_days).astype(float).tolist()
        self.applied = 0
        self._lock = threading.RLock()
        self.catch_up()

    # --- what a model gives -----------------------------------------------------------

    @abstractmethod
    def _item_vectors(
        self, records: list[dict[str, Any]], content: np.ndarray, rows: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index and ranker vectors of written items (``rows``: their catalogue rows, -1
        for new ones)."""

    @abstractmethod
    def _ranked(
        self, row: int | None, seen: list[int], allowed: np.ndarray, given: bool, k: int,
        at: int, mode: str | None,
    ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        """The top ``k`` entries of a user with a history and the number of candidates
        (``row``: the user's, None for an anonymous one; ``given``: the history came with
        the request; ``at``: the request time; ``mode``: the request's user vector)."""

    def _check_items(self, records: list[dict[str, Any]]) -> None:
        """Refuse items the model could not apply (before they enter the log); the fused
        engine can apply any item."""
        return None

    @abstractmethod
    def _explained(self, user: str, row: int) -> dict[str, Any]:
        """The model's part of an explanation of catalogue ``row`` for ``user``."""

    @abstractmethod
    def _described(self) -> dict[str, Any]:
        """The model's part of :meth:`health`."""

    # --- writes ---------------------------------------------------------------------

    def add_items(self, records: list[dict[str, Any]]) -> int:
        """Durably record new or changed items, then apply them; the log position."""
        self._check_items(records)
        seq = self.log.append("item", records)
        self.catch_up()
        return seq

    def delete_item(self, item: str) -> int:
        self._known_item(item)
        seq = self.log.append("delete", [{"item": item}])
        self.catch_up()
        return seq

    def add_events(self, events: list[dict[str, Any]]) -> int:
        for event in events:
            self._known_item(event["item"])
        seq = self.log.append("event", events)
        self.catch_up()
        return seq

    def catch_up(self) -> None:
        """Apply the writes of the log not applied yet (this worker's and others')."""
        with self._lock:
            pending = list(self.log.since(self.applied))
            for kind, group in _runs(pending):
                {"item": self._apply_items, "delete": self._apply_deletes,
                 "event": self._apply_events}[kind](group)  # fmt: skip
            if pending:
                self.applied = pending[-1][0]

    def _apply_items(self, records: list[dict[str, Any]]) -> None:
        texts = [item_text(r.get("title"), r.get("categories") or []) for r in records]
        content = self.encoder.encode(texts, progress=False)
        rows = [self.catalogue.row_of.get(r["item"], -1) for r in records]
        retriever, ranker = self._item_vectors(records, content, rows)
        self.catalogue.upsert(records, content, retriever, ranker)
        self.popularity.extend([0.0] * (len(self.catalogue) - len(self.popularity)))

    def _apply_deletes(self, bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            self.catalogue.remove(self.catalogue.row_of[body["item"]])

    def _apply_events(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            row = self.users.row(event["user"])
            item = self.catalogue.row_of[event["item"]]
            self.users.histories[row].append(item)
            self.users.times[row].append(int(event.get("ts") or 0))
            self.users.changed.add(row)
            self.popularity[item] += 1.0

    def _known_item(self, item: str) -> int:
        row = self.catalogue.row_of.get(item)
        if row is None:
            raise DataError(f"unknown item {item!r}")
        return row

    # --- reads ----------------------------------------------------------------------

    def recommend(
        self,
        user: str | None = None,
        history: list[str] | None = None,
        k: int = 20,
        filters: Filters | None = None,
        exclude_seen: bool = True,
        at: int | None = None,
        mode: str | None = None,
    ) -> Recommendation:
        """The top ``k`` for a user id or a given history (see the module doc); ``at``:
        the request time in Unix seconds (default now; STARS's context offset), ``mode``:
        STARS's user vector for this request."""
        filters = filters or Filters()
        self.catch_up()
        with self._lock:
            row = self.users.row_of.get(user) if user is not None else None
            seen = [self._known_item(i) for i in history] if history is not None else (
                self.users.histories[row] if row is not None else [])  # fmt: skip
            blocked = np.zeros(len(self.catalogue), dtype=bool)
            if exclude_seen:
                blocked[seen] = True
            allowed = self.catalogue.allowed(filters, blocked)
            if not seen:
                why = "unknown user" if user is not None and row is None else "no history"
                return self._popular(user, row is not None, allowed, k, why)
            when = int(time.time()) if at is None else at
            items, candidates = self._ranked(row, seen, allowed, history is not None, k,
                                             when, mode)  # fmt: skip
            return Recommendation(items, user, row is not None, len(seen), "ranked", candidates)

    def _popular(
        self, user: str | None, known: bool, allowed: np.ndarray, k: int, why: str
    ) -> Recommendation:
        scores = np.where(allowed, np.array(self.popularity), -np.inf)
        order = [j for j in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[j])]
        items = [self._entry(int(j), float(scores[j]), np.nan, np.nan, "popular") for j in order]
        return Recommendation(items, user, known, 0, "popular", 0, why)

    def _entry(
        self, row: int, score: float, ranker: float, retriever: float, source: str
    ) -> dict[str, Any]:
        """An item of a list: its record, score parts, whether it is cold or new, and the
        source that proposed it (``two_tower`` or ``stars``: the model's index;
        ``popular``)."""
        row = int(row)
        record = self.catalogue.records[row]
        return {
            "item": record["item"], "title": record.get("title"),
            "categories": record.get("categories") or [], "brand": record.get("brand"),
            "price": record.get("price"), "score": score,
            "ranker": None if np.isnan(ranker) else float(ranker),
            "retriever": None if np.isnan(retriever) else float(retriever),
            "cold": bool(self.catalogue.cold[row]), "new": row >= self.trained_items,
            "source": source,
        }  # fmt: skip

    def item(self, item: str) -> dict[str, Any]:
        """An item's record and state."""
        self.catch_up()
        row = self._known_item(item)
        record = self.catalogue.records[row]
        return {**record, "cold": bool(self.catalogue.cold[row]),
                "new": row >= self.trained_items, "served": self.catalogue.served[row],
                "popularity": float(self.popularity[row])}  # fmt: skip

    def user(self, user: str) -> dict[str, Any]:
        """A user's history (item ids, oldest first, and their titles) and whether the
        run trained them."""
        self.catch_up()
        row = self.users.row_of.get(user)
        if row is None:
            raise DataError(f"unknown user {user!r}")
        seen = self.users.histories[row]
        return {"user": user, "history": [self.catalogue.ids[i] for i in seen],
                "titles": [self.catalogue.records[i].get("title") for i in seen],
                "trained": row < self.users.trained}  # fmt: skip

    def explain(self, user: str, item: str) -> dict[str, Any]:
        """Why ``item`` is (or is not) in ``user``'s list: its rank among the candidates
        and its scores, its nearest warm items by content, and what the model adds
        (:meth:`_explained`)."""
        row = self._known_item(item)
        listing = self.recommend(user, k=self.top_m)
        ranked = [entry["item"] for entry in listing.items]
        content = self.catalogue.content.array
        warm = np.flatnonzero(~np.array(self.catalogue.cold))
        warm = warm[warm != row]
        nearest = warm[np.argsort(-(content[warm] @ content[row]), kind="stable")[:5]]
        return {
            "user": user, "item": item, "source": listing.source,
            "rank": ranked.index(item) + 1 if item in ranked else None, "of": len(ranked),
            "scores": next((e for e in listing.items if e["item"] == item), None),
            "nearest_warm_items": [{"item": self.catalogue.ids[j],
                                    "similarity": float(content[j] @ content[row])}
                                   for j in nearest],
            **self._explained(user, row),
        }  # fmt: skip

    def _lenders(self, ranker: SequentialRecommender, row: int) -> dict[str, Any] | None:
        """The warm items that lent a cold or new item its delta (runs with a transfer)."""
        lent = ranker.lenders(self.catalogue.content.array[row]) if self.catalogue.cold[
            row] else None  # fmt: skip
        for lender in lent["items"] if lent else []:
            lender["item"] = self.catalogue.ids[lender["item"]]
        return lent

    def health(self) -> dict[str, Any]:
        """Counts, the model's settings, and a few users with a history (for the page's
        picker)."""
        with_history = (u for u, h in zip(self.users.ids, self.users.histories, strict=True) if h)
        examples = list(itertools.islice(with_history, 20))
        return {"items": len(self.catalogue), "served": int(sum(self.catalogue.served)),
                "example_users": examples,
                "users": len(self.users.ids), "index_size": int(self.catalogue.index.ntotal),
                "applied_writes": self.applied, "top_m": self.top_m,
                **self._described()}  # fmt: skip


class Engine(BaseEngine):
    """A ``coldrec run`` being served: Two-Tower candidates, the fused sequential ranker
    (see the module doc)."""

    def __init__(self, run: RunArtifacts, config: ServeConfig, log: WriteLog) -> None:
        self.run = run
        self.evidence = run.ranker.evidence(run.blend.label_share)
        """The evidence behind each trained item's ranker vector (new items have none)."""
        self._labels: Labels | None = None
        super().__init__(run.dataset, config, log, run.retriever.config.encoder,
                         (run.retriever.item_vectors, run.ranker.item_table()),
                         run.top_m)  # fmt: skip

    def _item_vectors(
        self, records: list[dict[str, Any]], content: np.ndarray, rows: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        trained = np.array([0 <= row < self.trained_items and not self.catalogue.cold[row]
                            for row in rows])  # fmt: skip
        retriever = self.run.retriever.embed("items", content)
        if trained.any():  # a trained item keeps its ID part
            ids = np.array(rows)[trained]
            retriever[trained] = self.run.retriever.embed("items", content[trained], ids)
        ranker = self.run.ranker.new_item_vectors(content)
        for k, row in enumerate(rows):
            if row >= 0 and row < self.trained_items:  # its trained ranker vector stays
                ranker[k] = self.catalogue.ranker.array[row]
        return retriever, ranker

    def fused(self, rows: np.ndarray, ranker: np.ndarray, retriever: np.ndarray) -> np.ndarray:
        """The run's fusion of the ranker and retriever scores of catalogue ``rows``."""
        weights = self._evidence_weights(rows)
        return fuse(ranker[None], retriever[None], self.run.mode, self.run.alpha,
                    None if weights is None else weights[None])[0]  # fmt: skip

    def _evidence_weights(self, rows: np.ndarray) -> np.ndarray | None:
        """The fusion's evidence weights of catalogue rows (None: the binary fusion)."""
        if self.run.blend.kappa == 0:
            return None
        trained = rows < self.trained_items
        evidence = np.where(trained, self.evidence[np.where(trained, rows, 0)], 0.0)
        return self.run.blend.of(evidence)

    def _ranked(
        self, row: int | None, seen: list[int], allowed: np.ndarray, given: bool, k: int,
        at: int, mode: str | None,
    ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        views = [self.user_vector(None if given else row, seen)]
        candidates = _interleave([self.catalogue.search(v, self.top_m, allowed)
                                  for v in views], self.top_m)  # fmt: skip
        retriever = self.catalogue.retriever.array[candidates] @ views[0]
        context = self.run.ranker.contexts_of([np.array(seen)], at)[0]
        ranker = self.catalogue.ranker.array[candidates] @ context
        fused = self.fused(np.asarray(candidates), ranker, retriever)
        order = _top(fused, k)
        items = [self._entry(candidates[j], float(fused[j]), ranker[j], retriever[j],
                             "two_tower") for j in order]  # fmt: skip
        return items, len(candidates)

    def user_vector(self, row: int | None, seen: list[int]) -> np.ndarray:
        """The user's Two-Tower vector: the run's own for a trained user whose history has
        not grown, else from the content of their recent items (with their ID part when
        the run trained one for them)."""
        retriever = self.run.retriever
        if row is not None and row < self.users.trained and row not in self.users.changed:
            vector: np.ndarray = retriever.user_vectors[row]
            return vector
        recent = list(dict.fromkeys(reversed(seen)))[: retriever.config.last_n]
        content = l2_normalised(self.catalogue.content.array[recent].astype(np.float64).sum(
            axis=0, keepdims=True)).astype(np.float32)  # fmt: skip
        ids = np.array([row]) if row is not None and row < self.users.trained else None
        return retriever.embed("users", content, ids)[0]

    def _explained(self, user: str, row: int) -> dict[str, Any]:
        """The fusion, the evidence weight, the delta lenders of a cold or new item and
        the user's pseudo labels that name it (runs trained with labels)."""
        return {"mode": self.run.mode, "alpha": self.run.alpha, "kappa": self.run.blend.kappa,
                "evidence_weight": _weight_or_one(self._evidence_weights(np.array([row]))),
                "delta_lenders": self._lenders(self.run.ranker, row),
                "pseudo_labels": self._labels_naming(user, row)}  # fmt: skip

    def _labels_naming(self, user: str, row: int) -> dict[str, list[dict[str, Any]]] | None:
        """The user's pseudo edges and triplets that name the item (None: no labels)."""
        if not self.run.labels:
            return None
        if self._labels is None:
            self._labels = self.run.labels.read(self.run.dataset)
        edges, triplets = self._labels.edges, self._labels.triplets
        u = self.users.row_of.get(user, -1)
        edges = edges.loc[(edges["user"] == u) & (edges["item"] == row)]
        triplets = triplets.loc[(triplets["user"] == u) & ((triplets["pos"] == row) |
                                                           (triplets["neg"] == row))]  # fmt: skip
        ids = self.catalogue.ids
        return {
            "edges": [{"weight": float(e["weight"]), "source": str(e["source"])}
                      for e in edges.to_dict("records")],
            "triplets": [{"pos": ids[int(t["pos"])], "neg": ids[int(t["neg"])],
                          "weight": float(t["weight"]), "source": str(t["source"])}
                         for t in triplets.to_dict("records")],
        }  # fmt: skip

    def _described(self) -> dict[str, Any]:
        return {"model": "fused", "mode": self.run.mode, "alpha": self.run.alpha,
                "kappa": self.run.blend.kappa}  # fmt: skip


def _weight_or_one(weights: np.ndarray | None) -> float:
    return 1.0 if weights is None else float(weights[0])


def _records(items: pd.DataFrame) -> list[dict[str, Any]]:
    """The Dataset's items as the catalogue's records."""
    columns = ["item", "title", "categories", "brand", "price"]
    records: list[dict[str, Any]] = [
        {str(key): value for key, value in row.items()} for row in items[columns].to_dict("records")
    ]
    for record in records:
        for key in ("title", "brand", "price"):
            if pd.isna(record[key]):
                record[key] = None
        if record["price"] is not None:
            record["price"] = float(record["price"])
    return records


def _runs(pending: list[tuple[int, str, dict[str, Any]]]) -> list[tuple[str, list[Any]]]:
    """Consecutive writes of one kind as groups (applied in order, batched)."""
    groups: list[tuple[str, list[Any]]] = []
    for _, kind, body in pending:
        if groups and groups[-1][0] == kind:
            groups[-1][1].append(body)
        else:
            groups.append((kind, [body]))
    return groups


def _interleave(lists: list[np.ndarray], m: int) -> np.ndarray:
    """Round-robin merge of candidate lists, each item once, at most ``m``."""
    if len(lists) == 1:
        return lists[0][:m]
    rounds = itertools.zip_longest(*lists)
    merged = dict.fromkeys(int(x) for column in rounds for x in column if x is not None)
    return np.array(list(merged), dtype=np.int64)[:m]


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, the earlier candidate first among equals; NaN
    never ranked (as the evaluation protocol ranks candidates)."""
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    return order[~np.isnan(scores[order])][:k]
