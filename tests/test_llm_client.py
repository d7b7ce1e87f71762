"""The LLM client: cache, retries with back-off, the JSON retry, accounting, batches, a
SIGKILL mid-batch, and the replay and embedding backends."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coldrec.errors import LLMError
from coldrec.llm import LLM, LLMConfig, Request
from coldrec.llm.backends import EmbeddingConfig, ReplayConfig
from coldrec.llm.backends.replay import recorded
from coldrec.llm.base import Backend, Generation, TransientLLMError, Usage
from coldrec.llm.client import _covered

SCHEMA = {"type": "object", "properties": {"items": {"type": "array"}}, "required": ["items"]}


class Scripted(Backend):
    """A test double answering from a list (an exception is raised instead of returned)."""

    name = "scripted"

    def __init__(self, answers: list[str | Exception], delay: float = 0.0) -> None:
        self.answers, self.delay = list(answers), delay
        self.calls: list[Request] = []
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return "scripted:test"

    def generate(self, request: Request) -> Generation:
        with self._lock:
            self.calls.append(request)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            answer = self.answers.pop(0) if self.answers else '{"items": []}'
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1
        if isinstance(answer, Exception):
            raise answer
        return Generation(answer, Usage(10, 3))


def client(tmp_path: Path, backend: Backend, **settings: object) -> LLM:
    config = LLMConfig(cache_dir=tmp_path / "cache", backoff_s=0, **settings)
    return LLM(config, log=tmp_path / "calls.jsonl", backend=backend)


def ask(text: str, stage: str = "s") -> Request:
    return Request([{"role": "user", "content": text}], SCHEMA, stage=stage)


def test_second_call_comes_from_the_cache(tmp_path: Path) -> None:
    backend = Scripted(['{"items": ["a"]}'])
    llm = client(tmp_path, backend)
    first, second = llm.run(ask("q")), llm.run(ask("q"))
    assert first.parsed == second.parsed == {"items": ["a"]}
    assert (first.cached, second.cached) == (False, True)
    assert len(backend.calls) == 1 and (llm.cache.hits, llm.cache.misses) == (1, 1)
    llm.run(Request(ask("q").messages, SCHEMA, temperature=0.7))  # another key
    assert len(backend.calls) == 2


def test_transient_errors_are_retried_then_recorded(tmp_path: Path) -> None:
    backend = Scripted([TransientLLMError("429"), TransientLLMError("503"), '{"items": [1]}'])
    assert client(tmp_path, backend, retries=2).run(ask("q")).parsed == {"items": [1]}
    assert len(backend.calls) == 3
    failing = Scripted([TransientLLMError("timeout")] * 3)
    completion = client(tmp_path, failing, retries=2).run(ask("other"))
    assert not completion.ok and "timeout" in completion.error and len(failing.calls) == 3
    fatal = Scripted([LLMError("400 bad request")])
    assert client(tmp_path, fatal).run(ask("third")).error == "400 bad request"
    assert len(fatal.calls) == 1  # not worth retrying


def test_one_json_retry_then_a_recorded_failure(tmp_path: Path) -> None:
    backend = Scripted(["I think lipstick.", '{"items": ["Lipstick"]}'])
    llm = client(tmp_path, backend)
    completion = llm.run(ask("q"))
    assert completion.parsed == {"items": ["Lipstick"]}
    assert backend.calls[1].messages[-2] == {"role": "assistant", "content": "I think lipstick."}
    stubborn = Scripted(["no", "still no"])
    failed = client(tmp_path, stubborn).run(ask("other"))
    assert failed.error == "no JSON in the answer" and len(stubborn.calls) == 2


def test_accounting_log_and_totals_per_stage(tmp_path: Path) -> None:
    llm = client(tmp_path, Scripted(['{"items": []}', "broken", "broken"]))
    llm.run(ask("a", stage="stage2"))
    llm.run(ask("b", stage="stage3"))
    llm.run(ask("a", stage="stage2"))  # cached
    totals = llm.totals()
    assert totals["stage2"] == {
        "requests": 2, "failures": 0, "unanswered": 0, "calls": 2, "cached": 1,
        "prompt_tokens": 10, "completion_tokens": 3, "latency_s": pytest.approx(
            totals["stage2"]["latency_s"]), "busy_s": pytest.approx(
            totals["stage2"]["latency_s"], abs=1e-3),  # one call: its own seconds
        "answer_prompt_tokens": 20, "answer_completion_tokens": 6,  # the cached call too
        "cost": 0.0, "answer_cost": 0.0,  # no price set
    }  # fmt: skip
    assert totals["stage3"]["failures"] == 1 and totals["stage3"]["calls"] == 2
    assert totals["stage3"]["unanswered"] == 0  # the model answered, only not in JSON
    lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [line["kind"] for line in lines].count("call") == 4
    assert {"stage", "cached", "prompt_tokens", "completion_tokens", "latency_s",
            "finished"} <= set(lines[0])  # fmt: skip


def test_busy_seconds_count_calls_in_flight_together_once(tmp_path: Path) -> None:
    llm = client(tmp_path, Scripted([], delay=0.1))
    llm.batch([ask(f"q{i}") for i in range(8)], concurrency=4, progress=False)
    stage = llm.totals()["s"]
    assert stage["latency_s"] == pytest.approx(0.8, abs=0.1)  # eight calls of 0.1 s
    assert stage["busy_s"] == pytest.approx(0.2, abs=0.1)  # in two waves of four


def test_covered_seconds_merge_overlapping_spans() -> None:
    assert _covered([(5.0, 6.0), (0.0, 2.0), (1.0, 3.0), (1.5, 2.5)]) == 4.0
    assert _covered([]) == 0.0


def test_cost_at_a_price_per_million_tokens(tmp_path: Path) -> None:
    llm = client(tmp_path, Scripted(['{"items": []}']), price_per_million=(2.0, 10.0))
    llm.run(ask("a", stage="s"))
    llm.run(ask("a", stage="s"))  # cached: nothing now, but the answer was paid once
    stage = llm.totals()["s"]
    # 10 prompt and 3 completion tokens per call (Scripted): 10·2/1e6 + 3·10/1e6
    assert stage["cost"] == pytest.approx(50e-6)
    assert stage["answer_cost"] == pytest.approx(100e-6)


def test_batch_keeps_order_and_bounds_concurrency(tmp_path: Path) -> None:
    backend = Scripted([f'{{"items": [{i}]}}' for i in range(12)], delay=0.02)
    requests = [ask(f"q{i}") for i in range(12)]
    answers = client(tmp_path, backend).batch(requests, concurrency=3, progress=False)
    asked = [int(r.messages[0]["content"][1:]) for r in backend.calls]
    by_question = {q: i for i, q in enumerate(asked)}
    assert [a.parsed["items"][0] for a in answers] == [by_question[i] for i in range(12)]
    assert 1 < backend.most_in_flight <= 3


def test_batch_keeps_the_calls_a_batching_backend_wants_in_flight(tmp_path: Path) -> None:
    backend = Scripted([], delay=0.05)
    backend.calls_in_flight = 4  # more than the configured concurrency of 1
    client(tmp_path, backend).batch([ask(f"q{i}") for i in range(8)], progress=False)
    assert 1 < backend.most_in_flight <= 4


def test_replay_backend_matches_exactly_then_by_content(tmp_path: Path) -> None:
    exact = ask("choose categories")
    path = tmp_path / "replay.jsonl"
    lines = [recorded(exact, '{"items": ["Makeup"]}'), {"contains": "profile", "answer": "{}"}]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    llm = LLM(LLMConfig(backend=ReplayConfig(path=path), cache=False))
    assert llm.run(exact).parsed == {"items": ["Makeup"]}
    assert llm.run(ask("write a user profile")).parsed == {}
    missing = llm.run(ask("something unrecorded"))
    assert not missing.ok and "no recorded answer" in missing.error
    path.write_text('{"answer": "x"}\n')
    with pytest.raises(LLMError, match=r"replay.jsonl:1"):
        ReplayConfig(path=path).build()


def test_embedding_judge_fills_the_schema_by_similarity(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {
            "categories": {"type": "array", "maxItems": 2,
                           "items": {"type": "string", "enum": ["Hammer", "Lipstick",
                                                                 "Car Tyre", "Lip Gloss"]}},
            "picks": {"type": "array", "maxItems": 1, "items": {"type": "object", "properties": {
                "item": {"type": "string", "enum": ["Drill", "Mascara"]},
                "score": {"type": "integer", "minimum": 0, "maximum": 5}}}},
        },
    }  # fmt: skip
    messages = [{"role": "user", "content": "<context>red lip colour, glossy lips</context> pick"}]
    llm = LLM(LLMConfig(backend=EmbeddingConfig(), cache=False))
    answer = llm.complete(messages, schema).parsed
    assert set(answer["categories"]) == {"Lipstick", "Lip Gloss"}
    assert answer["picks"][0]["item"] == "Mascara" and 0 <= answer["picks"][0]["score"] <= 5
    assert not llm.backend.generates_text
    assert llm.complete(messages).error  # no schema: nothing to fill


CHILD = """
import sys, time, json
from pathlib import Path
from coldrec.llm import LLM, LLMConfig, Request
from coldrec.llm.base import Backend, Generation

