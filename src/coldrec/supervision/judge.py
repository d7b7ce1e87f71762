"""The LLM as judge of relevance, and how far its labels can be trusted (``coldrec judge``).

For a seeded sample of test users with a history, the judged items of a user are up to
``positives`` of their held-out test items (label 1) and as many items drawn uniformly
among the trained items they never interacted with (label 0), shown in a seeded shuffle
(in label order a position-biased judge would read the labels off the positions). The
judge sees the user's history (before test only) and is asked, one prompt per user and
way:

- **pointwise**: a grade per item, 0 (irrelevant) to 3 (what they want next);
- **pairwise**: for each (positive, negative) pair, shown in a seeded random order as A
  and B, which the user prefers;
- **listwise**: an order of all the user's judged items (the ranking prompt and answer
  completion of :mod:`coldrec.supervision.llm_rank`).

**Agreement with the held-out interactions**: the AUC of the grades (positives above
negatives; ties count half), the pairwise accuracy, and the AUC and Kendall's τ_b of
the listwise order against the labels (per user, averaged over users with both).
**Self-consistency**: with ``repeats`` > 1 the pointwise question is asked again at
``temperature`` (each repeat its own cache entry); the mean Cohen's κ between the first
answer and each repeat, and the share of items graded alike every time. **Between two
judges**: given another judge's run over the same pairs (same data, users, positives
and seed), Cohen's κ of the grades and their confusion matrix.

With the ``embedding`` backend (no LLM, said so) the relevance of an item is the cosine of
the user's mean history text vector with the item's: the grade is that cosine mapped from
[0, 1] onto 0–3 and rounded (the embedding judge's rule for numbers), the pair's choice
the more similar item, the order by cosine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from scipy.stats import rankdata

from coldrec._util.io import atomic_write, write_json_atomic
from coldrec.data.dataset import HISTORY_SPLITS, Dataset
from coldrec.encode import TextEncoder, TextEncoderConfig, user_content_vectors
from coldrec.errors import DataError
from coldrec.llm.base import Request
from coldrec.llm.client import LLM
from coldrec.llm.engines import LLMJobConfig, open_llm
from coldrec.llm.schemas import array_answer_tokens, grades_of, grades_schema
from coldrec.supervision.llm_rank import Faults, borda, complete_ranking, ranking_request

__all__ = ["JudgeConfig", "auc", "cohen_kappa", "confusion", "kendall_tau_b", "run_judge"]

logger = logging.getLogger(__name__)

GRADES = (0, 1, 2, 3)
_POINTWISE = ("You judge how relevant each product is to a shopper, from their purchase "
              "history: 0 irrelevant, 1 somewhat, 2 relevant, 3 what they want next.")  # fmt: skip
_PAIRWISE = ("You judge which of two products a shopper would rather buy next, from their "
             "purchase history.")  # fmt: skip


class JudgeConfig(LLMJobConfig):
    """What ``coldrec judge`` asks and of whom (``llm``, ``engine`` and ``ray``:
    :class:`~coldrec.llm.engines.LLMJobConfig`)."""

    users: int = Field(200, gt=0)
    """Test users judged (a seeded sample of those with a history)."""
    positives: int = Field(5, gt=0)
    """Held-out test items judged per user (as many negatives are drawn)."""
    history_items: int = Field(30, gt=0)
    """Most recent history items shown."""
    repeats: int = Field(1, ge=1)
    """Pointwise answers per user (above 1: repeats at ``temperature``, for
    self-consistency)."""
    temperature: float = Field(0.7, ge=0)
    """Sampling temperature of the repeats (the first answer is greedy)."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """The ``embedding`` backend's text vectors."""
    seed: int = 0


def run_judge(
    config: JudgeConfig, dataset_path: Path, out: Path, against: Path | None = None
) -> dict[str, Any]:
    """Judge the sampled pairs; write ``judged.parquet`` (user_idx, item_idx, label,
    grade, grade_<k> per repeat, list_points), ``pairs.parquet`` (user_idx, positive,
    negative, prefers_positive) and ``summary.json`` into ``out``; return the summary.
    ``against``: another judge's run folder over the same pairs (κ and confusion)."""
    dataset = Dataset.load(dataset_path)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    judged = judged_pairs(dataset, config)
    with open_llm(config, log=out / "calls.jsonl") as llm:
        judge = _Judge(config, dataset, judged, llm)
        if llm.backend.generates_text:
            llm.preflight()
        judged = judge.graded()
        pairs = judge.pairwise()
        summary = _summary(judged, pairs, judge.faults, llm)
    if against is not None:
        summary["against"] = _between(judged, against)
    for name, table in (("judged", judged), ("pairs", pairs)):
        with atomic_write(out / f"{name}.parquet") as path:
            table.to_parquet(path, index=False)
    write_json_atomic(out / "summary.json", summary)
    return summary


