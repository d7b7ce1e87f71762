"""Evaluation: metrics on whole matrices, the full-ranking and candidate protocols with
cold/warm segments, and reports rendered from metrics files."""

from __future__ import annotations

from coldrec.eval.protocol import KS, SEGMENTS, evaluate

__all__ = ["KS", "SEGMENTS", "evaluate"]
