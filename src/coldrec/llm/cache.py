"""The answer cache: one SQLite file in WAL mode, one row per answer, committed as soon
as the answer arrives, so a run killed mid-batch keeps every finished answer and a rerun
asks only for the missing ones."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from coldrec._util.sqlite import connect_wal
from coldrec.llm.base import Generation, Usage

__all__ = ["AnswerCache"]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
    "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, meta TEXT)"
)


class AnswerCache:
    """Answers by request key (:func:`~coldrec.llm.base.request_key`); safe across
    threads; counts hits and misses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db = connect_wal(path, _SCHEMA, check_same_thread=False)

    def get(self, key: str) -> Generation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return Generation(row[0], Usage(row[1], row[2]))

    def put(self, key: str, generation: Generation, meta: dict | None = None) -> None:
        usage = generation.usage
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                (key, generation.text, usage.prompt_tokens, usage.completion_tokens,
                 json.dumps(meta or {})),
            )  # fmt: skip

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
