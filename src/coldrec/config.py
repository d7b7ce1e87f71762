"""Layered configuration: defaults → YAML file → command-line flags → ``--set a.b=c``.

Each later layer overrides the earlier ones key by key. Every config model forbids
unknown keys, so a typo is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from coldrec._util.io import require_file
from coldrec.errors import ConfigError, brief

__all__ = ["default_kind", "kinds", "merge", "parse_overrides", "read_yaml", "validate"]

Model = TypeVar("Model", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    path = require_file(path, "config", ConfigError)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {brief(pair)}")
        *parents, leaf = key.strip().split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {brief(pair)}: {part!r} is set to a value, not a section")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            raise ConfigError(
                f"--set {brief(pair)}: the value is not valid YAML ({_yaml_problem(exc)})"
            ) from None
        node[leaf] = _Emptied() if value == {} else value
    return result


def _yaml_problem(error: Exception) -> str:
    """What YAML could not read, in a few words (a nested document can make the parser's
    own message huge, or overflow Python's recursion)."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return brief(" ".join(str(error).split()), 200)


def merge(base: Mapping[str, Any], *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; later layers win, nested mappings merge key by key, except an
    empty mapping given with ``--set key={}``, which replaces the section (merged key by
    key it would change nothing), and a mapping of another ``kind`` (a backend, a model),
    which replaces the section too (the other kind's settings do not apply to it)."""
    result = dict(base)
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, _Emptied) or _another_kind(value, result.get(key)):
                result[key] = merge({}, dict(value))  # what later --set keys put in it stays
            elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = merge(result[key], value)
            else:
                result[key] = value
    return result


def _another_kind(value: Any, before: Any) -> bool:
    """Whether ``value`` names a ``kind`` other than the mapping ``before``'s."""
    return (isinstance(value, Mapping) and isinstance(before, Mapping) and "kind" in value
            and value["kind"] != before.get("kind"))  # fmt: skip


class _Emptied(dict[str, Any]):
    """``--set key={}``: a section to empty, not a layer with nothing to add."""


def validate(model: type[Model], data: Mapping[str, Any]) -> Model:
    """Build ``model`` from ``data``, turning pydantic's report into one :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ConfigError(f"invalid {model.__name__}: a value is nested too deeply") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None


def kinds(union: Any) -> tuple[str, ...]:
    """The ``kind`` values of a discriminated union of configs (``Annotated[A | B, …]``)."""
    members = get_args(get_args(union)[0])
    return tuple(member.model_fields["kind"].default for member in members)


def default_kind(data: Any, node: str, kind: str) -> Any:
    """``data`` with ``kind`` filled into its ``node`` mapping when that has none, so a
    partial node (``--set model.dim=32``) configures the default member of a union."""
    value = data.get(node) if isinstance(data, dict) else None
    if isinstance(value, dict) and "kind" not in value:
        return {**data, node: {**value, "kind": kind}}
    return data
