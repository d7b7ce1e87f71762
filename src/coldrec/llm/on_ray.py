"""LLM calls on Ray: the pieces every Ray job of coldrec shares (the runtime, an actor's
LLM on its endpoint) and :class:`RayLLM`, an :class:`LLM` whose :meth:`~RayLLM.batch`
is a Ray Data job (``coldrec tag`` and ``coldrec augment`` with ``engine: ray``).

An actor holds an :class:`LLM` bound to one OpenAI-compatible endpoint (``ray.endpoints``:
several ``llama_cpp.server`` replicas on one machine, vLLM servers in a deployment; actor
``n`` takes endpoint ``n mod len(endpoints)``) and answers its requests exactly as the
local engine would: the same SQLite answer cache (every actor reads and writes the one
file of ``llm.cache_dir``, committed per answer, so a cached question costs nothing and a
killed job, rerun, asks only the missing ones), retries, and a failed request returned
with its error for the caller's fallback. Each batch's call records come back to the
driver's :class:`~coldrec.llm.client.CallLog`.

On a cluster of several machines (``ray.address``: ``auto`` for the cluster this machine
belongs to, or ``ray://head:10001``) every node needs coldrec installed and the cache
folder on storage all nodes share; SQLite over a network file system is only as safe as
that file system's locks, so there a cache per node (the default folder) is the safer
choice: a rerun then asks again what another node answered.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray

from coldrec._util.progress import progress_bar
from coldrec.errors import LLMError
from coldrec.llm.base import Completion, Request
from coldrec.llm.client import LLM, LLMConfig, backend_of
from coldrec.llm.engines import RayConfig

__all__ = ["RayLLM", "RayRuntime", "Turns", "endpoint_llm", "on_actors", "preflight_endpoints"]


def with_endpoint(config: LLMConfig, endpoint: str | None) -> LLMConfig:
    """``config`` with its (OpenAI-compatible) backend's base URL set to ``endpoint``."""
    if endpoint is None:
        return config
    return config.model_copy(update={"backend": config.backend.model_copy(
        update={"base_url": endpoint})})  # fmt: skip


@ray.remote(num_cpus=0)
class Turns:
    """Hands out 0, 1, 2, … : actor ``n`` takes endpoint ``n mod len(endpoints)``."""

    def __init__(self) -> None:
        self.turn = -1

    def next(self) -> int:
        self.turn += 1
        return self.turn


def endpoint_llm(config: LLMConfig, endpoints: Sequence[str], turns: Any) -> LLM:
    """An actor's LLM: on the endpoint of its turn (``turns``: a :class:`Turns` actor),
    checked to answer."""
    turn = ray.get(turns.next.remote())
    llm = LLM(with_endpoint(config, endpoints[turn % len(endpoints)] if endpoints else None))
    llm.preflight()
    return llm


def preflight_endpoints(config: LLMConfig, endpoints: Sequence[str]) -> dict[str, Any] | None:
    """Check that every endpoint answers, before Ray starts; the backend's description
    (``None`` without endpoints)."""
    described = None
    for endpoint in endpoints:
        with LLM(with_endpoint(config, endpoint)) as llm:
            llm.preflight()
            described = backend_of(llm)
    return described


class RayRuntime:
    """Ray for a job: joined at ``address``, or a local runtime started (and stopped
    after) when none is running."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._started = False

    def start(self) -> None:
        """Join or start Ray (once; later calls do nothing)."""
        if not ray.is_initialized():
            ray.init(address=self.address or "local", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
            self._started = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # coldrec shows its own progress

    def stop(self) -> None:
        """Stop the runtime if :meth:`start` started it."""
        if self._started:
            ray.shutdown()
            self._started = False


def on_actors(
    rows: list[dict[str, Any]], actor: type, per_batch: int, config: RayConfig, **arguments: Any
) -> ray.data.Dataset:
    """``rows`` through a pool of ``actor`` (a Ray Data callable class, built with
    ``arguments``, the ``endpoints`` and a :class:`Turns`), ``per_batch`` rows at a time:
    one actor per endpoint, or ``config.actors``."""
    # one block per batch: Ray Data hands an actor whole blocks, so fewer blocks than
    # actors would leave actors idle
    blocks = max(1, -(-len(rows) // per_batch))
    return ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        actor,
        batch_size=per_batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=len(config.endpoints) or config.actors),
        num_cpus=config.cpus_per_actor,
        fn_constructor_kwargs={**arguments, "endpoints": config.endpoints,
                               "turns": Turns.remote()},  # type: ignore[attr-defined]
    )  # fmt: skip


class _Answerer:
    """A Ray Data actor: an LLM on one endpoint answering a batch of requests."""

    def __init__(self, llm: LLMConfig, endpoints: tuple[str, ...], turns: Any) -> None:
        self.llm = endpoint_llm(llm, endpoints, turns)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        requests = [pickle.loads(r) for r in batch["request"]]
        start = len(self.llm.calls.records)
        answers = self.llm.batch(requests, progress=False)
        records = self.llm.calls.records[start:]
        return {
            "index": batch["index"],
            "answer": np.array([pickle.dumps(a) for a in answers], dtype=object),
            # a batch's calls are not any one request's: they ride on its first row
            "calls": np.array([json.dumps(records)] + ["[]"] * (len(answers) - 1), object),
        }


class RayLLM(LLM):
    """An :class:`LLM` whose :meth:`batch` runs on Ray actors (see the module doc); a
    single call (:meth:`complete`) is answered here, through the same cache."""

    def __init__(self, config: LLMConfig, ray_config: RayConfig, log: Path | None = None):
        super().__init__(config, log)
        self.ray_config = ray_config
        self._runtime = RayRuntime(ray_config.address)

    def preflight(self) -> None:
        """Every endpoint answers (or, without endpoints, this backend)."""
        if self.ray_config.endpoints:
            preflight_endpoints(self.config, self.ray_config.endpoints)
        else:
            super().preflight()

    def batch(
        self, requests: Sequence[Request], concurrency: int | None = None, progress: bool = True
    ) -> list[Completion]:
        """Answers in request order; each actor keeps ``concurrency`` (default
        ``llm.concurrency``) calls in flight."""
        if not requests:
            return []
        self._runtime.start()  # stopped by close()
        workers = concurrency or self.config.concurrency
        config = self.config.model_copy(update={"concurrency": workers})
        rows = [{"index": i, "request": pickle.dumps(r)} for i, r in enumerate(requests)]
        answered = on_actors(rows, _Answerer, self.ray_config.requests_per_batch,
                             self.ray_config, llm=config)  # fmt: skip
        answers: list[Completion | None] = [None] * len(requests)
        with progress_bar(progress) as bar:
            task = bar.add_task(f"LLM on Ray ({self.backend.identity})", total=len(requests))
            for batch in answered.iter_batches(batch_size=None, batch_format="numpy"):
                for calls in batch["calls"]:
                    self.calls.extend(json.loads(calls))
                for index, answer in zip(batch["index"], batch["answer"], strict=True):
                    answers[int(index)] = pickle.loads(answer)
                bar.advance(task, len(batch["index"]))
        missing = [i for i, a in enumerate(answers) if a is None]
        if missing:  # Ray Data returns every row; a gap would be a bug, not an answer
            raise LLMError(f"the Ray job returned no answer for requests {missing[:10]}")
        return answers  # type: ignore[return-value]

    def close(self) -> None:
        super().close()
        self._runtime.stop()
