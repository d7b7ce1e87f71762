"""Data: raw sources → canonical frames → prepared :class:`Dataset`."""

from __future__ import annotations

from coldrec.data.dataset import Dataset
from coldrec.data.frames import Frames, SkippedLines
from coldrec.data.prepare import PrepareConfig, prepare
from coldrec.data.sources import SourceConfig

__all__ = ["Dataset", "Frames", "PrepareConfig", "SkippedLines", "SourceConfig", "prepare"]
