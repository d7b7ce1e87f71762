"""The source tree's layers: no module imports a higher layer (docs/architecture.md,
"Layers"), so the pipeline reads bottom-up and no two folders depend on each other."""

from __future__ import annotations

from pathlib import Path

from coldrec._util.source import PACKAGE_ROOT, imported_modules

LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("coldrec", "_util"),
    ("config",),
    ("data",),
    ("encode",),
    ("eval",),
    ("training",),
    ("retrieval", "llm"),
    ("supervision",),
    ("rank", "graph", "coldstart", "baselines"),
    ("experiment", "serve"),
    ("cli",),
]
"""Bottom to top, as docs/architecture.md lists them; ``coldrec`` is the package's own
``__init__`` (its version)."""


def part_of(module: str) -> str:
    """The top-level part of coldrec a module belongs to (``coldrec.rank.run`` → ``rank``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "coldrec"


def violations(root: Path, layers: list[tuple[str, ...]]) -> list[str]:
    """``file: part → imported part`` for every import of a part that is not in a lower
    layer (imports within one part are free)."""
    level = {part: depth for depth, group in enumerate(layers) for part in group}
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        name = ".".join(("coldrec", *relative.parts)).removesuffix(".__init__")
        here = part_of(name)
        assert here in level, f"{path}: part {here!r} is in no layer"
        for imported in imported_modules(path):
            there = part_of(imported)
            if there != here and level[there] >= level[here]:
                found.append(f"{relative}: {here} → {there}")
    return found


def test_no_module_imports_a_higher_or_sibling_layer() -> None:
    assert violations(PACKAGE_ROOT, LAYERS) == []


def test_every_folder_of_the_package_is_in_a_layer() -> None:
    parts = {p.name for p in PACKAGE_ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    parts |= {p.stem for p in PACKAGE_ROOT.glob("*.py")} - {"__init__"}
    assert parts == {part for group in LAYERS for part in group} - {"coldrec"}


def test_an_upward_import_is_reported(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "rank").mkdir()
    (tmp_path / "data" / "x.py").write_text("def f():\n    from coldrec.rank.y import g\n")
    (tmp_path / "rank" / "y.py").write_text("from coldrec.data.x import f\n")
    layers = [("data",), ("rank",)]
    assert violations(tmp_path, layers) == ["data/x: data → rank"]
