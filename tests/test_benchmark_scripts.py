"""Every benchmark script imports (a renamed helper in another script once broke
``peer_lightgcn.py`` unnoticed until it was run). The peers' workers, which import the
peers' own packages in their environments, are left out."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WORKERS = {"_recbole_worker", "_coldrec_toolkit_worker"}
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem not in WORKERS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_benchmark_script_imports(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    assert module.__file__ == str(BENCHMARKS / f"{script}.py")
    sys.modules.pop(script, None)
