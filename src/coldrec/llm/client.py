"""The one way coldrec calls an LLM: :class:`LLM` wraps a backend with the answer cache,
retries, JSON parsing, per-call accounting and bounded-concurrency batches.

A call (:meth:`LLM.complete`, or :meth:`LLM.batch` for many):

1. cache lookup by :func:`~coldrec.llm.base.request_key`; a hit costs nothing;
2. otherwise the backend generates; timeouts, 429 and 5xx (:class:`TransientLLMError`)
   are retried with exponential back-off (tenacity: ``backoff_s · 2^attempt``,
   ``retries`` times);
   the answer is committed to the cache at once;
3. with a schema, the JSON is extracted (:func:`~coldrec.llm.parse.extract_json`); if
   there is none, the model is asked once more (the bad answer shown, "JSON only");
4. a call that still has no usable answer returns a :class:`Completion` with ``error``
   set: the caller decides the fallback. Nothing is raised for a bad answer.

Every call appends a ``call`` line to the accounting log (JSONL: stage, cache status,
tokens, latency, error) and every request a ``result`` line (its final error, if any);
:meth:`LLM.totals` sums them per stage.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any, Self

import tenacity
from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldrec._util.io import cache_root
from coldrec._util.progress import progress_bar
from coldrec.config import default_kind
from coldrec.errors import LLMError
from coldrec.llm.backends import BackendConfig, TransformersConfig
from coldrec.llm.base import (
    Backend,
    Completion,
    Generation,
    Messages,
    Request,
    TransientLLMError,
    request_key,
)
from coldrec.llm.cache import AnswerCache
from coldrec.llm.parse import extract_json

__all__ = ["LLM", "CallLog", "LLMConfig", "backend_of"]

_JSON_AGAIN = "That answer was not valid JSON. Answer again with the JSON object only."


class LLMConfig(BaseModel):
    """Which backend, and how calls are cached, retried and run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendConfig = Field(default_factory=TransformersConfig)
    """``transformers`` (default: SmolLM2-135M in process), ``llamacpp`` (the same model by
    llama.cpp: the ``llamacpp`` extra), ``openai``, ``embedding``, ``replay``."""
    cache: bool = True
    cache_dir: Path | None = None
    """Folder of ``llm/answers.sqlite``; ``None``: ``$COLDREC_CACHE_DIR``, else
    ``~/.cache/coldrec``."""
    concurrency: int = Field(1, gt=0)
    """Calls in flight at once in :meth:`LLM.batch` (at least the backend's
    ``calls_in_flight``: twice ``batch_size`` for ``transformers``)."""
    retries: int = Field(4, ge=0)
    """Retries of a timeout, 429 or 5xx."""
    backoff_s: float = Field(1.0, ge=0)
    """First pause before a retry; doubles each time."""
    price_per_million: tuple[float, float] = (0.0, 0.0)
    """Price of a million prompt tokens and of a million completion tokens (any currency):
    :meth:`LLM.totals` turns the tokens into ``cost`` (made now) and ``answer_cost`` (of
    every answer used, cached or not). 0: a local model's cost is its seconds."""

    @model_validator(mode="before")
    @classmethod
    def _transformers_by_default(cls, data: Any) -> Any:
        """A ``backend`` node without ``kind`` configures the default (``transformers``)."""
        return default_kind(data, "backend", "transformers")


