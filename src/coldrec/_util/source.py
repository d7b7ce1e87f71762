"""coldrec's own source as data: which coldrec modules a module imports (read from its
import statements, never by running it) and a fingerprint of the source a module runs.

The experiment runner keys each step with :func:`source_hash` of the module that runs
the step, so a change to any code the step runs makes it stale, while a change
elsewhere (a ranker fix, for a labelling step) does not.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

__all__ = ["PACKAGE_ROOT", "imported_modules", "module_file", "module_files", "source_hash"]

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The folder of the ``coldrec`` package."""


def module_file(module: str) -> Path | None:
    """The file of a ``coldrec`` module (``coldrec.a.b`` → ``a/b.py`` or
    ``a/b/__init__.py``), or ``None`` when there is none."""
    parts = module.split(".")
    if parts[0] != "coldrec":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """The coldrec modules a source file imports, anywhere in it (inside functions and
    ``TYPE_CHECKING`` blocks too): ``from coldrec.a import b`` names ``coldrec.a`` and,
    when ``b`` is a module of its own, ``coldrec.a.b``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "coldrec")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "coldrec":
                continue
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if module_file(f"{node.module}.{a.name}") is not None
            )
    return found


@cache
def module_files(module: str) -> tuple[Path, ...]:
    """The files of ``module`` and of every coldrec module it imports, transitively,
    with the packages' ``__init__.py`` files that importing them runs; sorted."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # a module's packages run first
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                pending.extend(imported_modules(path))
    return tuple(sorted(seen))


@cache
def source_hash(module: str) -> str:
    """SHA-256 (first 16 hex digits) over the paths and bytes of :func:`module_files`."""
    digest = hashlib.sha256()
    for path in module_files(module):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
