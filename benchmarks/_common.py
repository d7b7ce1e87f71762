"""What the benchmark scripts share: where the data and the results are, and how
results are written (JSON for machines, Markdown for people, machine info in both)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from coldrec.data.frames import Frames
from coldrec.data.sources import Amazon2014Source

ROOT = Path(__file__).resolve().parents[1]
BEAUTY = ROOT.parent / "shared" / "datasets" / "amazon-beauty-2014"
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def load_beauty() -> Frames:
    """The canonical frames of Amazon Beauty 2014 (exits if the data set is absent)."""
    if not BEAUTY.is_dir():
        raise SystemExit(f"Amazon Beauty not found at {BEAUTY}")
    return Amazon2014Source(
        interactions=BEAUTY / "reviews_Beauty_5.json.gz", items=BEAUTY / "meta_Beauty.json.gz"
    ).load()


def write_results(name: str, figures: dict[str, Any], markdown: str) -> None:
    """Write ``results/<name>.json`` (figures plus machine info) and ``results/<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {**figures, "machine": machine()}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    cpus = machine()["cpus"]
    (RESULTS / f"{name}.md").write_text(f"{markdown.rstrip()}\n\nMachine: {cpus} CPUs.\n")


def peer_venv(venv: Path, pins: tuple[str, ...], modules: tuple[str, ...]) -> str:
    """Make a peer's venv at ``venv`` unless it exists (``torch==2.13.0`` first, which
    installs a CPU build here, then ``pins``); return the versions of ``modules`` in it."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "torch==2.13.0"], check=True)
        subprocess.run([*pip, *pins], check=True)
    imports = ", ".join(modules)
    versions = " ".join(f"{{{m}.__version__}}" for m in modules)
    found = subprocess.run([str(python), "-c", f"import {imports}; print(f'{versions}')"],
                           check=True, capture_output=True, text=True)  # fmt: skip
    return found.stdout.strip()


def mean_std(values: list[float], digits: int = 4) -> str:
    """``mean ± sample std`` of seeds' figures (the mean alone for one seed)."""
    array = np.array(values, dtype=float)
    spread = f" ± {array.std(ddof=1):.{digits}f}" if len(array) > 1 else ""
    return f"{array.mean():.{digits}f}{spread}"
