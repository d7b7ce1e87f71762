"""The taxonomy tree on hand-made catalogues: levels, leaf splitting (k-means and the
hash fallback), interest leaves, and the taxonomy.json round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coldrec.data import Dataset, PrepareConfig, prepare
from coldrec.data.frames import Frames, make_interactions, make_items
from coldrec.data.taxonomy import Taxonomy, TaxonomyConfig, build_taxonomy
from coldrec.errors import DataError

PATHS = {
    "a": ["Beauty", "Makeup", "Face", "Concealers", "Sticks"],
    "b": ["Beauty", "Makeup", "Face", "Concealers"],
    "c": ["Beauty", "Makeup", "Eyes"],
    "d": ["Beauty", "Makeup"],
    "e": ["Beauty", "Skin Care", "Face", "Cleansers"],
    "f": [],
}


def catalogue(paths: dict[str, list[str]], history: list[tuple[str, str, int]]) -> Dataset:
    """A Dataset over items with the given paths whose train split is exactly
    ``history`` ((user, item, ts) rows): as many later rows of another user follow, and
    the time cut is at half the rows."""
    records = [{"item": i, "title": f"title {i}", "categories": [p] if p else []}
               for i, p in paths.items()]  # fmt: skip
    first = next(iter(paths))
    late = [("late", first, 10**6 + k) for k in range(len(history))]
    users, items, ts = zip(*history, *late, strict=True)
    interactions = make_interactions(users, items, ts, [None] * len(users))
    frames = Frames(interactions, make_items(records), "test")
    data = prepare(frames, PrepareConfig(train_share=0.5))
    assert data.meta["train_interactions"] == len(history)
    return data


def test_paths_split_into_categories_subcategories_and_leaves() -> None:
    data = catalogue(PATHS, [("u", i, t) for t, i in enumerate("abcdef")])
    tax = build_taxonomy(data)
    index = {item: i for i, item in enumerate(data.items["item"])}
    category = {item: tax.categories[tax.item_category[index[item]]] for item in PATHS}
    sub = {item: tax.subcategories[tax.item_subcategory[index[item]]] for item in PATHS}
    assert category == {
        "a": "Beauty > Makeup", "b": "Beauty > Makeup", "c": "Beauty > Makeup",
        "d": "Beauty > Makeup", "e": "Beauty > Skin Care", "f": "Uncategorised",
    }  # fmt: skip
    assert sub["a"] == sub["b"] == "Beauty > Makeup > Face > Concealers"  # levels 3-4
    assert sub["c"] == "Beauty > Makeup > Eyes"
    assert sub["d"] == "Beauty > Makeup > General"  # the path stops at the category
    assert sub["f"] == "Uncategorised > General"
    # a and b share a subcategory but not a full path: two leaves
    assert tax.item_leaf[index["a"]] != tax.item_leaf[index["b"]]
    makeup = tax.categories.index("Beauty > Makeup")
    names = [tax.subcategories[s] for s in tax.category_subcategories(makeup)]
    assert names == sorted(sub[i] for i in "bcd")
    concealers = tax.subcategories.index(sub["a"])
    assert tax.subcategory_items(concealers).tolist() == sorted([index["a"], index["b"]])


def big_leaf(n_items: int, seed: int = 0) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """``n_items`` items on one path, history rows for each, and vectors in three
    planted, well separated clusters (the cluster of item ``i`` is ``i % 3``)."""
    paths = {f"i{k:04d}": ["Beauty", "Hair", "Shampoo"] for k in range(n_items)}
    history = [(f"u{k % 7}", item, k) for k, item in enumerate(paths)]
    data = catalogue(paths, history)
    planted = np.arange(data.n_items) % 3
    rng = np.random.default_rng(seed)
    centres = np.eye(8, dtype=np.float32)[:3]
    vectors = centres[planted] + 0.05 * rng.normal(size=(data.n_items, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return data, vectors, planted


def test_large_leaves_split_by_spherical_kmeans_along_the_planted_clusters() -> None:
    data, vectors, planted = big_leaf(450)
    tax = build_taxonomy(data, vectors, TaxonomyConfig(max_leaf=200))
    assert len(tax.leaves) == 3  # ceil(450 / 200)
    for leaf in tax.leaves:
        assert len(leaf.items) <= 200
        assert len(set(planted[leaf.items])) == 1  # one planted cluster per leaf
        assert leaf.parts == 3 and leaf.description.startswith("Beauty > Hair > Shampoo (part ")
    assert sorted(np.concatenate([leaf.items for leaf in tax.leaves])) == list(range(450))


def test_without_vectors_large_leaves_fall_back_to_hash_buckets() -> None:
    data, _, _ = big_leaf(450)
    config = TaxonomyConfig(max_leaf=200)
    first, again = build_taxonomy(data, None, config), build_taxonomy(data, None, config)
    assert sorted(len(leaf.items) for leaf in first.leaves) == [50, 200, 200]
    assert (first.item_leaf == again.item_leaf).all()  # the hash is stable


def test_clusters_still_too_large_after_the_rounds_are_hash_bucketed() -> None:
    data, vectors, _ = big_leaf(450)
    same = np.tile(vectors[:1], (len(vectors), 1))  # k-means cannot separate these
    tax = build_taxonomy(data, same, TaxonomyConfig(max_leaf=100, split_rounds=1))
    assert max(len(leaf.items) for leaf in tax.leaves) <= 100
    assert sum(len(leaf.items) for leaf in tax.leaves) == 450


def test_interest_leaves_are_recent_first_unique_and_at_most_five() -> None:
    paths = {f"x{k}": ["Beauty", "Cat", f"Sub{k}"] for k in range(7)}
    order = ["x0", "x1", "x0", "x2", "x3", "x4", "x5", "x6", "x6"]  # oldest first
    data = catalogue(paths, [("u", item, t) for t, item in enumerate(order)])
    tax = build_taxonomy(data, None, TaxonomyConfig(interest_leaves=5))
    user = int(np.flatnonzero(data.users["user"] == "u")[0])
    index = {item: i for i, item in enumerate(data.items["item"])}
    leaf = {item: int(tax.item_leaf[index[item]]) for item in paths}
    # most recent first: x6 (twice), x5, x4, x3, x2 -> five leaves; x1 and x0 left out
    assert tax.user_leaves[user] == [leaf[i] for i in ("x6", "x5", "x4", "x3", "x2")]
    short = build_taxonomy(data, None, TaxonomyConfig(interest_items=3))
    assert short.user_leaves[user] == [leaf["x6"], leaf["x5"]]  # last 3 items: x6, x6, x5


def test_taxonomy_json_round_trip_and_checks(tmp_path: Path) -> None:
    data, vectors, _ = big_leaf(450)
    tax = build_taxonomy(data, vectors, TaxonomyConfig(max_leaf=200))
    path = tax.save(tmp_path / "taxonomy.json")
    back = Taxonomy.load(path, data.n_items)
    assert back.categories == tax.categories and back.subcategories == tax.subcategories
    assert (back.item_leaf == tax.item_leaf).all() and back.user_leaves == tax.user_leaves
    assert [leaf.description for leaf in back.leaves] == [leaf.description for leaf in tax.leaves]
    broken = json.loads(path.read_text())
    broken["leaves"][0]["items"] = broken["leaves"][0]["items"][1:]  # an item in no leaf
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(DataError, match="exactly once"):
        Taxonomy.load(tmp_path / "broken.json", data.n_items)
    (tmp_path / "bad.json").write_text('{"leaves": 3}')
    with pytest.raises(DataError, match="not a coldrec taxonomy"):
        Taxonomy.load(tmp_path / "bad.json")


def test_items_without_a_usable_vector_do_not_stop_the_split() -> None:
    data, vectors, planted = big_leaf(450)
    broken = vectors.copy()
    broken[5] = np.nan
    broken[7] = 0.0
    tax = build_taxonomy(data, broken, TaxonomyConfig(max_leaf=200))
    assert len(tax.leaves) == 3 and max(len(leaf.items) for leaf in tax.leaves) <= 200
    good = np.ones(450, dtype=bool)
    good[[5, 7]] = False
    for leaf in tax.leaves:  # the usable items still split along the planted clusters
        members = leaf.items[good[leaf.items]]
        assert len(set(planted[members])) == 1
