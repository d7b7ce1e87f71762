"""Data: raw sources → canonical frames → prepared :class:`Dataset`; the taxonomy
(``coldrec.data.taxonomy``) and the retrieved candidates (``coldrec.data.candidates``),
the hand-offs later stages read."""

from __future__ import annotations

from coldrec.data.dataset import Dataset
from coldrec.data.frames import Frames, SkippedLines
from coldrec.data.prepare import PrepareConfig, prepare
from coldrec.data.sources import SourceConfig

__all__ = ["Dataset", "Frames", "PrepareConfig", "SkippedLines", "SourceConfig", "prepare"]
