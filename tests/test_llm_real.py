"""Real calls to SmolLM2-135M: through a real ``llama_cpp.server`` on 127.0.0.1 (the
``openai`` backend) and in process (the ``llamacpp`` backend). The 135M model proves the
plumbing, not the quality, so only structure is asserted: valid JSON, every value in the
allowed set, counts as asked, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coldrec.llm import LLM, LLMConfig, Request
from coldrec.llm.backends import LlamaCppConfig, OpenAIConfig
from coldrec.llm.schemas import choice_schema, grammar_safe
from tests.llm_calls import CATEGORIES, ask, assert_picks, structured_calls

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (installed by make test)")


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
