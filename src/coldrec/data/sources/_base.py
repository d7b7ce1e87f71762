"""What every source config shares."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from coldrec.data.frames import Frames

__all__ = ["SourceBase"]


class SourceBase(BaseModel, ABC):
    """A source is a typed config whose :meth:`load` returns canonical :class:`Frames`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @abstractmethod
    def load(self) -> Frames:
        """Read the raw data and return the canonical frames."""
