"""A judge that answers structured questions by embedding similarity, without a language
model: a named alternative for large offline runs and for the "what does the LLM add?"
ablation. It is never presented as an LLM (``generates_text`` is false).

It reads the question's *context* (the text inside ``<context>…</context>`` in the
messages, where the stages put the user's history or profile; else the last user
message) and fills the JSON schema of the answer:

- an array of ``enum`` strings: the options most similar to the context (cosine of
  all-MiniLM-L6-v2 vectors), as many as ``maxItems`` (else ``minItems``, else 5);
- an array of objects with an ``enum`` string property (the first such): one object per
  chosen option;
  their number properties get the option's cosine mapped from [0, 1] onto the
  property's ``[minimum, maximum]`` (rounded for integers), string properties ``""``;
- a string with ``enum``: the most similar option;
- an array of free strings: the context's most frequent words (3+ letters);
- a free string: the context itself, cut to 300 characters (it restates, never writes);
- numbers: their ``minimum`` (else 0); booleans: false; objects: each property filled.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.errors import LLMError
from coldrec.llm.base import Backend, Generation, Messages, Request, Usage

__all__ = ["EmbeddingConfig", "EmbeddingJudge", "context_of"]

_CONTEXT = re.compile(r"<context>(.*?)</context>", re.DOTALL)
_WORD = re.compile(r"[^\W\d_]{3,}")
_DEFAULT_COUNT = 5


class EmbeddingConfig(BaseModel):
    """The embedding judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["embedding"] = "embedding"
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)

    def build(self) -> EmbeddingJudge:
        return EmbeddingJudge(self)


def context_of(messages: Messages) -> str:
    """The ``<context>`` text of the messages, else the last user message."""
    text = "\n".join(m["content"] for m in messages)
    found = _CONTEXT.findall(text)
    if found:
        return "\n".join(part.strip() for part in found)
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else text


class EmbeddingJudge(Backend):
    """Fills answer schemas by similarity to the context (see the module doc)."""

    name = "embedding"
    generates_text = False

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self.encoder = TextEncoder(config.encoder)

    @property
    def identity(self) -> str:
        return f"embedding:{self.config.encoder.model}"

    def generate(self, request: Request) -> Generation:
        if request.schema is None:
            raise LLMError("the embedding judge answers structured questions only (give a schema)")
        context = context_of(request.messages)
        query = self.encoder.encode([context], progress=False)[0]
        answer = _Filler(self.encoder, query, context).fill(request.schema)
        return Generation(json.dumps(answer, ensure_ascii=False), Usage())


class _Filler:
    def __init__(self, encoder: TextEncoder, query: np.ndarray, context: str) -> None:
        self.encoder, self.query, self.context = encoder, query, context

    def fill(self, schema: dict[str, Any]) -> Any:
        kind = schema.get("type")
        if "enum" in schema:
            return self.ranked(schema["enum"], 1)[0][0] if schema["enum"] else None
        if kind == "object":
            return {name: self.fill(sub) for name, sub in schema.get("properties", {}).items()}
        if kind == "array":
            return self.fill_array(schema)
        if kind == "string":
            return self.context[:300]
        if kind in ("number", "integer"):
            return schema.get("minimum", 0)
        if kind == "boolean":
            return False
        return None

    def fill_array(self, schema: dict[str, Any]) -> list[Any]:
        items = schema.get("items", {})
        count = schema.get("maxItems", schema.get("minItems", _DEFAULT_COUNT))
        if "enum" in items:
            return [option for option, _ in self.ranked(items["enum"], count)]
        choice = next(
            (k for k, v in items.get("properties", {}).items()
             if "enum" in v and v.get("type") == "string"),
            None,
        )  # fmt: skip
        if choice is None:
            return self.keywords(count) if items.get("type") == "string" else []
        properties = items["properties"]
        return [
            {name: option if name == choice else _scaled(sub, cosine)
             for name, sub in properties.items()}
            for option, cosine in self.ranked(properties[choice]["enum"], count)
        ]  # fmt: skip

    def ranked(self, options: list[Any], count: int) -> list[tuple[Any, float]]:
        """The ``count`` options most similar to the context, with their cosines."""
        vectors = self.encoder.encode([str(o) for o in options], progress=False)
        cosine = vectors @ self.query
        order = np.argsort(-cosine, kind="stable")[: max(0, count)]
        return [(options[i], float(cosine[i])) for i in order]

    def keywords(self, count: int) -> list[str]:
        words = Counter(w.casefold() for w in _WORD.findall(self.context))
        return [word for word, _ in words.most_common(count)]


def _scaled(schema: dict[str, Any], cosine: float) -> Any:
    """A property of a chosen option: a number from its cosine, else an empty value."""
    if schema.get("type") in ("number", "integer"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 1)
        value = low + (high - low) * min(max(cosine, 0.0), 1.0)
        return round(value) if schema["type"] == "integer" else value
    return "" if schema.get("type") == "string" else None
