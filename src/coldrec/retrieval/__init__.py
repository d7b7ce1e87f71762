"""Retrieval: the Two-Tower model (ID + content towers, in-batch softmax), FAISS top-M
recall, and ``coldrec retrieve``.

Import the parts from their modules (``coldrec.retrieval.two_tower``,
``coldrec.retrieval.index``, ``coldrec.retrieval.retrieve``).
"""

from __future__ import annotations
