"""RecBole atomic files: tab-separated ``X.inter`` and ``X.item`` with ``name:type`` headers.

Types are ``token``, ``token_seq`` (space-separated tokens), ``float`` and
``float_seq``. Interactions need a user and an item field; ``rating`` and ``timestamp``
are optional (without a timestamp the file order becomes ``ts`` and the data are marked
order-only). The item title is the first of :data:`TITLE_FIELDS` present unless named;
a category field holds labels (``class`` in MovieLens: each genre becomes a one-level
category path). An optional ``X.user`` file gives static user features
(:func:`~coldrec.data.frames.make_user_features`: numeric fields such as MovieLens' age
become quantile buckets; identifying fields such as a zip code are left out, said).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from coldrec._util.io import require_file
from coldrec.data.frames import (
    MAX_ABS_TIME,
    Frames,
    SkippedLines,
    iter_lines,
    make_interactions,
    make_items,
    make_user_features,
    number_problem,
)
from coldrec.data.sources._base import SourceBase
from coldrec.errors import DataError, brief

__all__ = ["CATEGORY_FIELDS", "TITLE_FIELDS", "RecBoleSource"]

TITLE_FIELDS = ("title", "movie_title", "item_name", "name")
CATEGORY_FIELDS = ("categories", "category", "class", "genre", "genres")


class RecBoleSource(SourceBase):
    """RecBole atomic ``.inter`` and ``.item`` files."""

    kind: Literal["recbole"] = "recbole"
    interactions: Path
    """``X.inter``."""
    items: Path
    """``X.item``."""
    user_field: str = "user_id"
    item_field: str = "item_id"
    rating_field: str = "rating"
    """Optional in the file."""
    time_field: str = "timestamp"
    """Optional in the file; without it the data are order-only."""
    title_field: str | None = None
    """Defaults to the first of ``title, movie_title, item_name, name`` present."""
    category_field: str | None = None
    """Defaults to the first of ``categories, category, class, genre, genres`` present."""
    users: Path | None = None
    """``X.user`` (optional): static user features, one row per user."""
    user_fields: list[str] | None = None
    """The feature fields of ``users`` (default: every field but the user's id)."""
    user_numeric_buckets: int = Field(5, ge=1)
    """Quantile buckets of a numeric user field."""
    max_user_feature_values: int = Field(64, ge=1)
    """A categorical user field with more distinct values is left out."""

    def load(self) -> Frames:
        inter_path = require_file(self.interactions, "interactions")
        item_path = require_file(self.items, "items")
        skipped = SkippedLines()
        header, rows = _read_atomic(inter_path, skipped)
        _require_fields(inter_path, header, (self.user_field, self.item_field))
        order_only = self.time_field not in header
        users, items, times, ratings = [], [], [], []
        for number, row in rows:
            ts = number if order_only else _number(row, self.time_field)
            has_rating = bool(row.get(self.rating_field))
            rating = _number(row, self.rating_field, limit=1e6) if has_rating else None
            if isinstance(ts, str) or isinstance(rating, str):
                skipped.add(inter_path, number, ts if isinstance(ts, str) else str(rating))
                continue
            users.append(row[self.user_field])
            items.append(row[self.item_field])
            times.append(int(ts))
            ratings.append(rating)
        warnings: list[str] = []
        user_path = require_file(self.users, "users") if self.users is not None else None
        return Frames(
            interactions=make_interactions(users, items, times, ratings),
            items=make_items(self._item_records(item_path, skipped)),
            source=self.kind,
            order_only=order_only,
            files=(inter_path, item_path) + ((user_path,) if user_path else ()),
            skipped=skipped,
            warnings=warnings,
            users=self._user_features(user_path, skipped, warnings) if user_path else None,
        )

    def _user_features(
        self, path: Path, skipped: SkippedLines, warnings: list[str]
    ) -> pd.DataFrame:
        header, rows = _read_atomic(path, skipped)
        fields = self.user_fields or [f for f in header if f != self.user_field]
        _require_fields(path, header, (self.user_field, *fields))
        records = [row for _, row in rows]
        return make_user_features([row[self.user_field] for row in records],
                                  {f: [row[f] for row in records] for f in fields},
                                  self.user_numeric_buckets, self.max_user_feature_values,
                                  warnings)  # fmt: skip

    def _item_records(self, path: Path, skipped: SkippedLines) -> list[dict[str, Any]]:
        header, rows = _read_atomic(path, skipped)
        _require_fields(path, header, (self.item_field,))
        title = self.title_field or next((f for f in TITLE_FIELDS if f in header), None)
        category = self.category_field or next((f for f in CATEGORY_FIELDS if f in header), None)
        _require_fields(path, header, tuple(f for f in (title, category) if f))
        records = []
        for _, row in rows:
            labels = (row.get(category) or "").split() if category else []
            records.append(
                {
                    "item": row[self.item_field],
                    "title": row.get(title) if title else None,
                    "categories": [[label] for label in labels],
                    "brand": row.get("brand"),
                    "price": row.get("price"),
                    "description": row.get("description"),
                }
            )
        return records


def _read_atomic(
    path: Path, skipped: SkippedLines
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The field names of an atomic file and an iterator over its well-formed rows."""
    lines = iter_lines(path, skipped)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file, expected a 'name:type' header")
    header = [cell.split(":", 1)[0].strip() for cell in first[1].rstrip("\r\n").split("\t")]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}:1: the header repeats field(s) {brief(repeated, 200)}")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for number, line in lines:
            cells = line.rstrip("\r\n").split("\t")
            if len(cells) != len(header):
                skipped.add(path, number, f"{len(cells)} cells, header has {len(header)}")
                continue
            yield number, dict(zip(header, cells, strict=True))

    return header, rows()


def _number(row: dict[str, str], field: str, limit: float = MAX_ABS_TIME) -> float | str:
    """The cell as a number, or why it is not one (see :func:`number_problem`)."""
    try:
        value = float(row[field])
    except ValueError:
        return f"field '{field}' is not a number: {brief(row[field])}"
    return number_problem(field, value, limit) or value


def _require_fields(path: Path, header: list[str], fields: tuple[str, ...]) -> None:
    missing = [f for f in fields if f not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks field(s) {missing}; it has {brief(header, 200)}")
