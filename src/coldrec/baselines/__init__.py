"""Baselines every method is measured against: popularity, content kNN (MiniLM), BM25
over item text, and BM25 + dense retrieval.

Import the models from their modules (``coldrec.baselines.popularity``, ``.content``,
``.bm25``, ``.bm25_dense``).
"""

from __future__ import annotations
