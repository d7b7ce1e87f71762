"""Amazon Review Data 2018 (Ni et al.): review and meta files, both JSON lines.

Reviews carry ``overall``, ``reviewerID``, ``asin`` and ``unixReviewTime`` (exact
duplicate rows occur in the published files; preparation removes them). Meta lines have
``category`` (one path as a list), ``title``, ``brand``, ``description`` (a list of
paragraphs) and ``price`` as text such as ``"$12.99"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from coldrec._io import require_file
from coldrec.data.frames import Frames, SkippedLines, iter_lines, make_items
from coldrec.data.sources._base import SourceBase
from coldrec.data.sources.amazon2014 import read_review_lines

__all__ = ["Amazon2018Source"]


class Amazon2018Source(SourceBase):
    """Amazon 2018 reviews (``<Category>.json[.gz]`` or ``<Category>_5.json[.gz]``) and meta."""

    kind: Literal["amazon2018"] = "amazon2018"
    interactions: Path
    """Reviews file, JSON lines."""
    items: Path
    """``meta_<Category>.json[.gz]``, JSON lines."""

    def load(self) -> Frames:
        reviews = require_file(self.interactions, "reviews")
        meta = require_file(self.items, "meta")
        skipped = SkippedLines()
        interactions = read_review_lines(reviews, skipped)
        records = []
        for number, line in iter_lines(meta):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.add(meta, number, f"not valid JSON ({exc.msg})")
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


def _meta_record(raw: Any) -> dict[str, Any] | str:
    """The canonical item record of a 2018 meta object, or the reason it is malformed."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    if raw.get("asin") in (None, ""):
        return "field 'asin' is missing"
    path = raw.get("category") or []
    if not isinstance(path, list) or not all(isinstance(n, str) for n in path):
        return "field 'category' is not a list of strings"
    return {
        "item": raw["asin"],
        "title": raw.get("title"),
        "categories": [path] if path else [],
        "brand": raw.get("brand"),
        "price": raw.get("price"),
        "description": raw.get("description"),
    }
