"""Where an LLM job's calls run: here (``engine: local``), or on Ray (``engine: ray``:
actors over one or more OpenAI-compatible endpoints). ``coldrec supervise``, ``tag`` and
``augment`` share these settings (:class:`LLMJobConfig`); the answers, the cache and the
accounting are the same on either engine (:mod:`coldrec.llm.on_ray`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coldrec.errors import ConfigError
from coldrec.llm.client import LLM, LLMConfig

__all__ = ["LLMJobConfig", "RayConfig", "open_llm", "require_ray"]


class RayConfig(BaseModel):
    """Where and how wide the Ray engine runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None
    """``None``: start a local Ray runtime for the run (stopped after it); ``auto``: join
    the running cluster this machine belongs to; ``ray://host:port``: a remote one."""
    endpoints: tuple[str, ...] = ()
    """Base URLs of OpenAI-compatible servers (``llm.backend.kind: openai``), one actor
    each; empty: ``actors`` actors, each with ``llm.backend`` as configured."""
    actors: int = Field(1, gt=0)
    """Actors when no endpoints are given."""
    cpus_per_actor: float = Field(0.25, gt=0)
    """Ray CPUs an actor reserves: an actor mostly waits on its server."""
    requests_per_batch: int = Field(16, gt=0)
    """``tag`` and ``augment``: requests an actor answers at a time (``supervise`` hands
    out ``chunk_size`` users instead)."""


class LLMJobConfig(BaseModel):
    """The LLM a job calls, and where the calls run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    llm: LLMConfig = Field(default_factory=LLMConfig)
    engine: Literal["local", "ray"] = "local"
    """``local``: this process; ``ray``: Ray actors (:mod:`coldrec.llm.on_ray`), the same
    outputs for the same answers."""
    ray: RayConfig = Field(default_factory=RayConfig)
    """Where the ``ray`` engine runs and on which LLM endpoints."""

    @model_validator(mode="after")
    def _endpoints_speak_openai(self) -> LLMJobConfig:
        if self.ray.endpoints and self.llm.backend.kind != "openai":
            raise ValueError(f"ray.endpoints are OpenAI-compatible servers: they need "
                             f"llm.backend.kind=openai, not {self.llm.backend.kind}")  # fmt: skip
        return self


def require_ray() -> None:
    """Raise :class:`ConfigError` with the install line when Ray is missing."""
    try:
        import ray  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"engine=ray needs Ray ({error}): pip install 'coldrec[ray]'") from None


def open_llm(job: LLMJobConfig, log: Path | None = None) -> LLM:
    """The job's :class:`LLM`; on the ``ray`` engine one whose batches run on Ray actors."""
    if job.engine == "local":
        return LLM(job.llm, log=log)
    require_ray()
    from coldrec.llm.on_ray import RayLLM

    return RayLLM(job.llm, job.ray, log)
