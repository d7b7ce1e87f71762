"""The types every LLM backend shares.

A backend turns chat ``messages`` (``[{"role": …, "content": …}]``) and an optional JSON
schema into text. Everything around it (cache, retries, parsing, accounting, batches)
is :class:`~coldrec.llm.client.LLM`'s, so a backend stays small.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from coldrec.errors import LLMError

__all__ = [
    "Backend",
    "Completion",
    "Generation",
    "Messages",
    "Request",
    "TransientLLMError",
    "UnreachableLLMError",
    "Usage",
    "request_key",
]

Messages = list[dict[str, str]]


class TransientLLMError(LLMError):
    """A failure worth retrying after a pause: a timeout, 429, a 5xx, a lost connection."""


class UnreachableLLMError(TransientLLMError):
    """The server did not answer at all (refused or lost connection, timeout)."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Generation:
    """What a backend returns: the text and the tokens it cost."""

    text: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True)
class Request:
    """One call: messages, an optional JSON schema, sampling settings and the pipeline
    stage it belongs to (for accounting only; not part of the cache key)."""

    messages: Messages
    schema: dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    stage: str = ""
    sample: int = 0
    """The k-th answer to the same question (repeats at a temperature above 0): part of
    the cache key when above 0, so a repeat is not answered from the cache."""


@dataclass(frozen=True)
class Completion:
    """An answer: ``text``; ``parsed`` (the JSON found in it, when a schema was given and
    parsing worked); ``error`` (why there is no usable answer, else ``None``)."""

    text: str
    parsed: Any = None
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None
    answered: bool = True
    """False when the backend gave no answer at all (unreachable, refused, failing)."""

    @property
    def ok(self) -> bool:
        return self.error is None

    def field(self, key: str) -> Any:
        """``key`` of the parsed JSON object; ``None`` without a usable object answer."""
        return self.parsed.get(key) if self.ok and isinstance(self.parsed, dict) else None


class Backend(ABC):
    """Generates text for chat messages; ``identity`` names backend and model for the
    cache key, so answers of different models never mix."""

    name: str = "backend"
    generates_text: bool = True
    """False for judges that fill the schema without a language model (``embedding``)."""
    calls_in_flight: int = 1
    """Calls :meth:`~coldrec.llm.client.LLM.batch` keeps in flight at least: a backend that
    batches calls wants the next batch waiting while one runs."""

    @property
    @abstractmethod
    def identity(self) -> str:
        """``"<backend>:<model>"``."""

    @abstractmethod
    def generate(self, request: Request) -> Generation:
        """One answer; raises :class:`TransientLLMError` for failures worth retrying and
        :class:`~coldrec.errors.LLMError` for the rest."""

    def close(self) -> None:  # noqa: B027 (an optional hook: most backends hold nothing)
        """Release the model or the connection."""

    def preflight(self) -> None:  # noqa: B027 (an optional hook: local backends need none)
        """Make sure the backend answers at all before a long run (a server: one tiny
        request); raise :class:`~coldrec.errors.LLMError` if it does not."""


def request_key(identity: str, request: Request) -> str:
    """Cache key: sha256 of backend identity, messages, schema, temperature, max_tokens
    (and the sample number when above 0)."""
    payload = [identity, request.messages, request.schema, request.temperature, request.max_tokens]
    if request.sample:
        payload.append(request.sample)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
