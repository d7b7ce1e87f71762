"""The canonical frames every source returns, and the helpers that build them.

``interactions`` — one row per event, in the order of the source file:

========  ===================  ==================================================
column    dtype                meaning
========  ===================  ==================================================
user      string               original user id
item      string               original item id
ts        int64                Unix seconds, or the position when ``order_only``
rating    Float64 (nullable)   explicit rating; missing means "no rating given"
========  ===================  ==================================================

``items`` — one row per item with metadata: ``item`` (string), ``title``, ``brand``,
``description`` (nullable strings), ``price`` (nullable Float64) and ``categories``
(a list of category paths, each a list of names from the root; empty when unknown).

``users`` (optional) — static user features: a ``user`` column and one nullable string
column per feature (:func:`make_user_features`), e.g. MovieLens' age bucket, gender and
occupation.

Preparation (:mod:`coldrec.data.prepare`) adds ``weight`` and ``split``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coldrec._util.io import open_bytes
from coldrec.errors import DataError, brief

__all__ = [
    "INTERACTION_COLUMNS",
    "ITEM_COLUMNS",
    "MAX_ABS_TIME",
    "Frames",
    "SkippedLines",
    "clean_text",
    "item_record",
    "iter_lines",
    "make_interactions",
    "make_items",
    "make_user_features",
    "number_problem",
    "parse_price",
    "text_problem",
]

INTERACTION_COLUMNS = ("user", "item", "ts", "rating")
ITEM_COLUMNS = ("item", "title", "categories", "brand", "price", "description")
_EXAMPLES_KEPT = 5
MAX_ABS_TIME = 10**15
"""A time (Unix seconds, or a position) must lie within ±this: larger values (1e19, 1e300)
do not fit the int64 column and are no time anyone meant."""


@dataclass
class SkippedLines:
    """Malformed input records that were skipped: a count per file and the first examples."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def add(self, path: Path | str, line: int | None, reason: str) -> None:
        """Record one skipped record of ``path`` (1-based ``line`` when known) and why."""
        key = str(path)
        self.counts[key] = self.counts.get(key, 0) + 1
        if len(self.examples) < _EXAMPLES_KEPT:
            where = key if line is None else f"{key}:{line}"
            self.examples.append(f"{where}: {reason}")

    @property
    def total(self) -> int:
        """Number of skipped lines over all files."""
        return sum(self.counts.values())

    def extend(self, other: SkippedLines) -> None:
        """Add the records of ``other`` to this one."""
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        room = _EXAMPLES_KEPT - len(self.examples)
        self.examples.extend(other.examples[:room])

    def summary(self) -> str:
        """One line for the log: how many lines were skipped and where the first ones are."""
        return f"skipped {self.total} malformed record(s); first: " + "; ".join(self.examples)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored in the Dataset's ``meta.json``."""
        return {"total": self.total, "per_file": dict(self.counts), "examples": list(self.examples)}


