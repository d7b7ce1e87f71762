"""SQLite files the caches share: WAL mode, so readers never block the one writer and a
killed process loses nothing it committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

__all__ = ["connect_wal"]


def connect_wal(
    path: Path,
    schema: str,
    check_same_thread: bool = True,
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
) -> sqlite3.Connection:
    """Open (creating if needed) ``path`` in WAL mode and run the ``schema`` statement.
    ``synchronous="FULL"`` also makes each commit survive a power loss (an fsync per
    commit); ``NORMAL`` survives a killed process, which is enough for a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    with db:
        db.execute(schema)
    return db
