"""Ranking: sequential re-rankers (SASRec, GRU4Rec, BERT4Rec) on one trainer, their
losses, negative samplers, item tables (ID or delta), KNN residual transfer, the fusion
with the retriever's scores, and ``coldrec rank``.

Import the parts from their modules (``coldrec.rank.sasrec``, ``coldrec.rank.sequential``,
``coldrec.rank.fusion``, …).
"""

from __future__ import annotations