def judged_pairs(dataset: Dataset, config: JudgeConfig) -> pd.DataFrame:
    """The judged (user_idx, item_idx, label) rows: each sampled user's first
    ``positives`` distinct test items, then as many negatives (trained items the user
    never interacted with, in any split)."""
    rng = np.random.default_rng(config.seed)
    history = dataset.sequences(*HISTORY_SPLITS)
    test = dataset.split("test").drop_duplicates(["user_idx", "item_idx"])
    held = test.groupby("user_idx")["item_idx"].agg(list)
    eligible = np.array([u for u in held.index if len(history[u])], dtype=np.int64)
    if not len(eligible):
        raise DataError("no test user has a history to judge from")
    users = np.sort(rng.choice(eligible, min(config.users, len(eligible)), replace=False))
    trained = np.flatnonzero(np.bincount(np.concatenate(history), minlength=dataset.n_items))
    rows = []
    for user in users:
        positives = held[user][: config.positives]
        touched = set(history[user].tolist()) | set(held[user])
        pool = np.setdiff1d(trained, np.fromiter(touched, dtype=np.int64))
        negatives = rng.choice(pool, min(len(positives), len(pool)), replace=False)
        rows += [(user, item, 1) for item in positives] + [(user, int(i), 0) for i in negatives]
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "label"])


