"""Real calls to SmolLM2-135M in process through ``transformers`` with the schema enforced
token by token: the same structured calls as the llama.cpp backends, and the converted
model read back from the cache."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from coldrec.errors import LLMError
from coldrec.llm import LLM, LLMConfig
from coldrec.llm.backends import TransformersConfig
from coldrec.llm.backends.transformers import Batcher, UniqueArray, _by_row
from coldrec.llm.base import Generation, Request
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


def _request(text: str, max_tokens: int = 512) -> Request:
    return Request([{"role": "user", "content": text}], max_tokens=max_tokens)


def test_batcher_answers_each_caller_with_its_own_answer_in_batches_of_at_most_size() -> None:
    first_running, everyone_waiting = threading.Event(), threading.Event()
    batches: list[list[str]] = []

    def generate(requests: list[Request]) -> list[Generation]:
        if not batches:  # hold the first batch until the other callers wait behind it
            first_running.set()
            assert everyone_waiting.wait(5)
        batches.append([r.messages[0]["content"] for r in requests])
        return [Generation(r.messages[0]["content"].upper()) for r in requests]

    batcher = Batcher(generate, size=3)
    texts = [f"call {i}" for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher.answer, _request(texts[0]))
        assert first_running.wait(5)
        rest = []
        for waiting, text in enumerate(texts[1:], start=1):  # queued in this order
            rest.append(pool.submit(batcher.answer, _request(text)))
            while len(batcher._waiting) < waiting:
                time.sleep(0.01)
        everyone_waiting.set()
        answers = [f.result().text for f in [first, *rest]]
    assert answers == [t.upper() for t in texts]
    assert batches == [["call 0"], ["call 1", "call 2", "call 3"], ["call 4", "call 5"]]


def test_batcher_keeps_batches_full_while_twice_as_many_calls_are_in_flight() -> None:
    sizes: list[int] = []

    def generate(requests: list[Request]) -> list[Generation]:
        sizes.append(len(requests))
        time.sleep(0.02)
        return [Generation(r.messages[0]["content"]) for r in requests]

    batcher = Batcher(generate, size=8)
    with ThreadPoolExecutor(16) as pool:
        texts = [str(i) for i in range(100)]
        answers = list(pool.map(lambda t: batcher.answer(_request(t)).text, texts))
    assert answers == texts
    assert sum(sizes) == 100
    # answered callers leave at once instead of queueing for the model (each of them
    # would then run a batch of what little is waiting: mostly batches of 1)
    assert max(sizes) == 8 and len(sizes) <= 16


def test_batcher_gives_every_caller_of_a_failing_batch_the_error() -> None:
    def generate(requests: list[Request]) -> list[Generation]:
        raise LLMError(f"{len(requests)} requests: out of memory")

    batcher = Batcher(generate, size=4)
    with pytest.raises(LLMError, match="1 requests: out of memory"):
        batcher.answer(_request("alone"))
    assert batcher._waiting == []


def test_rows_of_a_batch_follow_their_own_schema_and_end_once_ended() -> None:
    eos, start = 0, 2
    only_seven = lambda _row, _ids: [7]  # noqa: E731
    allowed = _by_row([only_seven, None], start, eos, vocabulary=4)
    assert allowed(0, torch.tensor([5, 0, 3])) == [7]  # an end token in the prompt: padding
    assert allowed(1, torch.tensor([5, 5, 3])) == [0, 1, 2, 3]  # no schema: any token
    assert allowed(0, torch.tensor([5, 5, 3, 0])) == [eos]
    assert allowed(1, torch.tensor([5, 5, 0, 0])) == [eos]


def test_batched_greedy_answers_equal_the_calls_alone_in_float32(tmp_path: Path) -> None:
    requests = [
        Request(ask("Rank the 8 candidates."), _numbers(8, unique=True), max_tokens=120),
        Request(ask("Choose 2 categories."), choice_schema(CATEGORIES, 2), max_tokens=60),
        Request(ask("Say hello in three words."), None, max_tokens=6),
    ]
    alone = TransformersConfig(cache_dir=tmp_path).build()
    answers = [alone.generate(r) for r in requests]
    batched = TransformersConfig(cache_dir=tmp_path, batch_size=3).build()
    generated = batched._generate_batch(requests)  # one batch of the three, left-padded
    assert generated == answers
    assert generated[2].usage.completion_tokens <= 6
    assert sorted(json.loads(generated[0].text)["ranking"]) == list(range(1, 9))


def test_compact_answers_leave_out_whitespace_tokens_under_their_own_identity(
    tmp_path: Path,
) -> None:
    request = Request(ask("Rank the 12 candidates."), _numbers(12, unique=True), max_tokens=200)
    plain = TransformersConfig(cache_dir=tmp_path).build()
    compact = TransformersConfig(cache_dir=tmp_path, compact=True).build()
    assert compact.identity == plain.identity + ":compact"
    newline = compact.tokenizer.encode("\n")[-1]
    assert newline in compact.blank
    assert all(not compact.token_text[t].strip() for t in compact.blank)
    answers = [backend.generate(request) for backend in (plain, compact)]
    for answer in answers:
        assert sorted(json.loads(answer.text)["ranking"]) == list(range(1, 13))
    assert answers[1].usage.completion_tokens < answers[0].usage.completion_tokens
