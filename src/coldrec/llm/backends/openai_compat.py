"""Any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama, hosted APIs)
through the ``openai`` client.

Structured output comes in the dialect the server speaks (``structured``):

- ``json_schema``: ``response_format={"type": "json_schema", …}`` (OpenAI, vLLM, Ollama);
- ``json_object``: ``response_format={"type": "json_object", "schema": …}`` (the
  llama.cpp server: it enforces the schema with a grammar);
- ``guided_json``: vLLM's ``extra_body={"guided_json": …}``;
- ``prompt``: the schema is written into the system message and the answer validated;
- ``auto`` (default): the first of these that answers a tiny structured question
  correctly, probed once per backend.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coldrec.errors import LLMError
from coldrec.llm.base import (
    Backend,
    Generation,
    Messages,
    Request,
    TransientLLMError,
    UnreachableLLMError,
    Usage,
)
from coldrec.llm.parse import extract_json

__all__ = ["DIALECTS", "OpenAIBackend", "OpenAIConfig", "with_schema_instruction"]

Dialect = Literal["json_schema", "json_object", "guided_json", "prompt"]
DIALECTS: tuple[Dialect, ...] = ("json_schema", "json_object", "guided_json", "prompt")
_PROBE_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
}
_PROBE = [{"role": "user", "content": 'Is water wet? Reply as JSON: {"answer": "yes" or "no"}'}]


class OpenAIConfig(BaseModel):
    """An OpenAI-compatible server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai"] = "openai"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "local"
    """Model name sent to the server (and part of the cache key)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (local servers need none)."""
    timeout_s: float = Field(120.0, gt=0)
    structured: Literal["auto", "json_schema", "json_object", "guided_json", "prompt"] = "auto"

    def build(self) -> OpenAIBackend:
        return OpenAIBackend(self)


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible server (see the module doc)."""

    name = "openai"

    def __init__(self, config: OpenAIConfig) -> None:
        from openai import OpenAI

        self.config = config
        key = os.environ.get(config.api_key_env) or "not-needed"
        self.client = OpenAI(
            base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=0
        )
        self.dialect: Dialect | None = None if config.structured == "auto" else config.structured

    @property
    def identity(self) -> str:
        return f"openai:{self.config.model}"

    def generate(self, request: Request) -> Generation:
        if request.schema is None:
            return self._create(request.messages, request.temperature, request.max_tokens)
        dialect = self.dialect or self.probe()
        return self._create(
            request.messages, request.temperature, request.max_tokens, request.schema, dialect
        )

    def preflight(self) -> None:
        """One tiny request (the dialect probe when the dialect is still unknown)."""
        if self.dialect is None:
            self.probe()
        else:
            self._create(_PROBE, 0.0, 8)

    def probe(self) -> Dialect:
        """The first dialect whose answer to a tiny structured question is valid JSON in
        the schema; remembered for later calls."""
        from openai import APIStatusError

        for dialect in DIALECTS:
            try:
                answer = self._create(_PROBE, 0.0, 32, _PROBE_SCHEMA, dialect)
            except UnreachableLLMError:
                raise  # no answer at all: no dialect is to blame
            except (APIStatusError, LLMError):
                continue
            parsed = extract_json(answer.text)
            if isinstance(parsed, dict) and parsed.get("answer") in ("yes", "no"):
                self.dialect = dialect
                return dialect
        raise LLMError(f"{self.config.base_url}: no structured-output dialect works")

    def _create(
        self,
        messages: Messages,
        temperature: float,
        max_tokens: int,
        schema: dict[str, Any] | None = None,
        dialect: Dialect = "prompt",
    ) -> Generation:
        import openai

        extra: dict[str, Any] = {}
        if schema is not None:
            extra = _structured(dialect, schema)
            if dialect == "prompt":
                messages = with_schema_instruction(messages, schema)
        try:
            response = self.client.chat.completions.create(
                model=self.config.model,
                messages=messages,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=max_tokens,
                **extra,
            )
        except openai.APIConnectionError as error:  # a timeout is one too
            cause = f" ({error.__cause__})" if error.__cause__ else ""
            raise UnreachableLLMError(f"{self.config.base_url}: {error}{cause}") from error
        except (openai.RateLimitError, openai.InternalServerError) as error:
            raise TransientLLMError(f"{self.config.base_url}: {error}") from error
        except openai.APIStatusError as error:
            if dialect != "prompt" and schema is not None and self.dialect is None:
                raise  # the probe tries the next dialect
            raise LLMError(f"{self.config.base_url}: {error.status_code} {error}") from error
        text = response.choices[0].message.content or ""
        usage = response.usage
        tokens = Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage()
        return Generation(text, tokens)


def _structured(dialect: Dialect, schema: dict[str, Any]) -> dict[str, Any]:
    """The request arguments that ask for ``schema`` in ``dialect``."""
    if dialect == "json_schema":
        spec = {"name": "answer", "schema": schema}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    if dialect == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if dialect == "guided_json":
        return {"extra_body": {"guided_json": schema}}
    return {}


def with_schema_instruction(messages: Messages, schema: dict[str, Any]) -> Messages:
    """``messages`` with a system instruction to answer in JSON matching ``schema``."""
    rule = (
        f"Answer with one JSON value matching this JSON schema, nothing else:\n{json.dumps(schema)}"
    )
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{messages[0]['content']}\n\n{rule}"}, *messages[1:]]
    return [{"role": "system", "content": rule}, *messages]
