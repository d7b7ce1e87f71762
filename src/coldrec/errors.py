"""The three exception classes of coldrec, one per audience.

The CLI prints any :class:`ColdrecError` as one line and exits with status 2; anything
else is a bug in coldrec and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ColdrecError", "ConfigError", "DataError", "LLMError"]


class ColdrecError(Exception):
    """Base class of the errors a user can act on."""


class DataError(ColdrecError):
    """Input data is missing, malformed or empty (the message names file, line and field)."""


class ConfigError(ColdrecError):
    """A configuration value is unknown or out of range."""


class LLMError(ColdrecError):
    """An LLM backend failed in a way retries could not fix."""
