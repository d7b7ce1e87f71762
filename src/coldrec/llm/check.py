"""``coldrec llm check``: one small structured request, to see that a backend answers,
which structured-output dialect it speaks, and how long it takes."""

from __future__ import annotations

import time
from typing import Any

from coldrec.llm.backends import LlamaCppBackend, OpenAIBackend
from coldrec.llm.client import LLM, LLMConfig
from coldrec.llm.parse import project
from coldrec.llm.schemas import choice_schema

__all__ = ["check"]

FRUITS = ["apple", "banana", "cherry", "grape", "lemon"]
SCHEMA = choice_schema(FRUITS, 2)
MESSAGES = [
    {"role": "system", "content": "You answer with JSON only."},
    {
        "role": "user",
        "content": "<context>I like red fruit.</context>\nPick exactly 2 fruits from: "
        + ", ".join(FRUITS)
        + '. Answer as {"items": [...]}.',
    },
]


def check(config: LLMConfig) -> dict[str, Any]:
    """Send the request uncached; report backend, dialect, latency, answer, validity."""
    config = config.model_copy(update={"cache": False})
    start = time.perf_counter()
    with LLM(config) as llm:
        loaded = time.perf_counter()
        answer = llm.complete(MESSAGES, SCHEMA, max_tokens=64, stage="check")
        picked = project((answer.parsed or {}).get("items", []), FRUITS)
        return {
            "backend": llm.backend.identity,
            "generates_text": llm.backend.generates_text,
            "dialect": _dialect(llm),
            "load_s": round(loaded - start, 3),
            "latency_s": round(answer.latency_s, 3),
            "answer": answer.text,
            "error": answer.error,
            "valid": answer.ok and len(picked.values) == 2 and picked.dropped == 0,
            "prompt_tokens": answer.usage.prompt_tokens,
            "completion_tokens": answer.usage.completion_tokens,
        }


def _dialect(llm: LLM) -> str:
    backend = llm.backend
    if isinstance(backend, OpenAIBackend):
        return backend.dialect or "none worked"
    if isinstance(backend, LlamaCppBackend):
        return "grammar (json_object + schema, in process)"
    if not backend.generates_text:
        return "schema filled by embedding similarity (no text generation)"
    return "recorded answers"
