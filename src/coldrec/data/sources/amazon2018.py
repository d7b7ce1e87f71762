"""Amazon Review Data 2018 (Ni et al.): review and meta files, both JSON lines.

Reviews carry ``overall``, ``reviewerID``, ``asin`` and ``unixReviewTime`` (exact
duplicate rows occur in the published files; preparation removes them). Meta lines have
``category`` (one path as a list), ``title``, ``brand``, ``description`` (a list of
paragraphs) and ``price`` as text such as ``"$12.99"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from coldrec._util.io import decode_json
from coldrec.data.frames import Frames, item_record
from coldrec.data.sources._amazon import load_amazon
from coldrec.data.sources._base import SourceBase

__all__ = ["Amazon2018Source"]


class Amazon2018Source(SourceBase):
    """Amazon 2018 reviews (``<Category>.json[.gz]`` or ``<Category>_5.json[.gz]``) and meta."""

    kind: Literal["amazon2018"] = "amazon2018"
    interactions: Path
    """Reviews file, JSON lines."""
    items: Path
    """``meta_<Category>.json[.gz]``, JSON lines."""

    def load(self) -> Frames:
        return load_amazon(self.kind, self.interactions, self.items, _meta_record)


def _meta_record(line: str) -> dict[str, Any] | str:
    """The canonical item record of a 2018 meta line, or the reason it is malformed."""
    try:
        raw = decode_json(line)
    except ValueError as exc:
        return str(exc)
    if not isinstance(raw, dict):
        return "not a JSON object"
    if raw.get("asin") in (None, ""):
        return "field 'asin' is missing"
    path = raw.get("category") or []
    if not isinstance(path, list) or not all(isinstance(n, str) for n in path):
        return "field 'category' is not a list of strings"
    return item_record(raw, raw["asin"], [path] if path else [])
