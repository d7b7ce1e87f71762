"""The server's durable record of writes: every accepted item and event, in order.

One SQLite file in WAL mode beside the run (``<run>/serve/writes.sqlite``), one row per
write, committed (and synced to disk) before the write is acknowledged: a killed server,
or a machine that loses power, loses nothing it answered, and a restarted (or another
worker's) server replays the rows it has not applied yet, each once, in their order.
The run's trained artifacts are never touched.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coldrec._util.sqlite import connect_wal

__all__ = ["WriteLog"]

_SCHEMA = """CREATE TABLE IF NOT EXISTS writes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, body TEXT NOT NULL)"""


class WriteLog:
    """Append-only writes (``kind``: ``item``, ``delete`` or ``event``; ``body``: JSON)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection = connect_wal(
            path, _SCHEMA, check_same_thread=False, synchronous="FULL"
        )
        self._lock = threading.Lock()

    def append(self, kind: str, bodies: list[dict[str, Any]]) -> int:
        """Commit ``bodies`` as writes of ``kind`` (one transaction); the last sequence number."""
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO writes (kind, body) VALUES (?, ?)",
                [(kind, json.dumps(body, ensure_ascii=False)) for body in bodies],
            )
            return int(self._db.execute("SELECT MAX(seq) FROM writes").fetchone()[0] or 0)

    def since(self, seq: int) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """The writes after sequence number ``seq``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, kind, body FROM writes WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        for number, kind, body in rows:
            yield int(number), kind, json.loads(body)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM writes").fetchone()[0])

    def close(self) -> None:
        self._db.close()
