"""LLM access: one call interface over real backends, with a cache, retries, robust
parsing and accounting (see :mod:`coldrec.llm.client`)."""

from __future__ import annotations

from coldrec.llm.backends import BACKEND_KINDS, BackendConfig
from coldrec.llm.base import Completion, Request, Usage
from coldrec.llm.client import LLM, CallLog, LLMConfig
from coldrec.llm.parse import Projection, extract_json, project

__all__ = [
    "BACKEND_KINDS",
    "LLM",
    "BackendConfig",
    "CallLog",
    "Completion",
    "LLMConfig",
    "Projection",
    "Request",
    "Usage",
    "extract_json",
    "project",
]
