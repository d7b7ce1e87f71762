"""JSON schemas of the answers coldrec asks for, shared by the stages, the check and
the benchmarks.

Bounds are written as ``enum`` where a grammar must enforce them: the llama.cpp server
turns ``enum`` into a grammar but ignores an integer's ``minimum``/``maximum`` (measured:
SmolLM2 answered a 0–5 score with 10), so scores are an ``enum`` of the allowed integers
(``minimum``/``maximum`` kept for readers such as the embedding judge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "SCORES",
    "array_answer_tokens",
    "choice_schema",
    "grades_of",
    "grades_schema",
    "grammar_safe",
    "profile_schema",
    "scored_schema",
]

SCORES = tuple(range(6))
"""The scores 0–5 an LLM gives an item."""


def array_answer_tokens(n: int) -> int:
    """``max_tokens`` enough for a JSON object holding an array of ``n`` short values
    (numbers, letters) written one to a line: a constrained decoder may quote integer
    enums (lm-format-enforcer's are strings, turned back), so an item can take
    ``    "12",`` and a newline, 10 characters, and a token is at least one (4 tokens an
    item cut SmolLM2's 20-candidate rankings short)."""
    return 10 * n + 30


def grammar_safe(text: str) -> str:
    """``text`` as an allowed value a grammar can hold: llama-cpp-python's schema-to-grammar
    converter escapes a ``"`` but not the backslash JSON puts before it, so an ``enum``
    value with ``"`` (``Comb 8"``) or ``\\`` breaks the grammar (and the in-process model
    crashed on it). ``"`` becomes ``''`` and ``\\`` becomes ``/``."""
    return text.replace("\\", "/").replace('"', "''")


def choice_schema(options: Sequence[str], count: int, key: str = "items") -> dict[str, Any]:
    """``{key: [...]}`` holding exactly ``count`` values of ``options``."""
    return {
        "type": "object",
        "properties": {
            key: {
                "type": "array",
                "items": {"type": "string", "enum": list(options)},
                "minItems": count,
                "maxItems": count,
            }
        },
        "required": [key],
    }


def grades_schema(key: str, count: int, top: int) -> dict[str, Any]:
    """``{key: [...]}`` holding exactly ``count`` integer grades 0–``top``, the bound an
    ``enum`` (grammars and lm-format-enforcer ignore ``minimum``/``maximum``: SmolLM2
    answered a 0–10 score list with the candidates' numbers 1 … 20)."""
    array = {"type": "array", "items": _grade(top), "minItems": count, "maxItems": count}
    return {"type": "object", "required": [key], "properties": {key: array}}


def grades_of(value: Any, count: int, top: int) -> list[int] | None:
    """``value`` if it is a list of exactly ``count`` integers 0–``top`` (a boolean is no
    grade), else ``None``."""
    if not isinstance(value, list) or len(value) != count:
        return None
    fits = all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g <= top for g in value)
    return value if fits else None


def scored_schema(
    options: Sequence[str], count: int, key: str = "ranked", min_count: int | None = None
) -> dict[str, Any]:
    """``{key: [{"item": option, "score": 0–5}, ...]}`` with ``min_count`` (default
    ``count``) to ``count`` entries."""
    item = {
        "type": "object",
        "properties": {
            "item": {"type": "string", "enum": list(options)},
            "score": _grade(SCORES[-1]),
        },
        "required": ["item", "score"],
    }
    array = {
        "type": "array",
        "items": item,
        "minItems": count if min_count is None else min_count,
        "maxItems": count,
    }
    return {"type": "object", "properties": {key: array}, "required": [key]}


def profile_schema(categories: Sequence[str]) -> dict[str, Any]:
    """Stage 1's answer: a short ``profile``, up to 5 ``keywords`` and up to 3
    ``preferred_categories`` of ``categories``."""
    preferred = {"type": "array", "items": {"type": "string", "enum": list(categories)}}
    return {
        "type": "object",
        "properties": {
            "profile": {"type": "string", "maxLength": 300},
            "keywords": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
            "preferred_categories": {**preferred, "maxItems": 3},
        },
        "required": ["profile", "keywords", "preferred_categories"],
    }


def _grade(top: int) -> dict[str, Any]:
    """An integer 0–``top`` as a grammar enforces it: an ``enum`` (``minimum`` and
    ``maximum`` kept for readers such as the embedding judge)."""
    return {"type": "integer", "enum": list(range(top + 1)), "minimum": 0, "maximum": top}
