"""Helpers every stage shares and no stage owns: atomic file writes and JSON (``io``),
SQLite caches (``sqlite``), the progress bar (``progress``), per-row item lists
(``sparse``) and fingerprints of coldrec's own source (``source``).

Private to coldrec: import the parts from their modules; nothing here is public API.
"""

from __future__ import annotations
