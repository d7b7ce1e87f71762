"""The encode stage: item text → L2-normalised vectors (all-MiniLM-L6-v2 by default,
cached on disk), vector artifacts, and user content vectors."""

from __future__ import annotations

from coldrec.encode.encoder import DEFAULT_MODEL, TextEncoder, TextEncoderConfig
from coldrec.encode.vectors import load_vectors, save_vectors, user_content_vectors

__all__ = [
    "DEFAULT_MODEL",
    "TextEncoder",
    "TextEncoderConfig",
    "load_vectors",
    "save_vectors",
    "user_content_vectors",
]
