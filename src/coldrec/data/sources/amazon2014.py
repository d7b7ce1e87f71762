"""Amazon Review Data 2014 (McAuley et al.): ``reviews_<Category>_5.json[.gz]`` and
``meta_<Category>.json[.gz]``.

Reviews are JSON lines with ``reviewerID``, ``asin``, ``unixReviewTime`` and an optional
``overall`` rating. Meta lines are Python literals (single quotes), not JSON, so each is
parsed with :func:`ast.literal_eval`; ``categories`` is a list of paths from the root.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Literal

from coldrec._io import require_file
from coldrec.data.frames import (
    Frames,
    SkippedLines,
    iter_lines,
    make_interactions,
    make_items,
)
from coldrec.data.sources._base import SourceBase

__all__ = ["Amazon2014Source", "read_review_lines"]


class Amazon2014Source(SourceBase):
    """Amazon 2014 reviews (5-core or full) with their metadata file."""

    kind: Literal["amazon2014"] = "amazon2014"
    interactions: Path
    """``reviews_<Category>_5.json[.gz]``."""
    items: Path
    """``meta_<Category>.json[.gz]``."""

    def load(self) -> Frames:
        reviews = require_file(self.interactions, "reviews")
        meta = require_file(self.items, "meta")
        skipped = SkippedLines()
        interactions = read_review_lines(reviews, skipped)
        records = []
        for number, line in iter_lines(meta):
            try:
                raw = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
                skipped.add(meta, number, f"not a Python literal ({type(exc).__name__})")
                continue
            record = _meta_record(raw)
            if isinstance(record, str):
                skipped.add(meta, number, record)
                continue
            records.append(record)
        return Frames(
            interactions=interactions,
            items=make_items(records),
            source=self.kind,
            files=(reviews, meta),
            skipped=skipped,
        )


def read_review_lines(path: Path, skipped: SkippedLines) -> Any:
    """Read Amazon review JSON lines (2014 and 2018 share the fields) into interactions."""
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float | None] = []
    for number, line in iter_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.add(path, number, f"not valid JSON ({exc.msg})")
            continue
        problem = _review_problem(row)
        if problem:
            skipped.add(path, number, problem)
            continue
        users.append(str(row["reviewerID"]))
        items.append(str(row["asin"]))
        times.append(int(row["unixReviewTime"]))
        rating = row.get("overall")
        ratings.append(None if rating is None else float(rating))
    return make_interactions(users, items, times, ratings)


def _review_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in ("reviewerID", "asin", "unixReviewTime"):
        if row.get(key) in (None, ""):
            return f"field '{key}' is missing"
    if not isinstance(row["unixReviewTime"], int | float) or isinstance(
        row["unixReviewTime"], bool
    ):
        return f"field 'unixReviewTime' is not a number: {row['unixReviewTime']!r}"
    rating = row.get("overall")
    if rating is not None and (not isinstance(rating, int | float) or isinstance(rating, bool)):
        return f"field 'overall' is not a number: {rating!r}"
    return None


def _meta_record(raw: Any) -> dict[str, Any] | str:
    """The canonical item record of a 2014 meta dict, or the reason it is malformed."""
    if not isinstance(raw, dict):
        return "not a dict"
    if raw.get("asin") in (None, ""):
        return "field 'asin' is missing"
    categories = raw.get("categories") or []
    if not isinstance(categories, list) or not all(
        isinstance(path, list) and all(isinstance(n, str) for n in path) for path in categories
    ):
        return "field 'categories' is not a list of lists of strings"
    return {
        "item": raw["asin"],
        "title": raw.get("title"),
        "categories": categories,
        "brand": raw.get("brand"),
        "price": raw.get("price"),
        "description": raw.get("description"),
    }