class _Judge:
    """Asks the three ways for the sampled pairs (the LLM, or the embedding stand-in)."""

    def __init__(self, config: JudgeConfig, dataset: Dataset, judged: pd.DataFrame, llm: LLM):
        self.config, self.dataset, self.judged, self.llm = config, dataset, judged, llm
        self.texts = dataset.item_text
        self.history = dataset.sequences(*HISTORY_SPLITS)
        self.by_user = _groups(judged)
        self.faults = {"pointwise": Faults(), "pairwise": Faults(), "listwise": Faults()}
        self._cosine: np.ndarray | None = None

    def cosine(self) -> np.ndarray:
        """The embedding stand-in's relevance of each judged row."""
        if self._cosine is None:
            items = TextEncoder(self.config.encoder).encode(self.texts)
            users = user_content_vectors(self.dataset, items, HISTORY_SPLITS,
                                         self.config.history_items)  # fmt: skip
            rows = self.judged
            self._cosine = np.einsum("rd,rd->r", users[rows["user_idx"]], items[rows["item_idx"]])
        return self._cosine

    def recent(self, user: int) -> list[str]:
        """The texts of the user's most recent ``history_items`` items, oldest first."""
        return [self.texts[i] for i in self.history[user][-self.config.history_items :]]

    def shown_history(self, user: int) -> str:
        return "\n".join(f"- {text}" for text in self.recent(user))

    def graded(self) -> pd.DataFrame:
        """``judged`` with the grades (NaN: no valid answer) and listwise points."""
        judged = self.judged.copy()
        if not self.llm.backend.generates_text:
            cosine = self.cosine()
            judged["grade"] = np.clip(np.round(3 * cosine), 0, 3)
            judged["list_points"] = cosine
            return judged
        for k in range(self.config.repeats):
            column = "grade" if k == 0 else f"grade_{k}"
            judged[column] = self._pointwise(k)
        judged["list_points"] = self._listwise()
        return judged

    def shown_order(self, user: int, n: int) -> np.ndarray:
        """The seeded order a user's judged items are shown in (rows in label order would
        tell a position-biased judge the labels)."""
        return np.random.default_rng([self.config.seed, user]).permutation(n)

    def _pointwise(self, repeat: int) -> np.ndarray:
        requests, shown = [], []
        for user, rows in self.by_user:
            order = self.shown_order(user, len(rows))
            items = rows["item_idx"].to_numpy()[order]
            listing = "\n".join(f"{k + 1}. {self.texts[i]}" for k, i in enumerate(items))
            shown.append(order)
            c = len(rows)
            schema = grades_schema("grades", c, GRADES[-1])
            prompt = (f"History:\n<context>\n{self.shown_history(user)}\n</context>\n"
                      f"Products:\n{listing}\nGrade each of the {c} products. Answer as "
                      'JSON: {"grades": [...]}')  # fmt: skip
            requests.append(Request(
                [{"role": "system", "content": _POINTWISE}, {"role": "user", "content": prompt}],
                schema, temperature=0.0 if repeat == 0 else self.config.temperature,
                max_tokens=array_answer_tokens(c), stage="judge_pointwise",
                sample=repeat))  # fmt: skip
        grades = []
        for order, answer in zip(shown, self.llm.batch(requests), strict=True):
            got = grades_of(answer.field("grades"), len(order), GRADES[-1])
            if repeat == 0:
                self.faults["pointwise"].add(Faults(answers=1, unusable=int(got is None)))
            row_grades = np.full(len(order), np.nan)
            if got is not None:
                row_grades[order] = got
            grades.append(row_grades)
        return np.concatenate(grades)

    def _listwise(self) -> np.ndarray:
        """Each row's points in its user's completed order (n for the top … 1)."""
        requests, shown = [], []
        for user, rows in self.by_user:
            order = self.shown_order(user, len(rows))
            items = rows["item_idx"].to_numpy()
            listed = [self.texts[items[k]] for k in order]
            requests.append(ranking_request("sequential", self.recent(user), listed))
            shown.append(order)
        points = []
        for order, answer in zip(shown, self.llm.batch(requests), strict=True):
            ranking, faults = complete_ranking(answer.field("ranking"), order.tolist())
            self.faults["listwise"].add(faults)
            usable = not faults.unusable
            points.append(borda([ranking], len(order)) if usable else np.full(len(order), np.nan))
        return np.concatenate(points)

    def pairwise(self) -> pd.DataFrame:
        """Each user's (positive, negative) pairs and whether the judge preferred the
        positive (NaN: no valid answer)."""
        frames = []
        cosine = None if self.llm.backend.generates_text else self.cosine()
        for user, rows in self.by_user:
            pos = rows.loc[rows["label"] == 1, "item_idx"].to_numpy()
            neg = rows.loc[rows["label"] == 0, "item_idx"].to_numpy()
            n = min(len(pos), len(neg))
            frame = pd.DataFrame({"user_idx": user, "positive": pos[:n], "negative": neg[:n]})
            if cosine is not None:
                sims = pd.Series(cosine[rows.index], index=rows["item_idx"].to_numpy())
                frame["prefers_positive"] = (sims[pos[:n]].to_numpy()
                                             > sims[neg[:n]].to_numpy()).astype(float)  # fmt: skip
            frames.append(frame)
        pairs = pd.concat(frames, ignore_index=True)
        if cosine is None:
            pairs["prefers_positive"] = self._ask_pairs(pairs)
        return pairs

    def _ask_pairs(self, pairs: pd.DataFrame) -> np.ndarray:
        rng = np.random.default_rng(self.config.seed)
        swapped = rng.random(len(pairs)) < 0.5  # the positive shown as B
        requests, spans = [], []
        for user, rows in _groups(pairs):
            index = rows.index.to_numpy()
            both = zip(index, rows["positive"].tolist(), rows["negative"].tolist(), strict=True)
            shown = [(q, p) if swapped[i] else (p, q) for i, p, q in both]
            lines = [f"{k + 1}. A: {self.texts[a]} | B: {self.texts[b]}"
                     for k, (a, b) in enumerate(shown)]  # fmt: skip
            c = len(rows)
            schema = {"type": "object", "required": ["choices"], "properties": {"choices": {
                "type": "array", "items": {"type": "string", "enum": ["A", "B"]},
                "minItems": c, "maxItems": c}}}  # fmt: skip
            listing = "\n".join(lines)
            prompt = (f"History:\n<context>\n{self.shown_history(user)}\n</context>\n"
                      f"Pairs:\n{listing}\nFor each of the {c} pairs, which would they rather "
                      'buy next? Answer as JSON: {"choices": ["A" or "B", ...]}')  # fmt: skip
            messages = [{"role": "system", "content": _PAIRWISE},
                        {"role": "user", "content": prompt}]  # fmt: skip
            requests.append(Request(messages, schema, max_tokens=array_answer_tokens(c),
                                    stage="judge_pairwise"))  # fmt: skip
            spans.append(index)
        out = np.full(len(pairs), np.nan)
        for span, answer in zip(spans, self.llm.batch(requests), strict=True):
            got = answer.field("choices")
            valid = isinstance(got, list) and len(got) == len(span) and set(got) <= {"A", "B"}
            self.faults["pairwise"].add(Faults(answers=1, unusable=int(not valid)))
            if valid:
                chose_a = np.array(got) == "A"
                out[span] = (chose_a != swapped[span]).astype(float)
        return out


def _groups(frame: pd.DataFrame) -> list[tuple[int, pd.DataFrame]]:
    """``frame``'s rows per user, users in id order."""
    users = frame["user_idx"].to_numpy()
    return [(int(user), frame.loc[users == user]) for user in np.unique(users)]


