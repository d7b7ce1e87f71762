"""LC-Rec style JSON (as used by LC-Rec, TIGER and other generative recommenders).

``X.inter.json`` maps each user to the list of items it interacted with, in time order,
and has no timestamps: the position in the list becomes ``ts`` and the frames are marked
``order_only``. ``X.item.json`` maps each item to ``title``, ``description``, ``brand``
and ``categories``, one path written as a comma-separated string. A category name that
itself contains ", " cannot be told apart from two levels in this format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from coldrec._util.io import read_json, require_file
from coldrec.data.frames import Frames, SkippedLines, item_record, make_interactions, make_items
from coldrec.data.sources._base import SourceBase
from coldrec.errors import DataError

__all__ = ["LCRecSource"]


class LCRecSource(SourceBase):
    """``X.inter.json`` (user → ordered items) and ``X.item.json`` (item → metadata)."""

    kind: Literal["lcrec"] = "lcrec"
    interactions: Path
    """``X.inter.json``."""
    items: Path
    """``X.item.json``."""

    def load(self) -> Frames:
        inter_path = require_file(self.interactions, "interactions")
        item_path = require_file(self.items, "items")
        skipped = SkippedLines()
        users: list[str] = []
        items: list[str] = []
        positions: list[int] = []
        for user, sequence in _object(inter_path).items():
            if not isinstance(sequence, list):
                skipped.add(inter_path, None, f"user {user!r}: value is not a list")
                continue
            users.extend([user] * len(sequence))
            items.extend(str(i) for i in sequence)
            positions.extend(range(len(sequence)))
        records = []
        for item, raw in _object(item_path).items():
            record = _item_record(item, raw)
            if isinstance(record, str):
                skipped.add(item_path, None, f"item {item!r}: {record}")
                continue
            records.append(record)
        return Frames(
            interactions=make_interactions(users, items, positions),
            items=make_items(records),
            source=self.kind,
            order_only=True,
            files=(inter_path, item_path),
            skipped=skipped,
        )


def _object(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object at the top level, got {type(data).__name__}"
        )
    return data


def _item_record(item: str, raw: Any) -> dict[str, Any] | str:
    if not isinstance(raw, dict):
        return "value is not an object"
    categories = raw.get("categories") or ""
    if not isinstance(categories, str):
        return "field 'categories' is not a string"
    path = [name.strip() for name in categories.split(",") if name.strip()]
    return item_record(raw, item, [path] if path else [])
