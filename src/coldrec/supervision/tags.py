"""Attribute tags for STARS's item tokens (``coldrec tag``): a controlled vocabulary,
then the tags of each item from it.

1. **Vocabulary proposal**: per category (the taxonomy's first levels), the LLM is shown
   a seeded sample of titles and asked for short attribute tags shoppers would filter
   by. Proposals are normalised (:func:`normalise_tag`: case, spacing, punctuation,
   simple plurals), near-synonyms merged by MiniLM similarity (a proposal at cosine ≥
   ``synonym_threshold`` to a more frequent one joins it) and the most frequent kept.
2. **Tagging**: per item, the LLM picks up to ``max_tags`` tags of the vocabulary (an
   ``enum`` schema, so nothing outside it), through coldrec's LLM layer: cached answers
   (a stopped run resumes where it stopped), retries, accounting.

With the ``embedding`` backend no language model is involved and the summary says so:
proposals are the sample's most frequent title words (what the embedding judge answers
to a free list) and an item's tags are the vocabulary entries whose MiniLM cosine with
its text reaches ``threshold`` (at most ``max_tags``), computed in one matrix product.

A vocabulary given (``vocabulary``: a ``vocabulary.json`` of an earlier run) skips the
proposal, so two taggers can be compared on the same tags (:func:`tag_agreement`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from coldrec._util.io import atomic_write, read_json, write_json_atomic
from coldrec.data.dataset import Dataset
from coldrec.data.taxonomy import TaxonomyConfig, item_levels
from coldrec.encode import TextEncoder, TextEncoderConfig
from coldrec.errors import DataError
from coldrec.llm.base import Request
from coldrec.llm.client import LLM
from coldrec.llm.engines import LLMJobConfig, open_llm
from coldrec.llm.schemas import choice_schema, grammar_safe

__all__ = ["TagConfig", "normalise_tag", "read_tags", "run_tagging", "tag_agreement", "tag_matrix"]

logger = logging.getLogger(__name__)

_PROPOSE = ("You list product attribute tags that shoppers filter by (ingredients, "
            "benefits, skin or hair type, form, scent, certifications), 1 to 3 words "
            "each, never brand names.")  # fmt: skip
_TAG = "You tag a product with the attribute tags that truly apply to it, from the list only."
_PLURAL = re.compile(r"(?<![sui])s$")


class TagConfig(LLMJobConfig):
    """What ``coldrec tag`` runs (``llm``, ``engine`` and ``ray``:
    :class:`~coldrec.llm.engines.LLMJobConfig`; on Ray the LLM's batches are answered by
    actors over ``ray.endpoints``, with the same cache and the same outputs)."""

    vocabulary_size: int = Field(128, gt=0)
    titles_per_category: int = Field(30, gt=0)
    """Titles shown per category when proposing tags."""
    proposals_per_category: int = Field(20, gt=0)
    synonym_threshold: float = Field(0.85, gt=0, le=1)
    """MiniLM cosine at which a proposal joins a more frequent one."""
    max_tags: int = Field(5, gt=0)
    """Most tags per item."""
    threshold: float = Field(0.35, ge=-1, le=1)
    """``embedding`` backend: least cosine between item text and tag."""
    items: int | None = Field(None, gt=0)
    """Tag a seeded sample of this many items (``None``: every item)."""
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)
    """Its ``category_levels`` make the categories of the proposal."""
    encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    """Synonym merging and the ``embedding`` tagger."""
    seed: int = 0


def normalise_tag(tag: str) -> str:
    """A proposal in the vocabulary's form: lower case, letters, digits, ``-`` and single
    spaces, at most 3 words, each plural ``s`` dropped (``Oils`` → ``oil``, not
    ``glass``); ``""`` when nothing is left."""
    words = re.sub(r"[^\w\s-]|_", " ", tag.casefold()).split()[:3]
    words = [w[:-3] + "y" if w.endswith("ies") and len(w) > 4 else _PLURAL.sub("", w)
             for w in words]  # fmt: skip
    return " ".join(w for w in words if w)


def run_tagging(
    config: TagConfig, dataset_path: Path, out: Path, vocabulary: Path | None = None
) -> dict[str, Any]:
    """Propose the vocabulary (or read ``vocabulary``), tag the items, write
    ``vocabulary.json``, ``tags.parquet`` (item, item_idx, tag) and ``summary.json`` into
    ``out``; return the summary."""
    given = read_json(vocabulary) if vocabulary is not None else None
    tags = _checked_vocabulary(given, vocabulary) if vocabulary is not None else []
    dataset = Dataset.load(dataset_path)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", config.model_dump(mode="json"))
    encoder = TextEncoder(config.encoder)
    with open_llm(config, log=out / "calls.jsonl") as llm:
        no_llm = not llm.backend.generates_text
        if not no_llm:
            llm.preflight()
        if given is None:
            counts = _proposals(config, dataset, llm)
            tags, merged = _vocabulary(counts, config, encoder)
            given = {"tags": tags, "merged": merged, "proposals": dict(counts)}
        write_json_atomic(out / "vocabulary.json", given)
        items = _items_to_tag(config, dataset)
        if no_llm:
            chosen = _by_similarity(dataset, items, tags, config, encoder)
        else:
            chosen = _by_llm(dataset, items, tags, config, llm)
        frame = _tag_frame(dataset, items, chosen)
        with atomic_write(out / "tags.parquet") as path:
            frame.to_parquet(path, index=False)
        summary = _summary(config, dataset, items, frame, tags, llm)
    write_json_atomic(out / "summary.json", summary)
    return summary


def _proposals(config: TagConfig, dataset: Dataset, llm: LLM) -> Counter[str]:
    """How many categories proposed each normalised tag."""
    categories: dict[str, list[int]] = {}
    for item, paths in enumerate(dataset.items["categories"]):
        categories.setdefault(item_levels(paths, config.taxonomy)[0], []).append(item)
    titles = dataset.items["title"].fillna("").astype(str).to_numpy()
    rng = np.random.default_rng(config.seed)
    schema = {"type": "object", "required": ["tags"], "properties": {"tags": {
        "type": "array", "items": {"type": "string", "maxLength": 40},
        "maxItems": config.proposals_per_category}}}  # fmt: skip
    requests = []
    for name in sorted(categories):
        members = np.asarray(categories[name])
        shown = rng.choice(members, min(len(members), config.titles_per_category), replace=False)
        listing = "\n".join(f"- {titles[i]}" for i in sorted(shown))
        prompt = (f"Category: {name}\n<context>\n{listing}\n</context>\nPropose up to "
                  f"{config.proposals_per_category} attribute tags for products of this "
                  'category. Answer as JSON: {"tags": [...]}')  # fmt: skip
        requests.append(Request([{"role": "system", "content": _PROPOSE},
                                 {"role": "user", "content": prompt}], schema,
                                max_tokens=300, stage="tag_vocabulary"))  # fmt: skip
    counts: Counter[str] = Counter()
    for answer in llm.batch(requests):
        proposed = answer.field("tags") or []
        counts.update({normalise_tag(str(t)) for t in proposed} - {""})
    if not counts:
        raise DataError(f"the LLM ({llm.backend.identity}) proposed no usable tag for any "
                        f"category: see {llm.calls.path}")  # fmt: skip
    return counts


def _vocabulary(
    counts: Counter[str], config: TagConfig, encoder: TextEncoder
) -> tuple[list[str], dict[str, str]]:
    """The kept tags (most frequent first, ties alphabetical) and each merged proposal's
    tag. A proposal joins the most similar more frequent kept tag at cosine ≥ the
    threshold; counts add up."""
    order = sorted(counts, key=lambda t: (-counts[t], t))
    vectors = encoder.encode(order, progress=False)
    kept: list[int] = []
    merged: dict[str, str] = {}
    totals = Counter[str]()
    for index, tag in enumerate(order):
        similar = vectors[kept] @ vectors[index] if kept else np.zeros(0)
        if len(similar) and similar.max() >= config.synonym_threshold:
            target = order[kept[int(similar.argmax())]]
            merged[tag], totals[target] = target, totals[target] + counts[tag]
            continue
        kept.append(index)
        totals[tag] = counts[tag]
    tags = sorted(totals, key=lambda t: (-totals[t], t))[: config.vocabulary_size]
    return tags, {k: v for k, v in merged.items() if v in tags}


def _checked_vocabulary(record: Any, path: Path | None) -> list[str]:
    tags = record.get("tags") if isinstance(record, dict) else None
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) for t in tags):
        raise DataError(f"{path}: field 'tags' must be a non-empty list of strings")
    return tags


def _items_to_tag(config: TagConfig, dataset: Dataset) -> np.ndarray:
    if config.items is None or config.items >= dataset.n_items:
        return np.arange(dataset.n_items)
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(dataset.n_items, config.items, replace=False))


def _by_similarity(
    dataset: Dataset, items: np.ndarray, tags: list[str], config: TagConfig, encoder: TextEncoder
) -> list[list[str]]:
    """The tags at cosine ≥ ``threshold`` with each item's text, most similar first."""
    texts = [dataset.item_text[i] for i in items]
    cosine = encoder.encode(texts) @ encoder.encode(tags, progress=False).T
    order = np.argsort(-cosine, axis=1, kind="stable")[:, : config.max_tags]
    return [[tags[t] for t in row if cosine[r, t] >= config.threshold]
            for r, row in enumerate(order)]  # fmt: skip