def _summary(
    judged: pd.DataFrame, pairs: pd.DataFrame, faults: dict[str, Faults], llm: LLM
) -> dict[str, Any]:
    graded = judged.dropna(subset=["grade"])
    listed = judged.dropna(subset=["list_points"])
    per_user = [(rows["list_points"].to_numpy(), rows["label"].to_numpy())
                for _, rows in listed.groupby("user_idx")]  # fmt: skip
    taus = [kendall_tau_b(points, labels) for points, labels in per_user]
    aucs = [auc(points, labels) for points, labels in per_user]
    chosen = pairs["prefers_positive"].dropna()
    summary: dict[str, Any] = {
        "backend": llm.described(),
        "users": int(judged["user_idx"].nunique()),
        "pairs": len(judged),
        "positives": int(judged["label"].sum()),
        "grade_auc": auc(graded["grade"].to_numpy(), graded["label"].to_numpy()),
        "grade_counts": {str(g): int((graded["grade"] == g).sum()) for g in GRADES},
        "listwise_auc": _mean(aucs),
        "listwise_tau_b": _mean(taus),
        "pairwise_accuracy": float(chosen.mean()) if len(chosen) else float("nan"),
        "faults": {way: f.as_dict() for way, f in faults.items()},
        "llm": llm.totals(),
    }
    repeats = [c for c in judged.columns if c.startswith("grade_")]
    if repeats:
        summary["self_consistency"] = _consistency(judged, repeats)
    return summary


def _mean(values: list[float]) -> float:
    """The mean of the defined values (NaN if none is)."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _consistency(judged: pd.DataFrame, repeats: list[str]) -> dict[str, float]:
    """Mean κ of the first grade with each repeat, and the share of rows graded alike by
    every answer (rows with a grade in every answer)."""
    both = judged.dropna(subset=["grade", *repeats])
    grades = both[["grade", *repeats]].to_numpy()
    kappas = [cohen_kappa(grades[:, 0], grades[:, k]) for k in range(1, grades.shape[1])]
    return {"rows": len(both), "mean_kappa": float(np.mean(kappas)),
            "all_alike": float((grades == grades[:, :1]).all(axis=1).mean())}  # fmt: skip


def _between(judged: pd.DataFrame, other_run: Path) -> dict[str, Any]:
    """κ and confusion (rows: this judge, columns: the other) of the grades on the pairs
    both judged."""
    path = other_run / "judged.parquet"
    if not path.is_file():
        raise DataError(f"{other_run}: no judged.parquet (not a coldrec judge run)")
    other = pd.read_parquet(path)
    keys = ["user_idx", "item_idx"]
    both = judged[[*keys, "grade"]].merge(other[[*keys, "grade"]], on=keys, suffixes=("", "_other"))
    if len(both) < len(judged):
        raise DataError(f"{path}: judged other pairs ({len(both)} of {len(judged)} shared): "
                        "run both judges on the same data, users, positives and seed")  # fmt: skip
    both = both.dropna()
    a, b = both["grade"].to_numpy(), both["grade_other"].to_numpy()
    return {"run": str(other_run), "rows": len(both), "kappa": cohen_kappa(a, b),
            "confusion": confusion(a, b, GRADES).tolist()}  # fmt: skip


def confusion(a: np.ndarray, b: np.ndarray, labels: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Counts of (``a`` = labels[i], ``b`` = labels[j]) at row i, column j."""
    labels = np.asarray(labels)
    out = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(out, (np.searchsorted(labels, a), np.searchsorted(labels, b)), 1)
    return out


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's κ of two raters' labels: (p_o − p_e) / (1 − p_e); NaN when p_e is 1 (both
    gave one and the same label throughout)."""
    shares = confusion(a, b, np.union1d(a, b)) / len(a)
    observed = np.trace(shares)
    expected = shares.sum(axis=1) @ shares.sum(axis=0)
    return float((observed - expected) / (1 - expected)) if expected < 1 else float("nan")


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's τ_b (ties in either variable corrected for); NaN when either is constant."""
    dx = np.sign(x[:, None] - x[None, :])[np.triu_indices(len(x), 1)]
    dy = np.sign(y[:, None] - y[None, :])[np.triu_indices(len(y), 1)]
    denominator = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy))
    return float((dx * dy).sum() / denominator) if denominator else float("nan")


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The probability that a positive scores above a negative (ties count half), from
    the Mann–Whitney rank sum; NaN without both classes."""
    positive = labels == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
