"""SQLite files the caches share: WAL mode, so readers never block the one writer and a
killed process loses nothing it committed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["connect_wal"]


def connect_wal(path: Path, schema: str, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open (creating if needed) ``path`` in WAL mode and run the ``schema`` statement."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60, check_same_thread=check_same_thread)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    with db:
        db.execute(schema)
    return db
