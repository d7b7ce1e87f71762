"""Ranking: sequential re-rankers (SASRec), their losses and negative samplers.

Import the parts from their modules (``coldrec.rank.sasrec``, ``coldrec.rank.losses``,
``coldrec.rank.negatives``).
"""

from __future__ import annotations