@dataclass
class Frames:
    """What a source returns: canonical ``interactions`` and ``items`` plus provenance."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str
    order_only: bool = False
    files: tuple[Path, ...] = ()
    skipped: SkippedLines = field(default_factory=SkippedLines)
    warnings: list[str] = field(default_factory=list)
    """What the source noticed but did not refuse (kept in the Dataset's ``meta.json``)."""
    users: pd.DataFrame | None = None
    """Static user features (:func:`make_user_features`), if the source has them."""

    def where(self) -> str:
        """The input files (by name), or the source kind, for messages."""
        return ", ".join(path.name for path in self.files) or f"the {self.source} source"

    def __post_init__(self) -> None:
        for name, frame, columns in (
            ("interactions", self.interactions, INTERACTION_COLUMNS),
            ("items", self.items, ITEM_COLUMNS),
        ):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(f"{self.source}: {name} frame lacks column(s) {missing}")
        if self.users is not None and "user" not in self.users.columns:
            raise DataError(f"{self.source}: users frame lacks the column 'user'")
        why = f" ({self.skipped.summary()})" if self.skipped.total else ""
        if self.interactions.empty:
            where = ", ".join(str(f) for f in self.files) or self.source
            raise DataError(f"no interactions could be read from {where}{why}")
        if self.items.empty:
            where = str(self.files[-1]) if self.files else self.source
            raise DataError(f"no item records could be read from {where}{why}")


def iter_lines(path: Path, skipped: SkippedLines) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank UTF-8 line of a (``.gz``) file;
    a line that is not UTF-8 is recorded in ``skipped``. A file whose lines end in a
    carriage return alone (classic Mac) is refused, naming it."""
    with open_bytes(path) as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and b"\r" in raw.rstrip(b"\r\n"):
                raise DataError(
                    f"{path}: lines end in a carriage return alone (classic Mac line ends); "
                    "convert them to LF or CRLF"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                skipped.add(path, number, f"not UTF-8 text (byte {exc.start})")
                continue
            if line.strip():
                yield number, line


def text_problem(field_name: str, value: Any) -> str | None:
    """Why a text field (or a list of them, nested) is not Unicode text: an escaped lone
    surrogate such as ``"\\ud800"`` decodes to a string no file can hold."""
    if isinstance(value, list | tuple):
        return next((p for v in value if (p := text_problem(field_name, v))), None)
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return (f"field '{field_name}' holds an unpaired surrogate "
                    f"({value[exc.start]!a}), not Unicode text")  # fmt: skip
    return None


def number_problem(field_name: str, value: Any, limit: float = MAX_ABS_TIME) -> str | None:
    """Why ``value`` is not a usable number: not a number, a bool, NaN, infinite, or
    beyond ±``limit`` (checked without converting a huge integer to float)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        return f"field '{field_name}' is not a number: {brief(value)}"
    if not (-limit < value < limit):
        return f"field '{field_name}' is out of range (±{limit:.0e}): {brief(value)}"
    return None


_SPACES = re.compile(r"\s+")


def clean_text(value: Any) -> str | None:
    """Unescape HTML entities and collapse whitespace (tabs, newlines); ``None`` if empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, list | tuple):
        value = " ".join(str(v) for v in value if v is not None)
    text = _SPACES.sub(" ", html.unescape(str(value))).strip()
    return text or None


_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?|\.\d+")
_MAX_PRICE = 10**12


def parse_price(value: Any) -> float | None:
    """A price as float: numbers pass through, text like ``"$1,012.99"`` is parsed.

    A range such as ``"$5.00 - $9.00"`` gives its lower end; text without a number, and
    a number that is no price (NaN, infinite, negative, 10¹² or more), give ``None``.
    """
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float):
        match = _NUMBER.search(str(value)[:1000])
        value = float(match.group().replace(",", "")) if match else None
    return float(value) if value is not None and 0 <= value < _MAX_PRICE else None


def item_record(
    raw: Mapping[str, Any], item: Any, categories: list[list[str]]
) -> dict[str, Any] | str:
    """An item record for :func:`make_items`: ``item`` and ``categories`` as given, the
    text fields and price taken from ``raw`` (absent ones become ``None``); or the
    reason it cannot be one (a field that is not Unicode text)."""
    record = {
        "item": item,
        "title": raw.get("title"),
        "categories": categories,
        "brand": raw.get("brand"),
        "price": raw.get("price"),
        "description": raw.get("description"),
    }
    texts = ((name, record[name]) for name in ("item", "title", "categories", "brand",
                                               "description"))  # fmt: skip
    return next((p for name, value in texts if (p := text_problem(name, value))), record)


def make_interactions(
    users: Sequence[str],
    items: Sequence[str],
    ts: Sequence[int],
    ratings: Sequence[float | None] | None = None,
) -> pd.DataFrame:
    """Build the canonical interactions frame from parallel columns."""
    frame = pd.DataFrame(
        {
            "user": pd.array(users, dtype="string"),
            "item": pd.array(items, dtype="string"),
            "ts": pd.array(ts, dtype="int64"),
            "rating": pd.array(
                [None] * len(users) if ratings is None else ratings, dtype="Float64"
            ),
        }
    )
    return frame


def make_items(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build the canonical items frame from dicts with the keys of :data:`ITEM_COLUMNS`.

    Text fields are cleaned with :func:`clean_text`, prices with :func:`parse_price`;
    ``categories`` must already be a list of paths (lists of strings).
    """
    rows = [
        {
            "item": str(r["item"]),
            "title": clean_text(r.get("title")),
            "categories": [
                [name for name in (clean_text(n) for n in path) if name]
                for path in (r.get("categories") or [])
            ],
            "brand": clean_text(r.get("brand")),
            "price": parse_price(r.get("price")),
            "description": clean_text(r.get("description")),
        }
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=list(ITEM_COLUMNS))
    for column in ("item", "title", "brand", "description"):
        frame[column] = frame[column].astype("string")
    frame["price"] = frame["price"].astype("Float64")
    frame["categories"] = [[p for p in paths if p] for paths in frame["categories"]]
    return frame


def make_user_features(
    users: Sequence[str],
    fields: Mapping[str, Sequence[str | None]],
    numeric_buckets: int,
    max_values: int,
    warnings: list[str],
) -> pd.DataFrame:
    """The canonical users frame: one string column per feature of ``fields`` (values per
    user of ``users``; empty or None: unknown).

    A field whose known values are all numbers (an age) is cut into ``numeric_buckets``
    quantile buckets, named by their ranges (``"18-24"``); a categorical field with more
    than ``max_values`` distinct values (a zip code) identifies users rather than
    describing them and is left out, with a line in ``warnings``.
    """
    frame = pd.DataFrame({"user": pd.array([str(u) for u in users], dtype="string")})
    if frame["user"].duplicated().any():
        repeated = frame.loc[frame["user"].duplicated(), "user"].tolist()
        raise DataError(f"users repeat: {brief(repeated, 200)}")
    for name, raw in fields.items():
        values = pd.Series([v.strip() if v and v.strip() else None for v in raw], dtype=object)
        numbers = pd.to_numeric(values, errors="coerce")
        known = values.notna()
        if known.any() and numbers[known].notna().all():
            frame[name] = _buckets(numbers, numeric_buckets)
        elif values[known].nunique() > max_values:
            warnings.append(f"user field {name!r} has {values[known].nunique()} distinct "
                            f"values (more than {max_values}): left out as a feature")  # fmt: skip
            continue
        else:
            frame[name] = values.astype("string")
    return frame


def _buckets(numbers: pd.Series, n: int) -> pd.Series:
    """Quantile buckets of ``numbers`` named ``"low-high"`` (by the values inside)."""
    known = numbers.dropna()
    bucket = pd.qcut(known, q=n, labels=False, duplicates="drop")
    ranges = known.groupby(bucket).agg(["min", "max"])
    names = {b: f"{_number_text(r['min'])}-{_number_text(r['max'])}" for b, r in ranges.iterrows()}
    out = pd.Series(pd.NA, index=numbers.index, dtype="string")
    out[known.index] = bucket.map(names).astype("string")
    return out


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
