"""BM25 over item text, the user's recent items as the query (bm25s)."""

from __future__ import annotations

from typing import Literal, Self

import bm25s
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse

from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.training.scores import scores_at, without_unknown_users

__all__ = ["BM25", "BM25Config"]


class BM25Config(BaseModel):
    """BM25 settings (bm25s's Lucene variant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["bm25"] = "bm25"
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    last_n: int = Field(50, gt=0)
    """The query is the text of the user's last ``last_n`` distinct history items."""
    stopwords: str | None = "en"
    """bm25s stop-word list, or none."""

    def build(self) -> BM25:
        return BM25(self)


class BM25:
    """Each item's text is a document; a user's query is the concatenated text of their
    last ``last_n`` distinct history items, so a term occurring in several of them
    counts that many times (as in ``bm25s.BM25.get_scores``). Scoring every user
    against the catalogue is one sparse product: ``recent × term counts × BM25 weights``.
    """

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self.user_terms = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.term_item = sparse.csr_matrix((0, 0), dtype=np.float32)
        self.known_users = np.zeros(0, dtype=bool)

    def fit(self, dataset: Dataset) -> Self:
        tokens = bm25s.tokenize(
            dataset.item_text, stopwords=self.config.stopwords, show_progress=False
        )
        n_terms = len(tokens.vocab)
        index = bm25s.BM25(k1=self.config.k1, b=self.config.b, method="lucene")
        index.index(tokens, show_progress=False)
        weights = index.scores
        self.term_item = sparse.csr_matrix(
            (weights["data"], weights["indices"], weights["indptr"]),
            shape=(n_terms, dataset.n_items),
        )
        item_terms = _term_counts(tokens.ids, n_terms)
        recent = dataset.recent_items(self.config.last_n, HISTORY_SPLITS)
        self.user_terms = (recent @ item_terms).tocsr()
        self.known_users = recent.getnnz(axis=1) > 0
        return self

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """BM25 of every item (or the candidates) against each user's query; NaN for a
        user without history (no query)."""
        full = (self.user_terms[users] @ self.term_item).toarray().astype(np.float32)
        return scores_at(without_unknown_users(full, self.known_users[users]), items)


def _term_counts(token_ids: list[list[int]], n_terms: int) -> sparse.csr_matrix:
    """Items × terms matrix of term counts."""
    lengths = [len(ids) for ids in token_ids]
    rows = np.repeat(np.arange(len(token_ids)), lengths)
    cols = np.fromiter((t for ids in token_ids for t in ids), dtype=np.int64, count=sum(lengths))
    ones = np.ones(len(cols), dtype=np.float32)
    return sparse.csr_matrix((ones, (rows, cols)), shape=(len(token_ids), n_terms))
