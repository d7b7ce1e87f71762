"""Answers replayed from a JSONL file of recorded prompts, for tests.

Each line is ``{"messages": [...], "schema": {...} | null, "answer": "..."}`` (matches
that exact request) or ``{"contains": "text", "answer": "..."}`` (matches any request
whose messages contain the text). Exact lines are tried first, then ``contains`` lines
in file order. A request that matches nothing is an error, never an invented answer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from coldrec._util.io import read_json_lines
from coldrec.errors import LLMError
from coldrec.llm.base import Backend, Generation, Request, Usage

__all__ = ["ReplayBackend", "ReplayConfig", "recorded"]


class ReplayConfig(BaseModel):
    """Recorded answers (a test double: never a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["replay"] = "replay"
    path: Path

    def build(self) -> ReplayBackend:
        return ReplayBackend(self)


def recorded(request: Request, answer: str) -> dict[str, Any]:
    """The exact-match line that replays ``answer`` for ``request``."""
    return {"messages": request.messages, "schema": request.schema, "answer": answer}


class ReplayBackend(Backend):
    """Answers from the file (see the module doc)."""

    name = "replay"

    def __init__(self, config: ReplayConfig) -> None:
        self.path = config.path
        self.exact: dict[str, str] = {}
        self.contains: list[tuple[str, str]] = []
        for number, line in read_json_lines(config.path):
            if not isinstance(line, dict) or not isinstance(line.get("answer"), str):
                raise LLMError(f"{config.path}:{number}: a line needs a string 'answer'")
            if "contains" in line:
                self.contains.append((str(line["contains"]), line["answer"]))
            elif "messages" in line:
                self.exact[_key(line["messages"], line.get("schema"))] = line["answer"]
            else:
                raise LLMError(f"{config.path}:{number}: a line needs 'messages' or 'contains'")

    @property
    def identity(self) -> str:
        return f"replay:{self.path.name}"

    def generate(self, request: Request) -> Generation:
        answer = self.exact.get(_key(request.messages, request.schema))
        if answer is None:
            text = "\n".join(m["content"] for m in request.messages)
            answer = next((a for needle, a in self.contains if needle in text), None)
        if answer is None:
            first = request.messages[-1]["content"][:80] if request.messages else ""
            raise LLMError(f"{self.path}: no recorded answer for the prompt {first!r}…")
        return Generation(answer, Usage())


def _key(messages: Any, schema: Any) -> str:
    return json.dumps([messages, schema], sort_keys=True)
