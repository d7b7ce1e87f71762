"""The labelling engine on Ray (``coldrec supervise --engine ray``): the users go through
a Ray Data job whose ``map_batches`` actors each hold the catalogue and an :class:`LLM`
bound to one OpenAI-compatible endpoint, and label a chunk of users at a time with the
same code as the local engine (:func:`~coldrec.supervision.run.label_chunk`).

What stays as in the local engine is what :mod:`coldrec.llm.on_ray` keeps for every Ray
job (the answer cache, so a killed job, rerun, asks only the missing questions; retries
and recorded fallbacks; the accounting, each chunk's call records joining the driver's
``llm_calls.jsonl``), and the output, written in user order, so that the same answers
give the same edges, triplets and trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray

from coldrec.llm import CallLog, LLMConfig
from coldrec.llm.client import backend_of
from coldrec.llm.on_ray import RayRuntime, endpoint_llm, on_actors, preflight_endpoints
from coldrec.supervision.catalogue import Catalogue, Pick

if TYPE_CHECKING:
    from coldrec.llm.engines import RayConfig
    from coldrec.supervision.run import Labelled

__all__ = ["RayEngine"]


class _Labeller:
    """A Ray Data actor: the catalogue, the stages and an LLM on one endpoint."""

    def __init__(
        self, catalogue: list[Any], llm: LLMConfig, endpoints: tuple[str, ...], turns: Any
    ) -> None:
        from coldrec.supervision.stages import stages_for

        self.catalogue: Catalogue = ray.get(catalogue[0])
        self.llm = endpoint_llm(llm, endpoints, turns)
        self.stages = stages_for(self.catalogue)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from coldrec.supervision.run import label_chunk

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
        self._runtime = RayRuntime(config.address)

    def __enter__(self) -> RayEngine:
        # fail fast, before Ray starts
        self.backend = preflight_endpoints(self.llm, self.config.endpoints) or self.backend
        self._runtime.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._runtime.stop()

    def chunks(self, catalogue: Catalogue, users: np.ndarray) -> Iterator[list[Labelled]]:
        """The users labelled, a chunk at a time, in the order the chunks finish."""
        from coldrec.supervision.run import Labelled

        if not len(users):
            return
        rows = [{"user": int(u)} for u in users]
        labelled = on_actors(rows, _Labeller, self.chunk_size, self.config,
                             catalogue=[ray.put(catalogue)], llm=self.llm)  # fmt: skip
        for batch in labelled.iter_batches(batch_size=None, batch_format="numpy"):
            for calls in map(json.loads, batch["calls"]):
                self.calls.extend(calls.get("records", []))
                self.backend = calls.get("backend", self.backend)
            yield [
                Labelled(int(user), [Pick(**p) for p in json.loads(final)], json.loads(trace))
                for user, final, trace in zip(batch["user"], batch["final"], batch["trace"],
                                              strict=True)
            ]  # fmt: skip
