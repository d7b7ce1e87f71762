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
from coldrec.data.frames import (
    MAX_ABS_TIME,
    Frames,
    SkippedLines,
    item_record,
    make_interactions,
    make_items,
    text_problem,
)
from coldrec.data.sources._base import SourceBase
from coldrec.errors import DataError, brief

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
            problem = _sequence_problem(user, sequence)
            if problem:
                skipped.add(inter_path, None, f"user {brief(user)}: {problem}")
                continue
            users.extend([user] * len(sequence))
            items.extend(str(i) for i in sequence)
            positions.extend(range(len(sequence)))
        records = []
        for item, raw in _object(item_path).items():
            record = _item_record(item, raw)
            if isinstance(record, str):
                skipped.add(item_path, None, f"item {brief(item)}: {record}")
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


def _sequence_problem(user: str, sequence: Any) -> str | None:
    if not isinstance(sequence, list):
        return "value is not a list"
    if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in sequence):
        return "an item is neither a string nor an integer"
    if any(isinstance(i, int) and abs(i) >= MAX_ABS_TIME for i in sequence):
        return "an item id is a number too large to be an id"
    return text_problem("user", user) or text_problem("items", sequence)


def _item_record(item: str, raw: Any) -> dict[str, Any] | str:
    if not isinstance(raw, dict):
        return "value is not an object"
    categories = raw.get("categories") or ""
    if not isinstance(categories, str):
        return "field 'categories' is not a string"
    path = [name.strip() for name in categories.split(",") if name.strip()]
    return item_record(raw, item, [path] if path else [])
