"""Real calls to SmolLM2-135M: through a real ``llama_cpp.server`` on 127.0.0.1 (the
``openai`` backend) and in process (the ``llamacpp`` backend). The 135M model proves the
plumbing, not the quality, so only structure is asserted: valid JSON, every value in the
allowed set, counts as asked, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldrec.llm import LLM, LLMConfig, Request, project
from coldrec.llm.backends import LlamaCppConfig, OpenAIConfig
from coldrec.llm.schemas import choice_schema, grammar_safe, profile_schema, scored_schema

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (installed by make test)")

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


def test_server_backend_probes_the_llamacpp_dialect_and_answers_in_schema(
    llama_server: str, tmp_path: Path
) -> None:
    config = LLMConfig(
        backend=OpenAIConfig(base_url=llama_server, model="smollm2"), cache_dir=tmp_path
    )
    with LLM(config) as llm:
        structured_calls(llm)
        assert llm.backend.dialect == "json_object"  # llama.cpp: response_format + schema
        batch = llm.batch([llm_request(i) for i in range(3)], concurrency=2, progress=False)
        assert all(a.ok for a in batch)
        for answer in batch:
            assert_picks(answer.parsed, "items", CATEGORIES, 2)
        assert llm.totals()["batch"]["requests"] == 3


def llm_request(i: int) -> Request:
    text = f"Choose 2 categories for shopper number {i}."
    return Request(ask(text), choice_schema(CATEGORIES, 2), max_tokens=60, stage="batch")


def test_in_process_backend_answers_in_schema(tmp_path: Path) -> None:
    with LLM(LLMConfig(backend=LlamaCppConfig(n_threads=2), cache_dir=tmp_path)) as llm:
        structured_calls(llm)


def test_llm_check_command_reports_the_dialect(llama_server: str) -> None:
    from typer.testing import CliRunner

    from coldrec.cli import app

    args = ["llm", "check", "--backend", "openai", "--base-url", llama_server]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dialect"] == "json_object" and report["valid"]


def test_values_with_quotes_work_once_made_grammar_safe(tmp_path: Path) -> None:
    """llama-cpp-python's grammar converter breaks on an enum value holding ``"`` (the
    in-process model then crashed); the safe form of the value works."""
    options = [grammar_safe(v) for v in ['Tail Comb 8" Black', 'Nail File 10"', "Brush \\ Set"]]
    with LLM(LLMConfig(backend=LlamaCppConfig(n_threads=2), cache_dir=tmp_path)) as llm:
        answer = llm.complete(ask("Choose 2 items."), choice_schema(options, 2), max_tokens=60)
    assert answer.ok, answer.error
    assert_picks(answer.parsed, "items", options, 2)