def _by_llm(
    dataset: Dataset, items: np.ndarray, tags: list[str], config: TagConfig, llm: LLM
) -> list[list[str]]:
    """The LLM's tags of each item (none where it gave no usable answer; counted)."""
    safe = [grammar_safe(t) for t in tags]
    back = dict(zip(safe, tags, strict=True))
    schema = choice_schema(safe, config.max_tags, key="tags")
    schema["properties"]["tags"]["minItems"] = 0
    options = ", ".join(safe)
    requests = [Request([{"role": "system", "content": _TAG}, {"role": "user", "content": (
        f"Tags: {options}\n<context>\n{dataset.item_text[i]}\n</context>\nWhich of the tags "
        f"apply to this product? At most {config.max_tags}, none if none apply. Answer as "
        'JSON: {"tags": [...]}')}], schema, max_tokens=120, stage="tag_items")
        for i in items]  # fmt: skip
    answers = llm.batch(requests)
    return [list(dict.fromkeys(back[t] for t in a.parsed.get("tags", []) if t in back))
            if a.ok and isinstance(a.parsed, dict) else [] for a in answers]  # fmt: skip


def _tag_frame(dataset: Dataset, items: np.ndarray, chosen: list[list[str]]) -> pd.DataFrame:
    rows = [(int(i), tag) for i, tags in zip(items, chosen, strict=True) for tag in tags]
    frame = pd.DataFrame(rows, columns=["item_idx", "tag"]).astype({"item_idx": "int64"})
    frame.insert(0, "item", dataset.items["item"].to_numpy()[frame["item_idx"].to_numpy()])
    return frame


