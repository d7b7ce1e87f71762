"""Raw data sources, one module per format, each returning canonical :class:`Frames`.

A source is a typed config (``kind`` picks the format)::

    from coldrec.data.sources import Amazon2014Source
    frames = Amazon2014Source(
        interactions="reviews_Beauty_5.json.gz", items="meta_Beauty.json.gz"
    ).load()
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coldrec.config import kinds
from coldrec.data.sources.amazon2014 import Amazon2014Source
from coldrec.data.sources.amazon2018 import Amazon2018Source
from coldrec.data.sources.lcrec import LCRecSource
from coldrec.data.sources.recbole import RecBoleSource
from coldrec.data.sources.synthetic import SyntheticSource
from coldrec.data.sources.tabular import TabularSource

__all__ = [
    "SOURCE_KINDS",
    "Amazon2014Source",
    "Amazon2018Source",
    "LCRecSource",
    "RecBoleSource",
    "SourceConfig",
    "SyntheticSource",
    "TabularSource",
]

SourceConfig = Annotated[
    Amazon2014Source
    | Amazon2018Source
    | LCRecSource
    | RecBoleSource
    | TabularSource
    | SyntheticSource,
    Field(discriminator="kind"),
]
"""Any source config; the ``kind`` field selects the format."""

SOURCE_KINDS = kinds(SourceConfig)
