"""Real calls to SmolLM2-135M in process through ``transformers`` with the schema enforced
token by token: the same structured calls as the llama.cpp backends, and the converted
model read back from the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from coldrec.llm import LLM, LLMConfig
from coldrec.llm.backends import TransformersConfig
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
