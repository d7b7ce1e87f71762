"""Amazon Review Data 2014 (McAuley et al.): ``reviews_<Category>_5.json[.gz]`` and
``meta_<Category>.json[.gz]``.

Reviews are JSON lines with ``reviewerID``, ``asin``, ``unixReviewTime`` and an optional
``overall`` rating. Meta lines are Python literals (single quotes), not JSON, so each is
parsed with :func:`ast.literal_eval`; ``categories`` is a list of paths from the root.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

from coldrec.data.frames import Frames, item_record
from coldrec.data.sources._amazon import load_amazon
from coldrec.data.sources._base import SourceBase

__all__ = ["Amazon2014Source"]


class Amazon2014Source(SourceBase):
    """Amazon 2014 reviews (5-core or full) with their metadata file."""

    kind: Literal["amazon2014"] = "amazon2014"
    interactions: Path
    """``reviews_<Category>_5.json[.gz]``."""
    items: Path
    """``meta_<Category>.json[.gz]``."""

    def load(self) -> Frames:
        return load_amazon(self.kind, self.interactions, self.items, _meta_record)


def _meta_record(line: str) -> dict[str, Any] | str:
    """The canonical item record of a 2014 meta line, or the reason it is malformed."""
    try:
        raw = ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        return f"not a Python literal ({type(exc).__name__})"
    if not isinstance(raw, dict):
        return "not a dict"
    if raw.get("asin") in (None, ""):
        return "field 'asin' is missing"
    categories = raw.get("categories") or []
    if not isinstance(categories, list) or not all(
        isinstance(path, list) and all(isinstance(n, str) for n in path) for path in categories
    ):
        return "field 'categories' is not a list of lists of strings"
    return item_record(raw, raw["asin"], categories)
