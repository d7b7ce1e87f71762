"""Turning what an LLM wrote into values from an allowed set, without ever inventing one.

- :func:`extract_json` finds the JSON in noisy text: the whole text, a fenced code block,
  or the first balanced ``{…}`` / ``[…]`` span; then strict JSON, then relaxed JSON
  (single quotes, trailing commas, Python literals). It returns ``None`` rather than
  raising.
- :func:`project` maps answers onto the allowed set: exact, then case- and
  space-insensitive, then a 1-based index (``3``, ``"3"``, ``"[3]"``, ``"[3] Title"``;
  not a title that starts with a number), then fuzzy (the closest allowed value above
  ``fuzzy`` similarity). Duplicates keep their first place; anything else is dropped
  and counted. The result only ever holds allowed values.
- :func:`project_scored` does the same for scored answers (``[{"item": …, "score": …}]``),
  keeping each value's score rounded and clipped to the allowed range; a row without a
  number for its score is dropped and counted.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz, process

__all__ = ["Projection", "ScoredProjection", "extract_json", "project", "project_scored"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_INDEX = re.compile(r"^\s*(?:\[\s*(\d{1,6})\s*\](?:\s|$|[.:)\-|])|(\d{1,6})\s*(?:[.)]\s*)?$)")
"""A bracketed index (``[3]``, ``[3] Title``) or a bare one (``3``, ``3.``): a title that
merely starts with a number ("2 Pack Hair Ties") is not an index."""
_SPACES = re.compile(r"\s+")
_NOT_FOUND = object()
_LONGEST = 1000
"""Longer answers are never fuzzy-matched (a runaway answer is not an item)."""


def extract_json(text: str) -> Any | None:
    """The first JSON value found in ``text`` (see the module doc), or ``None``."""
    if not isinstance(text, str):
        return None
    candidates = [text, *(m.group(1) for m in _FENCE.finditer(text))]
    candidates += _balanced_spans(text)
    for candidate in candidates:
        value = _loads(candidate.strip())
        if value is not _NOT_FOUND:
            return value
    return None


def _loads(text: str) -> Any:
    if not text or text[0] not in "[{":
        return _NOT_FOUND
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:  # strict=False: small models put raw newlines inside strings
            return json.loads(attempt, strict=False)
        except (ValueError, RecursionError):
            pass
        try:  # single quotes, True/False/None
            value = ast.literal_eval(attempt)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
        if isinstance(value, dict | list):
            return value
    return _NOT_FOUND


def _balanced_spans(text: str, limit: int = 8) -> list[str]:
    """Up to ``limit`` spans that open with ``{`` or ``[`` and close at their match
    (brackets inside strings ignored); an unclosed span runs to the end of the text."""
    spans: list[str] = []
    start = 0
    while len(spans) < limit:
        opening = min((i for i in (text.find("{", start), text.find("[", start)) if i >= 0),
                      default=-1)  # fmt: skip
        if opening < 0:
            break
        end = _match(text, opening)
        spans.append(text[opening:end])
        start = opening + 1
    return spans


def _match(text: str, opening: int) -> int:
    depth, quote, escaped = 0, "", False
    for i in range(opening, len(text)):
        char = text[i]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


@dataclass(frozen=True)
class Projection:
    """Allowed values in answer order (no duplicates), and how many answers were dropped
    (not allowed, or repeated)."""

    values: list[str]
    dropped: int


def project(answers: Any, allowed: Sequence[str], fuzzy: float = 0.9) -> Projection:
    """Map ``answers`` (a value or a list of them; dicts contribute their ``item``,
    ``id``, ``name``, ``title`` or ``category`` field) onto ``allowed`` (see module doc)."""
    return _project(answers, _Allowed(allowed), fuzzy)


class _Allowed:
    """The allowed values with their lookups, built once for all the answers matched
    against them (an item stage matches every row of an answer against ~100 titles)."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = values
        self.exact = set(values)
        self.folds = [_fold(value) for value in values]
        self.folded: dict[str, str] = {}
        for value, fold in zip(values, self.folds, strict=True):
            self.folded.setdefault(fold, value)


def _project(answers: Any, allowed: _Allowed, fuzzy: float) -> Projection:
    values: list[str] = []
    dropped = 0
    for answer in _flatten(answers):
        match = _match_one(answer, allowed, fuzzy)
        if match is None or match in values:
            dropped += 1
        else:
            values.append(match)
    return Projection(values, dropped)


@dataclass(frozen=True)
class ScoredProjection:
    """``(allowed value, score)`` in answer order (no duplicates), and the rows dropped."""

    values: list[tuple[str, int]]
    dropped: int


def project_scored(
    answers: Any, allowed: Sequence[str], low: int = 0, high: int = 5, fuzzy: float = 0.9
) -> ScoredProjection:
    """Map scored rows (dicts with an ``item``-like field and ``score``) onto ``allowed``;
    scores are rounded and clipped to ``[low, high]`` (see the module doc)."""
    rows = answers if isinstance(answers, list | tuple) else [answers]
    lookup = _Allowed(allowed)
    values: list[tuple[str, int]] = []
    dropped = 0
    for row in rows:
        score = _score(row.get("score") if isinstance(row, dict) else None, low, high)
        match = _project([row], lookup, fuzzy).values if score is not None else []
        if score is None or not match or match[0] in (value for value, _ in values):
            dropped += 1
        else:
            values.append((match[0], score))
    return ScoredProjection(values, dropped)


def _score(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int):  # compared as an int: a huge one would overflow a float
        return min(max(value, low), high)
    if not isinstance(value, float) or not math.isfinite(value):
        return None
    return int(min(max(round(value), low), high))


def _flatten(answers: Any) -> Iterable[Any]:
    items = answers if isinstance(answers, list | tuple) else [answers]
    for item in items:
        if isinstance(item, dict):
            yield next((item[k] for k in ("item", "id", "name", "title", "category") if k in item),
                       None)  # fmt: skip
        else:
            yield item


def _match_one(answer: Any, allowed: _Allowed, fuzzy: float) -> str | None:
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, int):  # before float(): a huge int would overflow it
        return _by_index(answer, allowed.values)
    if isinstance(answer, float):
        return _by_index(int(answer), allowed.values) if answer.is_integer() else None
    if not isinstance(answer, str):
        return None
    if answer in allowed.exact:
        return answer
    fold = _fold(answer)
    if fold in allowed.folded:
        return allowed.folded[fold]
    index = _INDEX.match(answer)
    if index:
        return _by_index(int(index.group(1) or index.group(2)), allowed.values)
    return _closest(fold, allowed, fuzzy)


def _by_index(index: int, allowed: Sequence[str]) -> str | None:
    return allowed[index - 1] if 1 <= index <= len(allowed) else None


def _closest(target: str, allowed: _Allowed, threshold: float) -> str | None:
    """The allowed value most similar to the folded answer ``target`` (rapidfuzz's
    normalised Indel similarity, the first among equals), if at least ``threshold``."""
    if not target or len(target) > _LONGEST:
        return None
    found = process.extractOne(target, allowed.folds, scorer=fuzz.ratio,
                               score_cutoff=100 * threshold)  # fmt: skip
    return allowed.values[found[2]] if found else None


def _fold(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()
