"""Generic CSV or Parquet tables with a column mapping.

``columns`` maps the canonical interaction names (``user``, ``item``, ``ts``, ``rating``)
to the file's column names, ``item_columns`` does the same for ``item``, ``title``,
``categories``, ``brand``, ``price`` and ``description``; unmapped names are taken as is
when the file has them. A ``ts`` column may be numbers (Unix seconds) or date-time text;
without one, the row order becomes ``ts`` and the data are order-only. A ``categories``
cell is either a list of paths (Parquet), one path as a list, or text: paths separated by
``path_sep``, levels by ``level_sep`` (``"Beauty > Makeup | Beauty > Tools"``).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, model_validator

from coldrec._util.io import require_file
from coldrec.data.frames import (
    INTERACTION_COLUMNS,
    MAX_ABS_TIME,
    Frames,
    SkippedLines,
    make_interactions,
    make_items,
)
from coldrec.data.sources._base import SourceBase
from coldrec.errors import DataError, brief

__all__ = ["TabularSource"]


class TabularSource(SourceBase):
    """Interactions and items from CSV (``.csv``, ``.tsv``, optionally gzipped) or Parquet."""

    kind: Literal["csv"] = "csv"
    interactions: Path
    items: Path
    columns: dict[str, str] = Field(default_factory=dict)
    """Canonical interaction name → file column, e.g. ``{"user": "uid", "ts": "time"}``."""
    item_columns: dict[str, str] = Field(default_factory=dict)
    """Canonical item name → file column, e.g. ``{"item": "id", "title": "name"}``."""
    level_sep: str = Field(">", min_length=1)
    """Separates the levels of a category path in a text cell."""
    path_sep: str = Field("|", min_length=1)
    """Separates the paths of a text cell; a cell of one-level paths is a list of labels
    (``Adventure|Animation``), all of which go into the item text."""

    @model_validator(mode="after")
    def _distinct_separators(self) -> Self:
        if self.level_sep == self.path_sep:
            raise ValueError(f"level_sep and path_sep are both {self.path_sep!r}: they must differ")
        return self

    def load(self) -> Frames:
        inter_path = require_file(self.interactions, "interactions")
        item_path = require_file(self.items, "items")
        skipped, warnings = SkippedLines(), list[str]()
        interactions, order_only = self._interactions(inter_path, skipped, warnings)
        return Frames(
            interactions=interactions,
            items=make_items(self._item_records(item_path, skipped)),
            source=self.kind,
            order_only=order_only,
            files=(inter_path, item_path),
            skipped=skipped,
            warnings=warnings,
        )

    def _interactions(
        self, path: Path, skipped: SkippedLines, warnings: list[str]
    ) -> tuple[pd.DataFrame, bool]:
        """Canonical interactions and whether they are order-only (no ``ts`` column); a
        warning when a column the mapping leaves out looks like the time."""
        table = _read_table(path)
        cols = {name: self.columns.get(name, name) for name in INTERACTION_COLUMNS}
        # Columns named in the mapping must exist; unmapped ts and rating are optional.
        _require_columns(path, table, [cols["user"], cols["item"], *self.columns.values()])
        order_only = cols["ts"] not in table.columns
        others = table.drop(columns=[c for c in cols.values() if c in table.columns])
        if order_only and (looks := _time_like_columns(others)):
            warnings.append(
                f"{path.name}: no '{cols['ts']}' column, so the data are order-only (the row "
                f"order is the time); column(s) {looks} look like times: map one with "
                f"--set source.columns.ts={looks[0]}"
            )
        ts = (
            pd.Series(np.arange(len(table)), index=table.index, dtype="float64")
            if order_only
            else _seconds(table[cols["ts"]])
        )
        has_rating = cols["rating"] in table.columns
        raw_rating = table[cols["rating"]] if has_rating else pd.Series(None, index=table.index)
        rating = pd.to_numeric(raw_rating, errors="coerce").astype("float64")
        keep = table[cols["user"]].notna() & table[cols["item"]].notna() & ts.notna()
        keep &= rating.notna() | raw_rating.isna()
        for label in table.index[~keep]:
            skipped.add(path, *_where(path, label, _row_problem(table.loc[label], cols, ts[label])))
        interactions = make_interactions(
            table.loc[keep, cols["user"]].astype(str).tolist(),
            table.loc[keep, cols["item"]].astype(str).tolist(),
            ts[keep].astype("int64").tolist(),
            [None if np.isnan(r) else float(r) for r in rating[keep]],
        )
        return interactions, order_only

    def _item_records(self, path: Path, skipped: SkippedLines) -> list[dict[str, Any]]:
        table = _read_table(path)
        names = ("item", "title", "categories", "brand", "price", "description")
        cols = {name: self.item_columns.get(name, name) for name in names}
        _require_columns(path, table, [cols["item"]])
        present = {name: col for name, col in cols.items() if col in table.columns}
        records = []
        for label, *values in table[list(present.values())].itertuples(name=None):
            record = {name: _none_if_na(v) for name, v in zip(present, values, strict=True)}
            if record["item"] is None:
                skipped.add(path, *_where(path, label, f"field '{cols['item']}' is empty"))
                continue
            paths = self._paths(record.get("categories"))
            if isinstance(paths, str):
                skipped.add(path, *_where(path, label, paths))
                continue
            record["categories"] = paths
            records.append(record)
        return records

    def _paths(self, cell: Any) -> list[list[str]] | str:
        """Category paths from a cell: text (paths by ``path_sep``, levels by
        ``level_sep``), a label (a number), one path (a list of names) or a list of
        paths; or why the cell is none of these."""
        if cell is None:
            return []
        if isinstance(cell, str):
            return [
                [level.strip() for level in path.split(self.level_sep) if level.strip()]
                for path in cell.split(self.path_sep)
            ]
        if _is_name(cell):
            return [[str(cell)]]
        if isinstance(cell, list | tuple | np.ndarray):
            if all(_is_name(level) for level in cell):
                return [[str(level) for level in cell]] if len(cell) else []
            if all(
                isinstance(p, list | tuple | np.ndarray) and all(map(_is_name, p)) for p in cell
            ):
                return [[str(level) for level in path] for path in cell]
        return f"field 'categories' is not a category path: {brief(cell)}"


def _read_table(path: Path) -> pd.DataFrame:
    """The table as strings (CSV/TSV) or typed columns (Parquet); fully blank rows of a
    CSV are dropped, keeping row ``r`` on file line ``r + 1`` for messages."""
    name = path.name.lower()
    try:
        if name.endswith(".parquet"):
            table = pd.read_parquet(path)
        elif name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            # The header is read as a row: a data row with more cells than it is then an
            # error naming the line (as a header it would silently shift or cut the row).
            rows = pd.read_csv(path, sep="\t" if ".tsv" in name else ",", header=None,
                               dtype=str, keep_default_na=False, na_values=[""],
                               skip_blank_lines=False)  # fmt: skip
            table = rows.iloc[1:].set_axis(rows.iloc[0].fillna("").tolist(), axis=1)
            table = table.dropna(how="all")
        else:
            raise DataError(
                f"{path}: unknown table format (expected .csv, .tsv, .csv.gz or .parquet)"
            )
    except (ValueError, OSError, EOFError, zlib.error, pa.ArrowException) as exc:
        # pandas' parser, empty-file and decoding errors are ValueErrors; gzip's are OSError.
        raise DataError(
            f"{path}: cannot be read as a table ({type(exc).__name__}: {brief(str(exc), 200)})"
        ) from None
    repeated = sorted({str(c) for c in table.columns if list(table.columns).count(c) > 1})
    if repeated:
        raise DataError(f"{path}: the header repeats column(s) {brief(repeated, 200)}")
    return table


_TIME_WORDS = ("time", "date", "timestamp", "when", "ts", "day", "created", "at")


def _time_like_columns(table: pd.DataFrame) -> list[str]:
    """Columns whose name reads as a time, or whose first cells are dates or Unix seconds."""
    found = []
    for column in table.columns:
        words = str(column).lower().replace("-", "_").split("_")
        if any(word in _TIME_WORDS for word in words) or _holds_times(table[column]):
            found.append(str(column))
    return found


def _holds_times(column: pd.Series) -> bool:
    cells = column.dropna().head(20)
    if pd.api.types.is_datetime64_any_dtype(cells):
        return len(cells) > 0
    seconds = _seconds(cells.astype(str))
    return len(cells) > 0 and bool(seconds.notna().all() and (seconds > 1e8).all())


def _require_columns(path: Path, table: pd.DataFrame, columns: list[str]) -> None:
    missing = list(dict.fromkeys(c for c in columns if c not in table.columns))
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; it has {brief(list(table.columns), 200)}"
        )


def _seconds(column: pd.Series) -> pd.Series:
    """Unix seconds (float, NaN where unparseable) from date-times, numbers, or text cells
    holding either: each text cell is read as a number if it is one, else as a date."""
    if pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("float64")
    numbers = pd.to_numeric(column, errors="coerce").astype("float64")
    text = numbers.isna() & column.notna()
    if text.any():
        stamps = pd.to_datetime(column[text], errors="coerce", utc=True, format="mixed")
        seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        numbers[text] = seconds.astype("float64")
    return numbers.map(np.floor).where(numbers.abs() < MAX_ABS_TIME)  # inf, 1e19: not a time


def _where(path: Path, row: Any, reason: str) -> tuple[int | None, str]:
    """File line of data row ``row`` (CSV has a header line); Parquet has rows, not lines."""
    if path.name.lower().endswith(".parquet"):
        return None, f"row {row}: {reason}"
    return int(row) + 1, reason


def _row_problem(row: pd.Series, cols: dict[str, str], ts: float) -> str:
    for name in ("user", "item"):
        if pd.isna(row[cols[name]]):
            return f"field '{cols[name]}' is empty"
    if pd.isna(ts):
        cell = row[cols["ts"]]
        number = pd.to_numeric(pd.Series([cell]), errors="coerce").iloc[0]
        why = f"out of range (±{MAX_ABS_TIME:.0e})" if pd.notna(number) else "not a time"
        return f"field '{cols['ts']}' is {why}: {brief(cell)}"
    return f"field '{cols['rating']}' is not a number: {brief(row[cols['rating']])}"


def _is_name(value: Any) -> bool:
    """A category name: a string, or a number used as a label."""
    return isinstance(value, str | int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )


def _none_if_na(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return value
    return None if pd.isna(value) else value
