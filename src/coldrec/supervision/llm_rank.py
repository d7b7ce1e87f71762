"""The LLM as ranker of a user's candidates (the LLMRank protocol of Hou et al., 2024).

The user's history (titles, oldest first; with ratings, the disliked items apart) and the
candidates, numbered ``1 … C`` in the order shown, go to the LLM, which answers a
ranking of those numbers (an ``enum`` of 1 … C, so a constrained backend can only name
shown candidates). Three prompts:

- ``sequential``: the history in order, then "rank the candidates";
- ``recency``: the same, stressing the most recent item;
- ``in_context``: one demonstration first: the history without its last item, with the
  last item as the answer to "what next?" (the history's own item: never a test one).

**Bootstrapping against position bias**: the candidates are shown in ``bootstrap``
seeded shuffles, one call each; each completed ranking gives a candidate ``C − position``
points and the points are summed (Borda), ties broken by the model's order.

An answer is **completed** into a full ranking (:func:`complete_ranking`): unknown and
repeated numbers are dropped, missing candidates appended in the model's order, and each
kind of fault counted (an answer with any fault is partially invalid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from coldrec.llm.base import Request
from coldrec.llm.schemas import array_answer_tokens

__all__ = ["Faults", "PromptKind", "borda", "complete_ranking", "ranking_request"]

PromptKind = Literal["sequential", "recency", "in_context"]

_SYSTEM = ("You are a recommender. You rank candidate products by how likely the shopper "
           "is to want each next, answering with the candidates' numbers only.")  # fmt: skip


@dataclass
class Faults:
    """What was wrong with ranking answers (summed over answers)."""

    answers: int = 0
    unusable: int = 0
    """No ranking at all (no answer, not JSON, no ``ranking`` list)."""
    partial: int = 0
    """A ranking with at least one unknown, repeated or missing candidate."""
    unknown: int = 0
    repeated: int = 0
    missing: int = 0

    def add(self, other: Faults) -> None:
        for count in fields(self):
            setattr(self, count.name, getattr(self, count.name) + getattr(other, count.name))

    @property
    def invalid_rate(self) -> float:
        """Share of answers unusable or partially invalid."""
        return (self.unusable + self.partial) / max(1, self.answers)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "invalid_rate": self.invalid_rate}


def complete_ranking(numbers: Any, shown: Sequence[int]) -> tuple[list[int], Faults]:
    """The candidates (indices in the model's order) ranked by ``numbers`` (the answer's
    ``ranking``: numbers shown, best first), completed: unknown and repeated numbers
    dropped, missing candidates appended in the model's order; and the faults counted.
    ``shown[k]`` is the candidate shown as number ``k + 1``."""
    faults = Faults(answers=1)
    if not isinstance(numbers, list):
        faults.unusable = 1
        numbers = []
    ranked: list[int] = []
    for number in numbers:
        known = isinstance(number, int) and not isinstance(number, bool)
        if not known or not 1 <= number <= len(shown):
            faults.unknown += 1
        elif shown[number - 1] in ranked:
            faults.repeated += 1
        else:
            ranked.append(shown[number - 1])
    missing = sorted(set(shown) - set(ranked))
    faults.missing = len(missing) if not faults.unusable else 0
    faults.partial = int(not faults.unusable and bool(faults.unknown + faults.repeated
                                                      + faults.missing))  # fmt: skip
    return ranked + missing, faults


def borda(rankings: Sequence[Sequence[int]], n: int) -> np.ndarray:
    """Each candidate's summed points over ``rankings`` (full rankings of ``0 … n−1``):
    ``n − position`` per ranking (the top gets ``n``)."""
    points = np.zeros(n)
    for ranking in rankings:
        points[np.asarray(ranking)] += n - np.arange(n)
    return points


def ranking_request(
    kind: PromptKind,
    history: Sequence[str],
    candidates: Sequence[str],
    disliked: Sequence[str] = (),
) -> Request:
    """The ranking prompt of ``kind`` for one user: ``history`` (titles, oldest first,
    from before the test period only), ``candidates`` (titles in the order shown,
    numbered from 1) and, when ratings exist, ``disliked`` titles."""
    c = len(candidates)
    listing = "\n".join(f"{k + 1}. {title}" for k, title in enumerate(candidates))
    parts = []
    if kind == "in_context" and len(history) > 1:
        before = "\n".join(f"- {t}" for t in history[:-1])
        parts.append(f"Example. A shopper bought, in order:\n<context>\n{before}\n</context>\n"
                     f"They bought next: {history[-1]}")  # fmt: skip
    shown = "\n".join(f"- {t}" for t in history)
    parts.append(f"The shopper bought, in order (oldest first):\n<context>\n{shown}\n</context>")
    if disliked:
        parts.append("They disliked:\n<context>\n"
                     + "\n".join(f"- {t}" for t in disliked) + "\n</context>")  # fmt: skip
    if kind == "recency" and history:
        parts.append(f"Note that their most recent purchase is: {history[-1]}")
    parts.append(f"Candidates:\n<context>\n{listing}\n</context>\nRank all {c} candidates by "
                 "how likely the shopper is to buy each next, most likely first. Answer as "
                 'JSON: {"ranking": [candidate numbers]}')  # fmt: skip
    schema = {"type": "object", "required": ["ranking"], "properties": {"ranking": {
        "type": "array", "items": {"type": "integer", "enum": list(range(1, c + 1)),
                                   "minimum": 1, "maximum": c},
        "minItems": c, "maxItems": c, "uniqueItems": True}}}  # fmt: skip
    messages = [{"role": "system", "content": _SYSTEM},
                {"role": "user", "content": "\n\n".join(parts)}]  # fmt: skip
    return Request(messages, schema, max_tokens=array_answer_tokens(c), stage=f"rank_{kind}")
