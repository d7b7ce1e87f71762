"""Reports rendered from metrics files only: Markdown tables in the layout of the
thesis's Tables 5.2/5.3 (rows = methods; Recall and NDCG at 5/10/20; one table per
segment), mean ± std over seeds, and a bar chart of cold vs warm Recall@20."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coldrec.errors import DataError

__all__ = [
    "TABLE_METRICS",
    "aggregate",
    "load_metrics",
    "markdown",
    "plot_cold_warm",
    "write_report",
]

TABLE_METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
TABLE_SEGMENTS = ("all", "warm", "cold", "cold_users")

Summary = dict[str, dict[str, Any]]
"""method → {"seeds": [...], "segments": {segment: {metric: (mean, std)}}, "counts": …}"""


def load_metrics(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Every ``metrics-seed*.json`` in the given run folders (each folder read once)."""
    found = []
    for run_dir in dict.fromkeys(Path(d).resolve() for d in run_dirs):
        files = sorted(Path(run_dir).glob("metrics-seed*.json"))
        if not files:
            raise DataError(f"{run_dir}: no metrics-seed*.json files (not a run folder?)")
        for path in files:
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return found


def aggregate(runs: Sequence[dict[str, Any]]) -> Summary:
    """Mean and sample standard deviation over seeds, per method, segment and metric.

    Runs of one method must share a ``config_hash`` (the same settings and data) and
    differ in ``seed``; all methods must share a ``data_hash`` (the same data set and
    split, so their user and target counts are the same). A mix is refused rather
    than averaged. A metric that is ``null`` (an empty segment) stays ``None``.
    """
    data = {run.get("data_hash") for run in runs}
    if len(data) > 1:
        raise DataError(
            f"the runs were made on different data sets (data_hash {sorted(map(str, data))})"
        )
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    summary: Summary = {}
    for method, group in by_method.items():
        hashes = {run["config_hash"] for run in group}
        if len(hashes) > 1:
            raise DataError(f"method {method!r} has runs with different settings: {sorted(hashes)}")
        seeds = [run["seed"] for run in group]
        if len(set(seeds)) < len(seeds):
            raise DataError(f"method {method!r} has two runs with the same seed: {seeds}")
        segments = {
            segment: {
                metric: _mean_std([_value(run, method, segment, metric) for run in group])
                for metric in group[0]["segments"][segment]
            }
            for segment in group[0]["segments"]
        }
        summary[method] = {"seeds": seeds, "segments": segments, "counts": group[0]["counts"]}
    return summary


def _value(run: dict[str, Any], method: str, segment: str, metric: str) -> float | None:
    try:
        return run["segments"][segment][metric]
    except KeyError:
        raise DataError(
            f"method {method!r}, seed {run['seed']}: no {metric} for {segment}"
        ) from None


def _mean_std(values: list[float | None]) -> tuple[float, float] | None:
    known = [v for v in values if v is not None and not math.isnan(v)]
    if len(known) < len(values):
        return None
    if len(set(known)) == 1:  # deterministic runs: no spread, not a rounding residue
        return known[0], 0.0
    mean = sum(known) / len(known)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in known) / (len(known) - 1))


References = dict[str, dict[str, dict[str, float]]]
"""Published figures: method → segment → metric → value."""


def markdown(
    summary: Summary,
    segments: Sequence[str] = TABLE_SEGMENTS,
    references: References | None = None,
) -> str:
    """One Markdown table per segment: rows = methods, columns = :data:`TABLE_METRICS`;
    ``references`` add a row ``<method> (published)`` per method where they have the
    segment ("–" for the metrics they lack)."""
    header = "| Method | " + " | ".join(_title(m) for m in TABLE_METRICS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_METRICS)
    parts = []
    for segment in segments:
        with_segment = {m: info for m, info in summary.items() if segment in info["segments"]}
        if not with_segment:
            continue
        rows = [
            f"| {method} (n={len(info['seeds'])}) | "
            + " | ".join(_cell(info["segments"][segment].get(m)) for m in TABLE_METRICS)
            + " |"
            for method, info in with_segment.items()
        ]
        rows += [
            f"| {method} (published) | "
            + " | ".join(_cell(None if m not in found[segment] else (found[segment][m], 0.0))
                         for m in TABLE_METRICS)
            + " |"
            for method, found in (references or {}).items()
            if segment in found
        ]  # fmt: skip
        counts = next(iter(with_segment.values()))["counts"][segment]
        parts.append(
            f"### {segment} ({counts['users']:,} users, {counts['targets']:,} targets)\n\n"
            + "\n".join([header, rule, *rows])
        )
    return "\n\n".join(parts) + "\n"


def _title(metric: str) -> str:
    name, k = metric.split("@")
    return f"{'NDCG' if name == 'ndcg' else name.capitalize()}@{k}"


def _cell(value: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


def plot_cold_warm(summary: Summary, path: Path, metric: str = "recall@20") -> Path:
    """Grouped bars of ``metric`` on the cold and warm segments, one group per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary)
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(methods) + 2), 3.6))
    for offset, segment in ((-width / 2, "warm"), (width / 2, "cold")):
        means = [summary[m]["segments"].get(segment, {}).get(metric) or (0.0, 0.0) for m in methods]
        spread = [std for _, std in means]
        ax.bar(
            [i + offset for i in range(len(methods))],
            [mean for mean, _ in means],
            width,
            yerr=spread if any(spread) else None,
            label=segment,
            capsize=3,
        )
    ax.set_xticks(range(len(methods)), methods, rotation=20, ha="right")
    ax.set_ylabel(_title(metric))
    ax.set_title(f"{_title(metric)}: warm vs cold items")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(
    run_dirs: Sequence[Path],
    out: Path,
    references: References | None = None,
    notes: str = "",
    warnings: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` and ``recall20_cold_warm.png`` for the given run folders;
    ``references`` go into the tables (:func:`markdown`), ``notes`` (Markdown) at the end;
    ``warnings``, and those of the metrics files, first."""
    runs = load_metrics(run_dirs)
    summary = aggregate(runs)
    out.mkdir(parents=True, exist_ok=True)
    plot_cold_warm(summary, out / "recall20_cold_warm.png")
    found = dict.fromkeys([*warnings, *(w for run in runs for w in run.get("warnings", []))])
    text = (
        "# Results\n\n"
        + "".join(f"> **Warning:** {warning}\n>\n" for warning in found)
        + ("\n" if found else "")
        + "Mean ± standard deviation over seeds (n = number of seeds). "
        "Rendered from:\n\n"
        + "".join(f"- `{d}`\n" for d in run_dirs)
        + "\n"
        + markdown(summary, references=references)
        + "\n![Recall@20, warm vs cold](recall20_cold_warm.png)\n"
        + (f"\n{notes.strip()}\n" if notes else "")
    )
    (out / "report.md").write_text(text, encoding="utf-8")
    return out / "report.md"
