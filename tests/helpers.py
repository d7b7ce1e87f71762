"""Small builders shared by the tests."""

from __future__ import annotations

from coldrec.data.frames import Frames, make_interactions, make_items


def frames_of(
    rows: list[tuple], items: list[str] | None = None, order_only: bool = False
) -> Frames:
    """rows: (user, item, ts[, rating]); every item gets a title unless ``items`` says which."""
    users, its, ts = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    ratings = [r[3] if len(r) > 3 else None for r in rows]
    catalogue = items if items is not None else sorted(set(its))
    records = [{"item": i, "title": f"title {i}", "categories": [["Root", i]]} for i in catalogue]
    return Frames(
        make_interactions(users, its, ts, ratings),
        make_items(records),
        "test",
        order_only=order_only,
    )