class Slow(Backend):
    @property
    def identity(self): return "slow:test"
    def generate(self, request):
        with open(sys.argv[2], "a") as log:
            log.write(request.messages[0]["content"] + "\\n")
        time.sleep(0.1)
        return Generation(json.dumps({"items": [request.messages[0]["content"]]}))

requests = [Request([{"role": "user", "content": f"q{i}"}], {"type": "object"}) for i in range(30)]
llm = LLM(LLMConfig(cache_dir=Path(sys.argv[1]), concurrency=2), backend=Slow())
answers = llm.batch(requests, progress=False)
print(json.dumps([a.parsed for a in answers]))
"""


def test_sigkill_mid_batch_loses_no_finished_answer_and_repeats_none(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    command = [sys.executable, str(script), str(tmp_path / "cache"), str(calls)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    database = tmp_path / "cache" / "llm" / "answers.sqlite"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if database.exists() and _answers(database) >= 8:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    kept = _answers(database)
    assert 8 <= kept < 30  # killed mid-batch, finished answers on disk
    first_run = calls.read_text().split()
    calls.unlink()
    rerun = subprocess.run(command, capture_output=True, text=True, check=True)
    answers = json.loads(rerun.stdout)
    assert answers == [{"items": [f"q{i}"]} for i in range(30)]
    repeated = calls.read_text().split()
    assert len(repeated) == 30 - kept  # only the missing calls
    finished = set(first_run) - set(repeated)
    assert len(finished) == kept  # every finished answer came from the cache


def _answers(database: Path) -> int:
    with sqlite3.connect(database) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_the_transformers_backend_enforces_integer_enums_as_strings_and_back() -> None:
    from coldrec.llm.backends.transformers import _quoted, _unquoted

    schema = {"type": "object", "properties": {
        "grades": {"type": "array", "items": {"type": "integer", "enum": [0, 1, 2, 3]}},
        "ranked": {"type": "array", "items": {"type": "object", "properties": {
            "item": {"type": "string", "enum": ["7", "b"]},
            "score": {"type": "integer", "enum": [0, 5]}}}}}}  # fmt: skip
    quoted = _quoted(schema)
    assert quoted["properties"]["grades"]["items"] == {"type": "string",
                                                       "enum": ["0", "1", "2", "3"]}  # fmt: skip
    score = quoted["properties"]["ranked"]["items"]["properties"]["score"]
    assert score == {"type": "string", "enum": ["0", "5"]}
    assert schema["properties"]["grades"]["items"]["enum"] == [0, 1, 2, 3]  # not changed
    answer = '{"grades": ["3", "0"], "ranked": [{"item": "7", "score": "5"}]}'
    # integers where the schema asks for them; a string item that looks like one stays
    assert json.loads(_unquoted(answer, schema)) == {
        "grades": [3, 0], "ranked": [{"item": "7", "score": 5}]}  # fmt: skip
    assert _unquoted('{"grades": ["3"', schema) == '{"grades": ["3"'  # cut short: as it was
    tuple_items = {"type": "array", "items": [{"type": "integer", "enum": [1, 2]}]}
    assert _unquoted('["1"]', tuple_items) == '["1"]'  # a schema form it does not rewrite
