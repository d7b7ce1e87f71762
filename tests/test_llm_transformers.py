"""Real calls to SmolLM2-135M in process through ``transformers`` with the schema enforced
token by token: the same structured calls as the llama.cpp backends, and the converted
model read back from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coldrec.llm import LLM, LLMConfig
from coldrec.llm.backends import TransformersConfig
from coldrec.llm.backends.transformers import UniqueArray
from coldrec.llm.schemas import choice_schema
from tests.llm_calls import CATEGORIES, ask, assert_picks, structured_calls

pytest.importorskip("lmformatenforcer", reason="needs lm-format-enforcer (installed by make test)")


def test_in_process_transformers_answers_in_schema(tmp_path: Path) -> None:
    config = LLMConfig(backend=TransformersConfig(cache_dir=tmp_path), cache_dir=tmp_path)
    with LLM(config) as llm:
        structured_calls(llm)
        assert llm.backend.identity == "transformers:SmolLM2-135M-Instruct.Q4_1.gguf"
        ranking = {"type": "object", "required": ["ranking"], "properties": {"ranking": {
            "type": "array", "items": {"type": "integer", "enum": [1, 2, 3, 4]},
            "minItems": 4, "maxItems": 4}}}  # fmt: skip
        answer = llm.complete(ask("Rank the 4 candidates 1-4."), ranking, max_tokens=40)
        assert answer.ok, answer.error
        assert len(answer.parsed["ranking"]) == 4
        assert set(answer.parsed["ranking"]) <= {1, 2, 3, 4}
    converted = list((tmp_path / "transformers").iterdir())
    assert [p.name.startswith("SmolLM2-135M-Instruct.Q4_1-") for p in converted] == [True]
    again = LLMConfig(backend=TransformersConfig(cache_dir=tmp_path), cache=False)
    with LLM(again) as llm:  # read from the converted copy: the same greedy answer
        answer = llm.complete(ask("Choose 2 categories."), choice_schema(CATEGORIES, 2))
        assert_picks(answer.parsed, "items", CATEGORIES, 2)


def _numbers(n: int, unique: bool) -> dict:
    ranking = {"type": "array", "items": {"type": "integer", "enum": list(range(1, n + 1))},
               "minItems": n, "maxItems": n}  # fmt: skip
    if unique:
        ranking["uniqueItems"] = True
    return {"type": "object", "required": ["ranking"], "properties": {"ranking": ranking}}


def test_unique_items_forbid_repeats_in_the_real_model(tmp_path: Path) -> None:
    config = LLMConfig(backend=TransformersConfig(cache_dir=tmp_path), cache=False)
    told = ask('Answer exactly {"ranking": [1, 1, 1, 1, 1, 1, 1, 1]}')
    with LLM(config) as llm:
        repeated = llm.complete(told, _numbers(8, unique=False), max_tokens=120)
        unique = llm.complete(told, _numbers(8, unique=True), max_tokens=120)
    assert repeated.parsed["ranking"] == [1] * 8  # the schema alone lets it obey
    assert sorted(unique.parsed["ranking"]) == list(range(1, 9))


def test_unique_array_keeps_tokens_that_can_still_end_unused() -> None:
    schema = {"type": "object", "properties": {"ranking": {
        "type": "array", "uniqueItems": True,
        "items": {"type": "string", "enum": ["1", "2", "12"]}}}}  # fmt: skip
    unique = UniqueArray.of(schema)
    assert unique == UniqueArray("ranking", frozenset({"1", "2", "12"}))
    text = {0: '"', 1: "1", 2: '2"', 3: '",', 4: "]", 5: ' "'}
    tokens = list(text)
    assert unique.keep('{"rank', tokens, text) == tokens  # not in the array yet
    # "1" given: reopening "1" can still become "12", closing it at once cannot
    assert unique.keep('{"ranking": ["1", "', tokens, text) == [0, 1, 2, 3, 5]
    # "1" open: only "12" may close it (a value outside the enum, such as "1 ", is the
    # schema enforcer's to forbid, not this check's)
    assert unique.keep('{"ranking": ["1", "1', tokens, text) == [2, 5]
    # every value given: no string may open; the array may close
    assert unique.keep('{"ranking": ["1", "12", "2"', tokens, text) == [1, 4]
    assert unique.keep('{"ranking": ["1", "2"]', tokens, text) == tokens  # closed
    plain = {"type": "object", "properties": {"ranking": {"type": "array", "items": {}}}}
    assert UniqueArray.of(plain) is None


def test_bfloat16_weights_answer_in_schema_under_their_own_identity(tmp_path: Path) -> None:
    config = LLMConfig(backend=TransformersConfig(cache_dir=tmp_path, dtype="bfloat16"),
                       cache=False)  # fmt: skip
    with LLM(config) as llm:
        assert llm.backend.identity == "transformers:SmolLM2-135M-Instruct.Q4_1.gguf:bfloat16"
        assert next(llm.backend.model.parameters()).dtype == torch.bfloat16
        answer = llm.complete(ask("Rank the 8 candidates."), _numbers(8, unique=True),
                              max_tokens=120)  # fmt: skip
    assert sorted(answer.parsed["ranking"]) == list(range(1, 9))
