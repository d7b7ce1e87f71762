"""What the Amazon 2014 and 2018 loaders share: the review lines and the load loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from coldrec._util.io import decode_json, require_file
from coldrec.data.frames import (
    Frames,
    SkippedLines,
    iter_lines,
    make_interactions,
    make_items,
    number_problem,
    text_problem,
)

__all__ = ["MetaParser", "load_amazon", "read_reviews"]

MetaParser = Callable[[str], dict[str, Any] | str]
"""Turns one meta line into a canonical item record, or returns why it is malformed."""


def load_amazon(kind: str, reviews: Path, meta: Path, parse_meta: MetaParser) -> Frames:
    """Read a review file and a meta file, skipping and counting malformed lines."""
    reviews = require_file(reviews, "reviews")
    meta = require_file(meta, "meta")
    skipped = SkippedLines()
    interactions = read_reviews(reviews, skipped)
    records = []
    for number, line in iter_lines(meta, skipped):
        record = parse_meta(line)
        if isinstance(record, str):
            skipped.add(meta, number, record)
        else:
            records.append(record)
    return Frames(
        interactions=interactions,
        items=make_items(records),
        source=kind,
        files=(reviews, meta),
        skipped=skipped,
    )


def read_reviews(path: Path, skipped: SkippedLines) -> pd.DataFrame:
    """Review JSON lines (``reviewerID``, ``asin``, ``unixReviewTime``, optional
    ``overall``) as canonical interactions."""
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float | None] = []
    for number, line in iter_lines(path, skipped):
        try:
            row = decode_json(line)
        except ValueError as exc:
            skipped.add(path, number, str(exc))
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
    rating = row.get("overall")
    return (
        text_problem("reviewerID", row["reviewerID"])
        or text_problem("asin", row["asin"])
        or number_problem("unixReviewTime", row["unixReviewTime"])
        or (None if rating is None else number_problem("overall", rating, limit=1e6))
    )
