"""Weak supervision: pseudo labels (edges and triplets) and, later, the LLM stages that
write them. Import the parts from their modules (``coldrec.supervision.labels``)."""

from __future__ import annotations
