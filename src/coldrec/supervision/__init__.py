"""Weak supervision: the LLM stages over the taxonomy (prompts, catalogue, stages) and
the pseudo labels (edges and triplets) they write; ``coldrec supervise``. Import the
parts from their modules (``coldrec.supervision.labels``, ``.stages``, ``.run``)."""

from __future__ import annotations
