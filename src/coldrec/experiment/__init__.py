"""Experiments: ``coldrec evaluate`` (one model, fitted and evaluated) and ``coldrec run``
(a whole experiment as typed, cached, resumable steps)."""

from __future__ import annotations