class LLM:
    """A backend with cache, retries, parsing and accounting (see the module doc)."""

    def __init__(
        self,
        config: LLMConfig | None = None,
        log: Path | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.config = config or LLMConfig()
        self.backend = backend or self.config.backend.build()
        root = cache_root(self.config.cache_dir)
        self.cache = AnswerCache(root / "llm" / "answers.sqlite") if self.config.cache else None
        self.calls = CallLog(log, self.config.price_per_million)

    def complete(
        self,
        messages: Messages,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stage: str = "",
    ) -> Completion:
        """One answer (see the module doc)."""
        return self.run(Request(messages, schema, temperature, max_tokens, stage))

    def run(self, request: Request) -> Completion:
        """One answer for a :class:`Request`."""
        completion = self._answer(request)
        if request.schema is not None and completion.ok and completion.parsed is None:
            again = [
                *request.messages,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": _JSON_AGAIN},
            ]
            completion = self._answer(replace(request, messages=again))
            if completion.ok and completion.parsed is None:
                completion = replace(completion, error="no JSON in the answer")
        self._record(request, completion, "result")
        return completion

    def preflight(self) -> None:
        """Check that the backend answers before a long run (retried like any call);
        raise :class:`LLMError` naming the backend and why if it does not."""
        try:
            self._retrying()(self.backend.preflight)
        except LLMError as error:
            raise LLMError(f"the LLM backend {self.backend.identity} does not answer: {error} "
                           "(check it with: coldrec llm check)") from None  # fmt: skip

    def first_error(self, stage: str) -> str | None:
        """The error of the first request of ``stage`` the backend did not answer."""
        return self.calls.first_error(stage)

    def batch(
        self, requests: Sequence[Request], concurrency: int | None = None, progress: bool = True
    ) -> list[Completion]:
        """Answers in request order, at most ``concurrency`` calls in flight (or the
        backend's ``calls_in_flight``, if more)."""
        workers = max(concurrency or self.config.concurrency, self.backend.calls_in_flight)
        results: list[Completion | None] = [None] * len(requests)
        with (
            progress_bar(progress) as bar,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            task = bar.add_task(f"LLM ({self.backend.identity})", total=len(requests))
            futures = {pool.submit(self.run, request): i for i, request in enumerate(requests)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.advance(task)
        return [r for r in results if r is not None]

    def described(self) -> dict[str, Any]:
        """The backend's identity and whether it is a language model, as summaries say it
        (the one backend that writes no text is the MiniLM ``embedding`` one)."""
        text = self.backend.generates_text
        return {"identity": self.backend.identity, "llm": text,
                "note": "LLM" if text else "no LLM: MiniLM similarity"}  # fmt: skip

    def totals(self) -> dict[str, dict[str, float]]:
        """Per stage sums of the calls so far (:meth:`CallLog.totals`)."""
        return self.calls.totals()

    def close(self) -> None:
        self.backend.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, request: Request) -> Completion:
        """Cached answer, or a generation with retries; parsed when a schema is given."""
        key = request_key(self.backend.identity, request)
        found = self.cache.get(key) if self.cache is not None else None
        if found is not None:
            completion = self._completion(request, found, 0.0, cached=True)
        else:
            completion = self._generate(request, key)
        self._record(request, completion, "call")
        return completion

    def _generate(self, request: Request, key: str) -> Completion:
        start = time.perf_counter()
        try:
            generation = self._retrying()(self.backend.generate, request)
        except LLMError as error:  # not worth retrying, or still failing after the retries
            elapsed = time.perf_counter() - start
            return Completion("", latency_s=elapsed, error=str(error), answered=False)
        if self.cache is not None:
            self.cache.put(key, generation, {"stage": request.stage})
        return self._completion(request, generation, time.perf_counter() - start)

    def _retrying(self) -> tenacity.Retrying:
        """Retries of timeouts, 429 and 5xx with exponential back-off (a fresh policy per
        call: calls run in threads)."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientLLMError),
            stop=tenacity.stop_after_attempt(self.config.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.config.backoff_s),
            reraise=True,
        )

    @staticmethod
    def _completion(
        request: Request, generation: Generation, latency: float, cached: bool = False
    ) -> Completion:
        parsed = extract_json(generation.text) if request.schema is not None else None
        return Completion(generation.text, parsed, generation.usage, latency, cached)

    def _record(self, request: Request, completion: Completion, kind: str) -> None:
        self.calls.add({
            "kind": kind,
            "stage": request.stage,
            "backend": self.backend.identity,
            "cached": completion.cached,
            "latency_s": round(completion.latency_s, 4),
            "finished": round(time.time(), 4),
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "error": completion.error,
            "answered": completion.answered,
        })  # fmt: skip


def backend_of(llm: LLM) -> dict[str, Any]:
    """The backend as run summaries name it: identity and whether it writes text."""
    return {"identity": llm.backend.identity, "generates_text": llm.backend.generates_text}


class CallLog:
    """The accounting of LLM calls: one record per call and per request, kept in memory
    and appended to ``path`` (JSONL) as it comes; safe across threads. Records made
    elsewhere (a Ray actor's) join with :meth:`extend`."""

    def __init__(self, path: Path | None = None, price_per_million: tuple[float, float] = (0, 0)):
        self.path = path
        self.price_per_million = price_per_million
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, record: dict[str, Any]) -> None:
        self.extend([record])

    def extend(self, records: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            self.records.extend(records)
            if self.path is not None and records:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as log:
                    log.writelines(json.dumps(record) + "\n" for record in records)

    def first_error(self, stage: str) -> str | None:
        """The error of the first request of ``stage`` the backend did not answer."""
        with self._lock:
            failed = (r for r in self.records if r["stage"] == stage and r["kind"] == "result")
            return next((r["error"] for r in failed if not r["answered"]), None)

    def totals(self) -> dict[str, dict[str, float]]:
        """Per stage: requests and failed requests (no usable answer); calls (a request
        may take two: the JSON retry), cached calls, and the prompt tokens, completion
        tokens and seconds of the calls that reached the backend (a cached answer costs
        nothing now): ``latency_s`` adds each call's seconds, ``busy_s`` counts the
        seconds in which at least one of them was in flight (the wall time they took:
        calls in flight together, or batched, count once); ``answer_*_tokens`` count
        every call, cached or not (what the answers cost when they were made); ``cost``
        and ``answer_cost`` price those tokens at ``price_per_million``."""
        out: dict[str, dict[str, float]] = {}
        spans: dict[str, list[tuple[float, float]]] = {}
        with self._lock:
            for record in self.records:
                stage = out.setdefault(record["stage"], dict.fromkeys(
                    ("requests", "failures", "unanswered", "calls", "cached", "prompt_tokens",
                     "completion_tokens", "latency_s", "answer_prompt_tokens",
                     "answer_completion_tokens"), 0))  # fmt: skip
                if record["kind"] == "result":
                    stage["requests"] += 1
                    stage["failures"] += record["error"] is not None
                    stage["unanswered"] += not record["answered"]
                    continue
                stage["calls"] += 1
                stage["answer_prompt_tokens"] += record["prompt_tokens"]
                stage["answer_completion_tokens"] += record["completion_tokens"]
                if record["cached"]:
                    stage["cached"] += 1
                    continue
                stage["prompt_tokens"] += record["prompt_tokens"]
                stage["completion_tokens"] += record["completion_tokens"]
                stage["latency_s"] += record["latency_s"]
                end = record["finished"]
                spans.setdefault(record["stage"], []).append((end - record["latency_s"], end))
        per_prompt, per_completion = (price / 1e6 for price in self.price_per_million)
        for name, stage in out.items():
            stage["busy_s"] = _covered(spans.get(name, []))
            for prefix, cost in (("", "cost"), ("answer_", "answer_cost")):
                stage[cost] = (stage[f"{prefix}prompt_tokens"] * per_prompt
                               + stage[f"{prefix}completion_tokens"] * per_completion)  # fmt: skip
        return out


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the ``(start, end)`` spans."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return round(total, 4)
