"""Retrieval: the Two-Tower model (ID + content towers) and FAISS top-M recall.

Import the parts from their modules (``coldrec.retrieval.two_tower``,
``coldrec.retrieval.index``, ``coldrec.retrieval.retrieve``).
"""

from __future__ import annotations