def _summary(
    config: TagConfig,
    dataset: Dataset,
    items: np.ndarray,
    frame: pd.DataFrame,
    tags: list[str],
    llm: LLM,
) -> dict[str, Any]:
    """Counts, the per-tag frequency table, 20 sampled items with their tags, the
    tagged items' ids when only a sample was tagged, and the LLM's cost per stage."""
    tagged = frame.groupby("item_idx")["tag"].agg(list)
    ids = dataset.items["item"].astype(str).to_numpy()
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(items, min(20, len(items)), replace=False)
    titles = dataset.items["title"].fillna("").astype(str)
    return {
        "backend": llm.described(),
        "items": len(items),
        "tagged_items": ids[items].tolist() if config.items is not None else None,
        "items_with_tags": int(tagged.size),
        "tags_per_item": float(len(frame) / max(1, len(items))),
        "vocabulary": len(tags),
        "frequency": {tag: int(n) for tag, n in frame["tag"].value_counts().items()},
        "unused_tags": sorted(set(tags) - set(frame["tag"])),
        "sample": [
            {
                "item": str(dataset.items["item"].iloc[i]),
                "title": titles.iloc[i],
                "tags": tagged.get(i, []),
            }
            for i in sorted(sample)
        ],
        "llm": llm.totals(),
    }


def read_tags(path: Path, dataset: Dataset, vocabulary: list[str] | None = None) -> tuple[
    np.ndarray, list[str]]:  # fmt: skip
    """A ``tags.parquet`` against ``dataset`` as its multi-hot matrix (items ×
    vocabulary, float32) and the vocabulary (given, else the file's tags in sorted order);
    an item id the Dataset lacks, or a tag outside the given vocabulary, is a DataError
    naming the file and row."""
    frame = pd.read_parquet(path)
    missing = {"item", "tag"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    index = pd.Index(dataset.items["item"])
    rows = index.get_indexer(pd.Index(frame["item"]))
    if (rows < 0).any():
        bad = int(np.flatnonzero(rows < 0)[0])
        raise DataError(f"{path}: row {bad + 1}: field 'item' {frame['item'].iloc[bad]!r} is "
                        "not an item of the Dataset")  # fmt: skip
    vocabulary = vocabulary or sorted(frame["tag"].unique())
    columns = pd.Index(vocabulary).get_indexer(pd.Index(frame["tag"]))
    if (columns < 0).any():
        bad = int(np.flatnonzero(columns < 0)[0])
        raise DataError(f"{path}: row {bad + 1}: field 'tag' {frame['tag'].iloc[bad]!r} is "
                        "not in the vocabulary")  # fmt: skip
    return tag_matrix(rows, columns, dataset.n_items, len(vocabulary)), vocabulary


def tag_matrix(items: np.ndarray, tags: np.ndarray, n_items: int, n_tags: int) -> np.ndarray:
    """Multi-hot ``n_items × n_tags`` float32 matrix of (item, tag) index pairs."""
    out = np.zeros((n_items, n_tags), dtype=np.float32)
    out[items, tags] = 1.0
    return out


def tag_agreement(a: pd.DataFrame, b: pd.DataFrame, items: list[str]) -> float:
    """Mean Jaccard of two taggings' tag sets (``tags.parquet`` frames) over ``items``
    (ids both tagged); an item neither gave a tag counts 1."""
    sets_a = a.groupby("item")["tag"].agg(set).to_dict()
    sets_b = b.groupby("item")["tag"].agg(set).to_dict()
    scores = []
    for item in items:
        first, second = sets_a.get(item, set()), sets_b.get(item, set())
        union = first | second
        scores.append(len(first & second) / len(union) if union else 1.0)
    return float(np.mean(scores)) if scores else float("nan")
