"""Structured calls every real local backend must answer in schema (SmolLM2-135M proves
the plumbing, not the quality: only structure is asserted)."""

from __future__ import annotations

from coldrec.llm import LLM, project
from coldrec.llm.schemas import choice_schema, profile_schema, scored_schema

CATEGORIES = ["Makeup", "Skin Care", "Hair Care", "Fragrance", "Nail Care", "Tools"]
ITEMS = [
    "Red Lipstick",
    "Clear Lip Gloss",
    "Black Mascara",
    "Rose Perfume",
    "Nail File",
    "Argan Hair Oil",
    "Night Cream",
    "Eye Liner",
]


def ask(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are a shopping assistant. Answer with JSON only."},
        {"role": "user", "content": f"<context>Bought: red lipstick, mascara.</context>\n{text}"},
    ]


def assert_picks(answer: dict, key: str, options: list[str], count: int) -> None:
    """As many answers as asked (the grammar), every one allowed; the projection drops
    only repeats (a schema cannot forbid them; the projection removes them)."""
    values = answer[key] if key != "ranked" else [row["item"] for row in answer[key]]
    assert len(values) == count
    projected = project(values, options)
    assert projected.values == list(dict.fromkeys(values))
    assert projected.dropped == count - len(set(values))


def structured_calls(llm: LLM) -> None:
    for count in (1, 3):
        answer = llm.complete(
            ask(f"Choose {count} categories."), choice_schema(CATEGORIES, count), max_tokens=80
        )
        assert answer.ok, answer.error
        assert_picks(answer.parsed, "items", CATEGORIES, count)
    answer = llm.complete(
        ask("Rank the 4 best items with scores 0-5."), scored_schema(ITEMS, 4), max_tokens=160
    )
    assert answer.ok, answer.error
    assert_picks(answer.parsed, "ranked", ITEMS, 4)
    assert all(0 <= row["score"] <= 5 for row in answer.parsed["ranked"])
    profile = llm.complete(
        ask("Describe this shopper."), profile_schema(CATEGORIES), max_tokens=200
    )
    assert profile.ok, profile.error
    assert set(profile.parsed) == {"profile", "keywords", "preferred_categories"}
    assert isinstance(profile.parsed["profile"], str)
    assert set(profile.parsed["preferred_categories"]) <= set(CATEGORIES)
    assert profile.usage.prompt_tokens > 0 and profile.usage.completion_tokens > 0
