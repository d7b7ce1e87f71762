"""Models behind one interface, :class:`~coldrec.recommender.Recommender`:
``fit(dataset)`` then ``score(users, items)``.

Each model has a typed config beside it whose ``kind`` names it and whose ``build()``
makes the model; :data:`ModelConfig` is their union, so a YAML ``model:`` node picks one.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coldrec.config import kinds
from coldrec.models.bm25 import BM25, BM25Config
from coldrec.models.content import ItemKNNContent, ItemKNNContentConfig
from coldrec.models.hybrid import Hybrid, HybridConfig
from coldrec.models.popularity import Popularity, PopularityConfig
from coldrec.rank.bert4rec import BERT4RecConfig
from coldrec.rank.gru4rec import GRU4RecConfig
from coldrec.rank.sasrec import SASRecConfig
from coldrec.rank.sequential import SequentialRecommender
from coldrec.recommender import Recommender
from coldrec.retrieval.two_tower import TwoTower, TwoTowerConfig

__all__ = [
    "BM25",
    "MODEL_KINDS",
    "BERT4RecConfig",
    "BM25Config",
    "GRU4RecConfig",
    "Hybrid",
    "HybridConfig",
    "ItemKNNContent",
    "ItemKNNContentConfig",
    "ModelConfig",
    "Popularity",
    "PopularityConfig",
    "Recommender",
    "SASRecConfig",
    "SequentialRecommender",
    "TwoTower",
    "TwoTowerConfig",
]

ModelConfig = Annotated[
    PopularityConfig
    | ItemKNNContentConfig
    | BM25Config
    | HybridConfig
    | TwoTowerConfig
    | SASRecConfig
    | GRU4RecConfig
    | BERT4RecConfig,
    Field(discriminator="kind"),
]
"""Any model config; ``kind`` selects the model."""

MODEL_KINDS = kinds(ModelConfig)
