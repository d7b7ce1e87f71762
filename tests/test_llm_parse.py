"""The LLM answer parser: JSON found in noisy text, and projection onto the allowed set
that never invents a value (hand cases, then property-based with hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec.llm.parse import extract_json, project, project_scored

ALLOWED = ["Lip Gloss", "Lipstick", "Nail Polish", "Eye Shadow", "Mascara"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"items": ["a", "b"]}', {"items": ["a", "b"]}),
        ('Sure! Here it is:\n```json\n{"items": ["a"]}\n```\nHope it helps.', {"items": ["a"]}),
        ('The answer is {"x": 1, "y": [2, 3,],} as asked.', {"x": 1, "y": [2, 3]}),
        ("{'x': 'single', 'ok': True, 'none': None}", {"x": "single", "ok": True, "none": None}),
        ("prose [1, 2, 3] prose", [1, 2, 3]),
        ('{"profile": "raw\nnewline"}', {"profile": "raw\nnewline"}),  # small models do this
        ('{"a": "brace } inside", "b": 2}', {"a": "brace } inside", "b": 2}),
        ("no json here", None),
        ('{"unterminated": [1, 2', None),
        ("", None),
    ],
)
def test_extract_json_from_noisy_text(text: str, expected: object) -> None:
    assert extract_json(text) == expected


def test_projection_rules_by_hand() -> None:
    answers = [
        "Lipstick",  # exact
        "lip  GLOSS ",  # case and spaces
        "[3] Nail Polish (the red one)",  # bracketed 1-based id
        4,  # plain index → Eye Shadow
        "Mascarra",  # fuzzy
        "Lipstick",  # duplicate
        "Foundation",  # not allowed
        99,  # index out of range
        {"item": "Mascara", "score": 5},  # duplicate via a dict
        True,
        None,
    ]
    got = project(answers, ALLOWED)
    assert got.values == ["Lipstick", "Lip Gloss", "Nail Polish", "Eye Shadow", "Mascara"]
    assert got.dropped == 6


def test_fuzzy_threshold_keeps_unrelated_answers_out() -> None:
    assert project(["Lipstik"], ALLOWED).values == ["Lipstick"]
    assert project(["Lip"], ALLOWED).values == []
    # "lip" vs "lipstick": 2·3 / (3 + 8) = 0.545; vs "lip gloss": 6 / 12 = 0.5
    assert project(["Lip"], ALLOWED, fuzzy=0.5).values == ["Lipstick"]


ADVERSARIAL = st.one_of(
    st.text(max_size=300),
    st.builds(lambda n: "[" + '"...", ' * n + '"..."]', st.integers(0, 400)),  # runaway array
    st.builds(lambda xs: json.dumps({"items": xs}), st.lists(st.text(max_size=30), max_size=30)),
    st.builds(lambda xs: json.dumps(xs)[: len(json.dumps(xs)) // 2], st.lists(st.text())),
    st.builds(lambda n: f"[{n}] " + "x" * 50, st.integers(-5, 10_000)),
    st.sampled_from(["[[[[[[[[", "{'a': [1, 2,", "```json\n{]```", "[" * 5000, '{"a": ' * 3000]),
)


@settings(max_examples=300, deadline=None)
@given(ADVERSARIAL)
def test_parser_never_raises_and_never_leaves_the_allowed_set(text: str) -> None:
    parsed = extract_json(text)
    for answers in (parsed, text, [text, parsed]):
        got = project(answers, ALLOWED)
        assert set(got.values) <= set(ALLOWED)
        assert len(got.values) == len(set(got.values))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40), st.integers(), st.floats(), st.none(),
            st.dictionaries(st.sampled_from(["item", "id", "x"]), st.text()),
        )
    )
)  # fmt: skip
def test_projection_of_any_values_stays_inside(answers: list) -> None:
    got = project(answers, ALLOWED)
    assert set(got.values) <= set(ALLOWED)
    assert len(got.values) + got.dropped == len(answers)


def test_scored_projection_by_hand() -> None:
    rows = [
        {"item": "Lipstick", "score": 4},
        {"item": "lipstick", "score": 5},  # a repeat: dropped
        {"item": "Blusher", "score": 5},  # not allowed: dropped
        {"item": "[3]", "score": 9},  # index 3 = Nail Polish, score clipped to 5
        {"item": "Mascara", "score": "2.6"},  # a numeric string, rounded
        {"item": "Eye Shadow"},  # no score: dropped
        {"item": "Lip Gloss", "score": True},  # a bool is not a score
    ]
    got = project_scored(rows, ALLOWED)
    assert got.values == [("Lipstick", 4), ("Nail Polish", 5), ("Mascara", 3)]
    assert got.dropped == 4


SCORED_ROW = st.one_of(
    st.dictionaries(
        st.sampled_from(["item", "score", "id", "title"]),
        st.one_of(
            st.text(max_size=30),
            st.integers(),
            st.integers(min_value=10**300),
            st.floats(),
            st.none(),
            st.booleans(),
        ),
    ),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(SCORED_ROW, max_size=30), SCORED_ROW, ADVERSARIAL.map(extract_json)))
def test_scored_projection_never_raises_and_stays_inside(answers: object) -> None:
    got = project_scored(answers, ALLOWED)
    items = [item for item, _ in got.values]
    assert set(items) <= set(ALLOWED) and len(items) == len(set(items))
    assert all(isinstance(score, int) and 0 <= score <= 5 for _, score in got.values)


def test_a_title_starting_with_a_number_is_not_an_index() -> None:
    allowed = ["2 Pack Hair Ties | Beauty > Hair", "Shampoo | Beauty > Hair", "Comb"]
    near_copy = [{"item": "2 pack hair ties | beauty > hair.", "score": 5}]
    assert project_scored(near_copy, allowed).values == [(allowed[0], 5)]  # fuzzy, not #2
    assert project(["2", "[3]", "1.", "40 Carrots"], allowed).values == [allowed[1], "Comb",
                                                                            allowed[0]]  # fmt: skip


def test_huge_numbers_neither_raise_nor_escape_the_allowed_set() -> None:
    assert project([10**400, -(10**400)], ALLOWED).values == []
    assert project_scored([{"item": "Lipstick", "score": 10**400}], ALLOWED).values == [
        ("Lipstick", 5)]  # fmt: skip
    assert project_scored([{"item": 10**400, "score": 1}], ALLOWED).dropped == 1
