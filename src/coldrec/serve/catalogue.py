"""Every item a server knows, and the FAISS index of their retriever vectors.

Rows are item indices: the run's Dataset items first (in its order), then items added
while serving. Each row holds the item's metadata (title, category paths, brand, price,
``available``), whether it is cold (no training interaction), and three vectors: its text
vector (the encoder's), its retriever vector (the Two-Tower's; a new item's is the
content projection of eq. 4.4) and its ranker vector (NaN where the ranker cannot score
it). The index holds one *slot* per vector ever added: adding an item appends a slot,
updating one appends a new slot and retires the old, removing one retires it; retired
slots are never returned, so the index is never rebuilt (flat and HNSW alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from coldrec.retrieval.index import IndexConfig, build_index

__all__ = ["Catalogue", "Filters", "Rows"]


class Rows:
    """An array that grows by appended rows (capacity doubles): float32 vectors, or int64
    numbers."""

    def __init__(self, initial: np.ndarray, dtype: type = np.float32) -> None:
        self._data: np.ndarray = np.ascontiguousarray(initial, dtype=dtype)
        self.n = len(initial)

    @property
    def array(self) -> np.ndarray:
        return self._data[: self.n]

    def append(self, rows: np.ndarray) -> None:
        if self.n + len(rows) > len(self._data):
            grown = np.empty((2 * (self.n + len(rows)), *self._data.shape[1:]), self._data.dtype)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    def set(self, row: int, values: np.ndarray | int) -> None:
        self._data[row] = values


@dataclass(frozen=True)
class Filters:
    """What a recommendation may contain (every field optional)."""

    category: list[str] | None = None
    """A category path prefix, root first (``["Beauty", "Makeup"]``)."""
    brand: str | None = None
    """Exactly this brand (case-folded)."""
    min_price: float | None = None
    max_price: float | None = None
    exclude: tuple[str, ...] = ()
    """Item ids never to return."""


class Catalogue:
    """Items, their vectors and the retriever index (see the module doc)."""

    def __init__(
        self,
        records: list[dict[str, Any]],
        content: np.ndarray,
        retriever: np.ndarray,
        ranker: np.ndarray,
        cold: np.ndarray,
        index: IndexConfig,
        served: np.ndarray,
    ) -> None:
        self.ids = [r["item"] for r in records]
        self.row_of = {item: row for row, item in enumerate(self.ids)}
        self.records = records
        self.cold = [bool(c) for c in cold]
        self.content, self.retriever, self.ranker = Rows(content), Rows(retriever), Rows(ranker)
        self.served = [bool(x) for x in served]
        """False once deleted (or, at start, for items the server begins without)."""
        rows = np.flatnonzero(served)
        self.index: Any = build_index(retriever[rows], index)
        self._index_config = index
        self.slot_row = Rows(rows, np.int64)
        """The row of each index slot."""
        self.row_slot = Rows(np.full(len(records), -1), np.int64)
        """The live slot of each row (-1: none, the row is never returned)."""
        self.row_slot.array[rows] = np.arange(len(rows))
        self._columns: dict[Any, np.ndarray] = {}
        """Per-row arrays derived from the records, cleared when items change."""

    def __len__(self) -> int:
        return len(self.ids)

    def available(self) -> np.ndarray:
        """Rows that may be recommended: served and marked available."""
        if "available" not in self._columns:
            self._columns["available"] = np.array(
                [s and r.get("available", True) is not False
                 for s, r in zip(self.served, self.records, strict=True)], dtype=bool)  # fmt: skip
        return self._columns["available"]

    def upsert(
        self, records: list[dict[str, Any]], content: np.ndarray, retriever: np.ndarray,
        ranker: np.ndarray,
    ) -> list[int]:  # fmt: skip
        """Add new items, or replace the metadata and vectors of known ones; their rows."""
        rows = []
        for record, text, tw, rk in zip(records, content, retriever, ranker, strict=True):
            row = self.row_of.get(record["item"])
            if row is None:
                row = len(self.ids)
                self.ids.append(record["item"])
                self.row_of[record["item"]] = row
                self.records.append(record)
                self.cold.append(True)
                self.served.append(True)
                self.row_slot.append(np.array([-1]))
                for store, vector in ((self.content, text), (self.retriever, tw),
                                      (self.ranker, rk)):  # fmt: skip
                    store.append(vector[None])
            else:
                self.records[row] = {**self.records[row], **record}
                self.served[row] = True
                for store, vector in ((self.content, text), (self.retriever, tw),
                                      (self.ranker, rk)):  # fmt: skip
                    store.set(row, vector)
            rows.append(row)
        first = self.slot_row.n
        self.index.add(np.ascontiguousarray(retriever, dtype=np.float32))
        self.slot_row.append(np.array(rows))
        self.row_slot.array[rows] = np.arange(first, first + len(rows))
        self._columns.clear()
        return rows

    def remove(self, row: int) -> None:
        """Never return this item again (until it is added anew)."""
        self.served[row] = False
        self.row_slot.set(row, -1)
        self._columns.clear()

    def allowed(self, filters: Filters, blocked: np.ndarray) -> np.ndarray:
        """Rows a recommendation may hold: available, not ``blocked`` (history), and
        within ``filters``."""
        mask = self.available() & ~blocked
        if filters.category:
            mask &= self._under(tuple(filters.category))
        if filters.brand is not None:
            mask &= self._column("brand") == filters.brand.casefold()
        if filters.min_price is not None or filters.max_price is not None:
            prices = self._column("price")
            low = -np.inf if filters.min_price is None else filters.min_price
            high = np.inf if filters.max_price is None else filters.max_price
            mask &= (prices >= low) & (prices <= high)
        for item in filters.exclude:
            if item in self.row_of:
                mask[self.row_of[item]] = False
        return mask

    def _column(self, name: str) -> np.ndarray:
        """``brand`` (case-folded) or ``price`` (NaN when unknown) of every row."""
        if name not in self._columns:
            if name == "brand":
                values = [str(r.get("brand") or "").casefold() for r in self.records]
                self._columns[name] = np.array(values, dtype=object)
            else:
                prices = [np.nan if r.get("price") is None else r["price"] for r in self.records]
                self._columns[name] = np.array(prices, dtype=float)
        return self._columns[name]

    def _under(self, prefix: tuple[str, ...]) -> np.ndarray:
        """Rows with a category path starting with ``prefix`` (cached until items change)."""
        if prefix not in self._columns:
            self._columns[prefix] = np.array([
                any(tuple(path[: len(prefix)]) == prefix for path in r.get("categories") or [])
                for r in self.records
            ], dtype=bool)  # fmt: skip
        return self._columns[prefix]

    def search(self, query: np.ndarray, m: int, allowed: np.ndarray) -> np.ndarray:
        """Up to ``m`` allowed rows by retriever score for one query vector, best first.
        When a filter leaves fewer than ``m`` rows or under half the live ones, every
        allowed row is scored exactly (the index, HNSW above all, would miss some of a
        small allowed set), so a filter never starves the list; otherwise the index is
        asked for enough more than ``m`` to skip what is not allowed."""
        live = self.row_slot.array
        wanted = allowed & (live >= 0)
        n_allowed = int(wanted.sum())
        if n_allowed <= m or n_allowed < 0.5 * int((live >= 0).sum()):
            rows = np.flatnonzero(wanted)
            scores = self.retriever.array[rows] @ query
            return rows[np.argsort(-scores, kind="stable")[:m]]
        k = min(m + self.index.ntotal - n_allowed, self.index.ntotal)
        if self._index_config.kind == "hnsw":
            self.index.hnsw.efSearch = max(self._index_config.ef_search, k)
        _, found = self.index.search(np.ascontiguousarray(query[None], dtype=np.float32), k)
        slots = found[0][found[0] >= 0]
        rows = self.slot_row.array[slots]
        keep = allowed[rows] & (live[rows] == slots)  # a retired slot is not its row's
        return rows[keep][:m]
