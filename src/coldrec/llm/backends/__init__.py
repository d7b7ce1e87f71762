"""LLM backends behind one interface (:class:`~coldrec.llm.base.Backend`), each with a
typed config whose ``kind`` names it:

- ``llamacpp``: a GGUF model in this process by llama.cpp (default: SmolLM2-135M-Instruct);
- ``transformers``: a local causal LM in this process by Hugging Face ``transformers``
  (the same SmolLM2 by default; no compiler needed);
- ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, hosted APIs);
- ``embedding``: a judge that fills answer schemas by embedding similarity (no LLM);
- ``replay``: recorded answers, for tests.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from coldrec.config import kinds
from coldrec.llm.backends.embedding import EmbeddingConfig, EmbeddingJudge
from coldrec.llm.backends.llamacpp import LlamaCppBackend, LlamaCppConfig
from coldrec.llm.backends.openai_compat import OpenAIBackend, OpenAIConfig
from coldrec.llm.backends.replay import ReplayBackend, ReplayConfig
from coldrec.llm.backends.transformers import TransformersBackend, TransformersConfig

__all__ = [
    "BACKEND_KINDS",
    "BackendConfig",
    "EmbeddingConfig",
    "EmbeddingJudge",
    "LlamaCppBackend",
    "LlamaCppConfig",
    "OpenAIBackend",
    "OpenAIConfig",
    "ReplayBackend",
    "ReplayConfig",
    "TransformersBackend",
    "TransformersConfig",
]

BackendConfig = Annotated[
    LlamaCppConfig | TransformersConfig | OpenAIConfig | EmbeddingConfig | ReplayConfig,
    Field(discriminator="kind"),
]
"""Any backend config; ``kind`` selects the backend."""

BACKEND_KINDS = kinds(BackendConfig)
