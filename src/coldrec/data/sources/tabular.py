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

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from coldrec._io import require_file
from coldrec.data.frames import Frames, SkippedLines, make_interactions, make_items
from coldrec.data.sources._base import SourceBase
from coldrec.errors import DataError

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
    level_sep: str = ">"
    path_sep: str = "|"

    def load(self) -> Frames:
        inter_path = require_file(self.interactions, "interactions")
        item_path = require_file(self.items, "items")
        skipped = SkippedLines()
        table = _read_table(inter_path)
        cols = {name: self.columns.get(name, name) for name in ("user", "item", "ts", "rating")}
        _require_columns(inter_path, table, [cols["user"], cols["item"]])
        keep = table[cols["user"]].notna() & table[cols["item"]].notna()
        order_only = cols["ts"] not in table.columns
        ts = (
            pd.Series(np.arange(len(table)), index=table.index)
            if order_only
            else _seconds(table[cols["ts"]])
        )
        rating = (
            pd.to_numeric(table[cols["rating"]], errors="coerce")
            if cols["rating"] in table.columns
            else pd.Series(np.nan, index=table.index)
        )
        bad_rating = (
            rating.isna() & table[cols["rating"]].notna() if cols["rating"] in table else False
        )
        for row in np.flatnonzero(~keep | ts.isna() | bad_rating):
            skipped.add(
                inter_path, _line(inter_path, row), _row_problem(table, row, cols, ts, rating)
            )
        keep &= ts.notna() & ~bad_rating
        interactions = make_interactions(
            table.loc[keep, cols["user"]].astype(str).tolist(),
            table.loc[keep, cols["item"]].astype(str).tolist(),
            ts[keep].astype("int64").tolist(),
            [None if np.isnan(r) else float(r) for r in rating[keep]],
        )
        return Frames(
            interactions=interactions,
            items=make_items(self._item_records(item_path)),
            source=self.kind,
            order_only=order_only,
            files=(inter_path, item_path),
            skipped=skipped,
        )

    def _item_records(self, path: Path) -> list[dict[str, Any]]:
        table = _read_table(path)
        names = ("item", "title", "categories", "brand", "price", "description")
        cols = {name: self.item_columns.get(name, name) for name in names}
        _require_columns(path, table, [cols["item"]])
        present = {name: col for name, col in cols.items() if col in table.columns}
        records = []
        for values in table[list(present.values())].itertuples(index=False, name=None):
            record = {name: _none_if_na(v) for name, v in zip(present, values, strict=True)}
            record["categories"] = self._paths(record.get("categories"))
            records.append(record)
        return [r for r in records if r["item"] is not None]

    def _paths(self, cell: Any) -> list[list[str]]:
        if cell is None:
            return []
        if isinstance(cell, str):
            return [
                [level.strip() for level in path.split(self.level_sep) if level.strip()]
                for path in cell.split(self.path_sep)
            ]
        cell = list(cell)
        if cell and all(isinstance(level, str) for level in cell):
            return [cell]
        return [list(path) for path in cell]


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        sep = "\t" if ".tsv" in name else ","
        try:
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(
                f"{path}: cannot be read as {'TSV' if sep == chr(9) else 'CSV'}: {exc}"
            ) from None
    raise DataError(f"{path}: unknown table format (expected .csv, .tsv, .csv.gz or .parquet)")


def _require_columns(path: Path, table: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; it has {list(table.columns)}")


def _seconds(column: pd.Series) -> pd.Series:
    """Unix seconds from numbers or date-time text; unparseable cells become NaN."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().sum() >= column.notna().sum() / 2:
        return numbers.astype("float64").map(np.floor)
    stamps = pd.to_datetime(column, errors="coerce", utc=True)
    seconds = (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.astype("float64")


def _line(path: Path, row: int) -> int | None:
    """1-based file line of a data row (CSV has a header line), or None for Parquet."""
    return None if path.name.lower().endswith(".parquet") else int(row) + 2


def _row_problem(
    table: pd.DataFrame, row: int, cols: dict[str, str], ts: pd.Series, rating: pd.Series
) -> str:
    for name in ("user", "item"):
        if pd.isna(table[cols[name]].iloc[row]):
            return f"field '{cols[name]}' is empty"
    if pd.isna(ts.iloc[row]):
        return f"field '{cols['ts']}' is not a time: {table[cols['ts']].iloc[row]!r}"
    return f"field '{cols['rating']}' is not a number: {table[cols['rating']].iloc[row]!r}"


def _none_if_na(value: Any) -> Any:
    if isinstance(value, list | tuple | np.ndarray):
        return value
    return None if pd.isna(value) else value
