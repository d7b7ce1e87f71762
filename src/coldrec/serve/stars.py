"""Serving a STARS run: two-stage, ANN then filters (paper §4.4).

The index holds each item's token with its popularity prior as one more coordinate,
``[v_k ; b_k]``, and a user's query is ``[h ; 1]``, so the inner product the index
searches is the model's own score ``h·v_k + b_k``: the first stage is exact (flat
index) or approximate (HNSW), and filters act on what it returns
(:meth:`~coldrec.serve.catalogue.Catalogue.search`).

- **The user vector** ``h``: ``h_next`` (mode ``next``), ``h_gen`` (``general``), or both
  with their lists interleaved without repeats (``round_robin``, as offline), each with
  the context offset of the request time (``at``, default now). A trained user whose
  history has not grown is encoded from the history and context columns the model
  stored, as in the evaluation; a grown or given history from its items and times
  (their engagement unknown), with the user's static features when the run trained the
  user. Items added after training have no token and are left out of histories.
- **A new item**: its token from its text (``map(c) + Δ``, Δ by the run's transfer when
  it has one) and its ``tags`` (from the model's vocabulary), with the prior of an item
  never seen: it is recommendable on the next request.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coldrec.encode import TextEncoderConfig
from coldrec.serve.engine import BaseEngine, ServeConfig, _interleave
from coldrec.serve.run import StarsRun
from coldrec.serve.store import WriteLog

__all__ = ["StarsEngine"]


class StarsEngine(BaseEngine):
    """A STARS run being served (see the module doc)."""

    def __init__(self, run: StarsRun, config: ServeConfig, log: WriteLog) -> None:
        self.run, self.model = run, run.model
        self.mode = config.mode or self.model.config.scoring
        vectors = self.model.item_table()
        delta = self.model.config.delta
        encoder = delta.encoder if delta is not None else TextEncoderConfig()
        super().__init__(run.dataset, config, log, encoder, (vectors, vectors),
                         self.model.config.round_robin_depth)  # fmt: skip

    def _check_items(self, records: list[dict[str, Any]]) -> None:
        self.model.tag_rows([list(r.get("tags") or []) for r in records])

    def _item_vectors(
        self, records: list[dict[str, Any]], content: np.ndarray, rows: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        tags = self.model.tag_rows([list(r.get("tags") or []) for r in records])
        vectors = self.model.new_item_vectors(content, tags)
        for k, row in enumerate(rows):
            if 0 <= row < self.trained_items:  # a Dataset item keeps its trained token
                vectors[k] = self.catalogue.retriever.array[row]
        return vectors, vectors

    def _ranked(
        self, row: int | None, seen: list[int], allowed: np.ndarray, given: bool, k: int,
        at: int, mode: str | None,
    ) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        mode = mode or self.mode
        h_next, h_gen = self.user_vectors(None if given else row, seen, at)
        if mode != "next" and h_gen is None:
            raise ValueError(f"mode {mode!r} needs the [USER] token, which this model lacks")
        views = [h_next] if mode == "next" else [h_gen] if mode == "general" else [h_next, h_gen]
        queries = [np.append(v, np.float32(1.0)) for v in views if v is not None]
        lists = [self.catalogue.search(q, self.top_m, allowed) for q in queries]
        merged = _interleave(lists, self.top_m)
        candidates = merged[:k]
        scores = self.catalogue.retriever.array[candidates] @ queries[0]
        listed = len(candidates) - np.arange(len(candidates), dtype=np.float32)
        shown = scores if mode != "round_robin" else listed  # RR ranks by list position
        items = [self._entry(r, float(shown[j]), float(scores[j]), np.nan, "stars")
                 for j, r in enumerate(candidates)]  # fmt: skip
        return items, len(merged)

    def user_vectors(
        self, row: int | None, seen: list[int], at: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``h_next`` and ``h_gen`` of a user at time ``at`` (``row``: a known user's row,
        None for a given history)."""
        trained = row is not None and row < self.users.trained
        if row is not None and trained and row not in self.users.changed:
            return self.model.stored_vectors(row, at)
        times = self.users.times[row] if row is not None else None
        ts = np.asarray(times, dtype=np.int64) if times is not None else None
        return self.model.history_vectors(np.asarray(seen, dtype=np.int64), ts, at,
                                          row if trained else None)  # fmt: skip

    def _explained(self, user: str, row: int) -> dict[str, Any]:
        """The user vector in use, the prior of the item, and the delta lenders of a cold
        or new item (runs with a transfer)."""
        return {"mode": self.mode, "gamma": self.model.config.gamma,
                "prior": float(self.catalogue.retriever.array[row, -1]),
                "delta_lenders": self._lenders(self.model, row)}  # fmt: skip

    def _described(self) -> dict[str, Any]:
        return {"model": "stars", "mode": self.mode, "gamma": self.model.config.gamma}
