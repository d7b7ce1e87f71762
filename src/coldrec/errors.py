"""The three exception classes of coldrec, one per audience.

The CLI prints any :class:`ColdrecError` as one line and exits with status 2; anything
else is a bug in coldrec and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["ColdrecError", "ConfigError", "DataError", "LLMError", "brief"]


class ColdrecError(Exception):
    """Base class of the errors a user can act on."""


class DataError(ColdrecError):
    """Input data is missing, malformed or empty (the message names file, line and field)."""


class ConfigError(ColdrecError):
    """A configuration value is unknown or out of range."""


class LLMError(ColdrecError):
    """An LLM backend failed in a way retries could not fix."""


def brief(value: object, limit: int = 60) -> str:
    """What an error message quotes of a value it found: its ``repr`` cut to about
    ``limit`` characters (a cell may hold a 100 MB string or a 5,000-digit number)."""
    if isinstance(value, str | bytes) and len(value) > limit:
        value = value[:limit]
    if isinstance(value, list | tuple | dict) and len(value) > 10:
        return f"a {type(value).__name__} of {len(value):,} values"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a huge integer, a deeply nested list
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
