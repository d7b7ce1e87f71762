"""The labelling engine on Ray (``coldrec supervise --engine ray``): the users go through
a Ray Data job whose ``map_batches`` actors each hold the catalogue and an :class:`LLM`
bound to one OpenAI-compatible endpoint (``ray.endpoints``: several ``llama_cpp.server``
replicas on one machine, vLLM servers in a deployment), and label a chunk of users at a
time with the same code as the local engine (:func:`~coldrec.supervision.run.label_chunk`).

What stays as in the local engine: the SQLite answer cache (every actor reads and writes
the one file of ``llm.cache_dir``, committed per answer, so a user whose answers are cached
costs nothing and a killed job, rerun, asks only the missing questions); retries, and the
fallback recorded for a request that still fails or is too long for the server, without
stopping the batch; the accounting (each chunk's call records come back to the driver,
which writes ``llm_calls.jsonl``); the output, written in user order, so that the same
answers give the same edges, triplets and trace.

On a cluster of several machines (``ray.address``: ``auto`` for the cluster this machine
belongs to, or ``ray://head:10001``) every node needs coldrec installed and the cache
folder on storage all nodes share; SQLite over a network file system is only as safe as
that file system's locks, so there a cache per node (the default folder) is the safer
choice: a rerun then asks again what another node answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from coldrec.llm import LLM, CallLog, LLMConfig
from coldrec.supervision.catalogue import Catalogue, Pick

if TYPE_CHECKING:
    from coldrec.supervision.run import Labelled, RayConfig

__all__ = ["RayEngine"]


def _with_endpoint(config: LLMConfig, endpoint: str | None) -> LLMConfig:
    if endpoint is None:
        return config
    return config.model_copy(update={"backend": config.backend.model_copy(
        update={"base_url": endpoint})})  # fmt: skip


@ray.remote(num_cpus=0)
class _Turns:
    """Hands out 0, 1, 2, … : actor ``n`` takes endpoint ``n mod len(endpoints)``."""

    def __init__(self) -> None:
        self.turn = -1

    def next(self) -> int:
        self.turn += 1
        return self.turn


class _Labeller:
    """A Ray Data actor: the catalogue, the stages and an LLM on one endpoint."""

    def __init__(
        self, catalogue: list[Any], llm: LLMConfig, endpoints: tuple[str, ...], turns: Any
    ) -> None:
        from coldrec.supervision.stages import stages_for

        self.catalogue: Catalogue = ray.get(catalogue[0])
        turn = ray.get(turns.next.remote())
        endpoint = endpoints[turn % len(endpoints)] if endpoints else None
        self.llm = LLM(_with_endpoint(llm, endpoint))
        self.llm.preflight()
        self.stages = stages_for(self.catalogue)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from coldrec.supervision.run import backend_of, label_chunk

        start = len(self.llm.calls.records)
        done = label_chunk(self.catalogue, self.stages, self.llm, batch["user"].tolist())
        calls = {"records": self.llm.calls.records[start:], "backend": backend_of(self.llm)}
        return {
            "user": np.array([d.user for d in done], dtype=np.int64),
            "final": np.array([json.dumps([asdict(p) for p in d.final]) for d in done], object),
            "trace": np.array([json.dumps(d.trace, ensure_ascii=False) for d in done], object),
            # a chunk's calls are not any one user's: they ride on its first row
            "calls": np.array([json.dumps(calls)] + ["{}"] * (len(done) - 1), object),
        }


class RayEngine:
    """Labels users on Ray; :meth:`chunks` yields them as their chunks finish, ``calls``
    holds every call's record (written to ``log``)."""

    def __init__(
        self, config: RayConfig, llm: LLMConfig, chunk_size: int, log: Path | None
    ) -> None:
        self.config, self.llm, self.chunk_size = config, llm, chunk_size
        self.calls = CallLog(log, llm.price_per_million)
        self.backend: dict[str, Any] = {"identity": llm.backend.kind, "generates_text": None}
        """What the actors report (known once a chunk is back, or an endpoint answered)."""
        self._started = False

    def __enter__(self) -> RayEngine:
        from coldrec.supervision.run import backend_of

        for endpoint in self.config.endpoints:  # fail fast, before Ray starts
            with LLM(_with_endpoint(self.llm, endpoint)) as llm:
                llm.preflight()
                self.backend = backend_of(llm)
        if not ray.is_initialized():
            ray.init(address=self.config.address or "local", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
            self._started = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            ray.shutdown()

    def chunks(self, catalogue: Catalogue, users: np.ndarray) -> Iterator[list[Labelled]]:
        """The users labelled, a chunk at a time, in the order the chunks finish."""
        from coldrec.supervision.run import Labelled

        if not len(users):
            return
        n_actors = len(self.config.endpoints) or self.config.actors
        turns = _Turns.remote()  # type: ignore[attr-defined]
        # one block per chunk: Ray Data hands an actor whole blocks, so fewer blocks than
        # actors would leave actors idle
        blocks = max(1, -(-len(users) // self.chunk_size))
        rows = [{"user": int(u)} for u in users]
        labelled = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            _Labeller,
            batch_size=self.chunk_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=self.config.cpus_per_actor,
            fn_constructor_kwargs={"catalogue": [ray.put(catalogue)], "llm": self.llm,
                                   "endpoints": self.config.endpoints, "turns": turns},
        )  # fmt: skip
        for batch in labelled.iter_batches(batch_size=None, batch_format="numpy"):
            for calls in map(json.loads, batch["calls"]):
                self.calls.extend(calls.get("records", []))
                self.backend = calls.get("backend", self.backend)
            yield [
                Labelled(int(user), [Pick(**p) for p in json.loads(final)], json.loads(trace))
                for user, final, trace in zip(batch["user"], batch["final"], batch["trace"],
                                              strict=True)
            ]  # fmt: skip
