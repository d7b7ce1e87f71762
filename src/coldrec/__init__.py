"""coldrec: strict item cold-start recommendation with an LLM as a source of weak supervision."""

from __future__ import annotations

from coldrec.errors import ColdrecError, ConfigError, DataError, LLMError

__version__ = "0.1.0"

__all__ = ["ColdrecError", "ConfigError", "DataError", "LLMError", "__version__"]
