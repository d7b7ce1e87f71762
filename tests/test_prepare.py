"""Preparation rules on hand-made frames with answers worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldrec.data import Dataset, PrepareConfig, prepare
from coldrec.data.prepare import item_text, validation_view
from coldrec.errors import DataError
from tests.helpers import frames_of


def test_ratings_become_weights_and_low_ratings_are_dropped() -> None:
    data = prepare(
        frames_of(
            [
                ("u", "a", 1, 5.0),
                ("u", "b", 2, 4.0),
                ("u", "c", 3, 3.0),
                ("u", "d", 4, 2.0),
                ("u", "e", 5, None),
                ("v", "a", 6, 3.5),
            ]
        ),
        PrepareConfig(split="loo"),
    )
    by_pair = {
        (u, i): w
        for u, i, w in data.interactions[["user", "item", "weight"]].itertuples(index=False)
    }
    assert by_pair == {
        ("u", "a"): 1.0,
        ("u", "b"): 1.0,
        ("u", "c"): 0.3,
        ("u", "e"): 1.0,
        ("v", "a"): 0.3,
    }
    assert data.meta["filtering"]["dropped_low_rating"] == 1
    assert data.meta["filtering"]["weak_positives"] == 2


def test_thresholds_are_configurable() -> None:
    config = PrepareConfig(split="loo", strong_rating=5, weak_rating=2, weak_weight=0.5)
    data = prepare(frames_of([("u", "a", 1, 5.0), ("u", "b", 2, 4.0), ("u", "c", 3, 1.0)]), config)
    assert data.interactions["weight"].tolist() == [1.0, 0.5]


def test_interactions_without_item_metadata_are_dropped_and_counted() -> None:
    rows = [
        ("u", "a", 1),
        ("u", "x", 2),
        ("u", "b", 3),
        ("v", "x", 3),
        ("v", "a", 4),
        ("v", "b", 5),
    ]
    data = prepare(frames_of(rows, items=["a", "b"]), PrepareConfig(split="loo"))
    assert set(data.interactions["item"]) == {"a", "b"}
    assert data.meta["filtering"]["dropped_no_metadata"] == 2
    assert data.meta["filtering"]["items_without_metadata"] == 1


def test_an_item_with_neither_title_nor_category_has_no_metadata() -> None:
    frames = frames_of([("u", "a", 1), ("u", "b", 2), ("u", "c", 3)])
    frames.items.loc[frames.items["item"] == "b", "title"] = None
    frames.items["categories"] = [[["R"]], [], []]  # c keeps its title, b has nothing
    data = prepare(frames, PrepareConfig(split="loo"))
    assert data.meta["filtering"]["dropped_no_metadata"] == 1
    assert data.items["item"].tolist() == ["a", "c"]


def test_exact_duplicates_are_removed_but_repeat_purchases_kept() -> None:
    rows = [("u", "a", 1, 5.0), ("u", "a", 1, 5.0), ("u", "a", 9, 5.0), ("u", "b", 2, 5.0)]
    exact = prepare(frames_of(rows), PrepareConfig(split="loo"))
    assert exact.meta["filtering"]["duplicates_removed"] == 1
    assert exact.meta["interactions"] == 3
    pair = prepare(frames_of(rows), PrepareConfig(split="loo", duplicates="pair"))
    assert pair.meta["filtering"]["duplicates_removed"] == 2
    assert sorted(pair.interactions["ts"]) == [1, 2]
    # The first interaction in time is kept, even when a later one comes first in the file.
    late_first = [("u", "a", 9, 5.0), ("u", "a", 1, 4.0), ("u", "b", 2, 5.0)]
    kept = prepare(frames_of(late_first), PrepareConfig(split="loo", duplicates="pair"))
    assert kept.interactions[["item", "ts"]].values.tolist() == [["a", 1], ["b", 2]]


def test_kcore_iterates_until_stable() -> None:
    # 2-core: w has one interaction → removed; then item c has one → removed; then v has one.
    rows = [
        ("u", "a", 1),
        ("u", "b", 2),
        ("t", "a", 3),
        ("t", "b", 4),
        ("v", "c", 5),
        ("v", "a", 6),
        ("w", "c", 7),
    ]
    data = prepare(frames_of(rows), PrepareConfig(split="loo", kcore=2))
    assert sorted(set(data.interactions["user"])) == ["t", "u"]
    assert data.meta["filtering"]["kcore_removed"] == 3


def test_global_split_is_a_stable_time_cut_with_exact_cold_sets() -> None:
    # 10 rows → first int(0.7·10) = 7 by time are train; equal times keep file order.
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u2", "a", 2),
        ("u2", "c", 3),
        ("u3", "b", 4),
        ("u3", "a", 5),
        ("u1", "c", 6),
        ("u2", "d", 6),
        ("u4", "d", 7),
        ("u4", "a", 8),
    ]
    data = prepare(frames_of(list(reversed(rows[:4])) + rows[4:]))
    inter = data.interactions
    assert inter["ts"].tolist() == [1, 2, 2, 3, 4, 5, 6, 6, 7, 8]
    assert inter["user"].tolist()[1:3] == ["u2", "u1"]  # reversed input order kept at ts 2
    assert inter["split"].tolist() == ["train"] * 7 + ["test"] * 3
    assert data.items.loc[data.cold_items, "item"].tolist() == ["d"]
    assert data.users.loc[data.cold_users, "user"].tolist() == ["u4"]
    assert data.meta["cut_ts"] == 6
    assert data.meta["cold_test_interactions"] == 2
    assert data.stats()["train_interactions"] == 7


def test_validation_carve_out_mirrors_the_test_cut_inside_train() -> None:
    rows = [(f"u{i % 3}", f"i{i}", i) for i in range(20)]
    data = prepare(frames_of(rows), PrepareConfig(valid_share=0.3))
    # 14 rows before the 70% cut; the fit part is the first int(0.7·14) = 9, the other 5 valid.
    assert data.interactions["split"].tolist() == ["train"] * 9 + ["valid"] * 5 + ["test"] * 6
    assert data.meta["valid_cold_items"] == 5


def test_cold_means_never_seen_before_test_validation_included() -> None:
    # a, a2, a3: train; d: only valid; b: valid then test (not cold); c: only test (cold).
    rows = [("u", "a", 1), ("v", "a", 2), ("u", "a2", 3), ("v", "a3", 4), ("u", "d", 5),
            ("w", "a", 6), ("w", "b", 7), ("v", "b", 8), ("v", "a2", 9),
            ("w", "c", 10)]  # fmt: skip
    data = prepare(frames_of(rows), PrepareConfig(valid_share=0.3))
    split = dict(zip(data.interactions["ts"], data.interactions["split"].astype(str), strict=True))
    assert [split[t] for t in range(1, 11)] == ["train"] * 4 + ["valid"] * 3 + ["test"] * 3
    assert data.items.loc[data.cold_items, "item"].tolist() == ["c"]
    assert data.meta["valid_cold_items"] == 2  # b and d appear first in valid
    assert data.users.loc[data.cold_users, "user"].tolist() == []


def test_equal_timestamps_keep_the_input_order_at_scale() -> None:
    # Far more ties than numpy's small-array insertion sort handles (16): a quicksort
    # would reorder them; the stable sort keeps the file order around the cut.
    rows = [(f"u{i}", f"i{i % 7}", 5) for i in range(200)] + [("x", "i0", 1)]
    data = prepare(frames_of(rows))
    assert data.interactions["user"].tolist() == ["x"] + [f"u{i}" for i in range(200)]
    train_users = data.interactions.loc[data.interactions["split"] == "train", "user"]
    assert train_users.tolist() == ["x"] + [f"u{i}" for i in range(int(0.7 * 201) - 1)]


def test_leave_one_out_takes_each_users_last_items() -> None:
    rows = [
        ("u", "a", 1),
        ("u", "b", 2),
        ("u", "c", 3),
        ("v", "a", 1),
        ("v", "c", 5),
        ("w", "b", 4),
    ]
    data = prepare(frames_of(rows), PrepareConfig(split="loo", valid_share=0.1))
    got = {
        (u, i): s
        for u, i, s in data.interactions[["user", "item", "split"]].itertuples(index=False)
    }
    assert got == {
        ("u", "a"): "train",
        ("u", "b"): "valid",
        ("u", "c"): "test",
        ("v", "a"): "train",
        ("v", "c"): "test",
        ("w", "b"): "train",
    }
    assert data.items.loc[data.cold_items, "item"].tolist() == ["c"]  # only ever in test


def test_user_ratio_split_per_user() -> None:
    rows = [("u", f"i{k}", k) for k in range(5)] + [("v", "i0", 9), ("v", "i9", 10)]
    data = prepare(frames_of(rows), PrepareConfig(split="user-ratio", train_share=0.6))
    assert data.interactions.sort_values(["user", "ts"])["split"].tolist() == [
        "train",
        "train",
        "train",
        "test",
        "test",
        "train",
        "test",
    ]


def test_user_ratio_validation_carve_out() -> None:
    rows = [("u", f"i{k}", k) for k in range(10)]
    data = prepare(frames_of(rows), PrepareConfig(split="user-ratio", valid_share=0.3))
    # 7 train rows by floor(0.7·10); the fit part is floor(0.7·7) = 4, then 3 valid.
    assert data.interactions["split"].tolist() == ["train"] * 4 + ["valid"] * 3 + ["test"] * 3


def test_item_holdout_with_validation_items() -> None:
    rows = [(f"u{k % 7}", f"i{k % 10}", k) for k in range(60)]
    config = PrepareConfig(split="item-holdout", holdout_share=0.2, valid_share=0.25, seed=1)
    data = prepare(frames_of(rows), config)
    per_item = data.interactions.groupby("item")["split"].agg(lambda s: set(s.astype(str)))
    sizes = per_item.map(lambda s: next(iter(s))).value_counts().to_dict()
    assert all(len(s) == 1 for s in per_item)
    assert sizes == {"train": 6, "test": 2, "valid": 2}  # 20% of 10; 25% of the other 8


def test_item_holdout_removes_items_from_training_entirely() -> None:
    rows = [(f"u{k % 7}", f"i{k % 10}", k) for k in range(60)]
    data = prepare(frames_of(rows), PrepareConfig(split="item-holdout", holdout_share=0.3, seed=3))
    split = data.interactions.groupby("item")["split"].agg(lambda s: set(s.astype(str)))
    assert all(len(s) == 1 for s in split)  # each item wholly train or wholly test
    held = sorted(i for i, s in split.items() if s == {"test"})
    assert len(held) == 3
    assert data.items.loc[data.cold_items, "item"].tolist() == held
    again = prepare(frames_of(rows), PrepareConfig(split="item-holdout", holdout_share=0.3, seed=3))
    assert again.items.loc[again.cold_items, "item"].tolist() == held


def test_random_split_shares_and_seed() -> None:
    rows = [(f"u{k % 7}", f"i{k % 13}", k) for k in range(100)]
    config = PrepareConfig(split="random", train_share=0.8, valid_share=0.25, seed=5)
    split = prepare(frames_of(rows), config).interactions.sort_values("ts")["split"]
    # int(0.8·100) = 80 train rows, of which the last int(0.75·80) = 60 onward are valid
    assert split.value_counts().to_dict() == {"train": 60, "valid": 20, "test": 20}
    # the rows are drawn, not cut by time: test is not the latest fifth
    assert (split.iloc[80:] == "test").sum() < 20
    again = prepare(frames_of(rows), config).interactions.sort_values("ts")["split"]
    other = prepare(frames_of(rows), config.model_copy(update={"seed": 6}))
    assert again.tolist() == split.tolist()
    assert other.interactions.sort_values("ts")["split"].tolist() != split.tolist()
    # the permutation of numpy's generator decides which rows: worked out independently
    order = np.random.default_rng(5).permutation(100)
    assert set(np.flatnonzero((split == "test").to_numpy())) == set(order[80:].tolist())


def test_order_only_data_default_to_leave_one_out_and_refuse_a_time_cut() -> None:
    rows = [("u", "a", 0), ("u", "b", 1), ("v", "b", 0), ("v", "a", 1)]
    assert prepare(frames_of(rows, order_only=True)).meta["prepare"]["split"] == "loo"
    with pytest.raises(DataError, match="order-only"):
        prepare(frames_of(rows, order_only=True), PrepareConfig(split="global-time"))


def test_nothing_left_after_filtering_is_an_error() -> None:
    with pytest.raises(DataError, match="no interactions left"):
        prepare(frames_of([("u", "a", 1, 1.0)]))


@pytest.mark.parametrize(
    ("config", "empty"),
    [
        (PrepareConfig(train_share=0.01), "train"),
        (PrepareConfig(split="item-holdout", holdout_share=0.01), "test"),
        (PrepareConfig(valid_share=0.99), "train"),
    ],
)
def test_an_empty_train_or_test_split_is_an_error(config: PrepareConfig, empty: str) -> None:
    rows = [(f"u{k % 3}", f"i{k % 5}", k) for k in range(20)]
    with pytest.raises(DataError, match=f"leaves {empty} empty"):
        prepare(frames_of(rows), config)


def test_item_text_uses_the_longest_path() -> None:
    assert item_text("Red Lipstick", [["Beauty", "Makeup"], ["Beauty", "Makeup", "Lips"]]) == (
        "Red Lipstick | Beauty > Makeup > Lips"
    )
    assert item_text(None, [["Beauty"]]) == "Beauty"
    assert item_text("Only title", []) == "Only title"


def test_ids_are_contiguous_and_follow_sorted_original_ids() -> None:
    data = prepare(
        frames_of([("z", "b", 1), ("y", "a", 2), ("y", "c", 3), ("x", "b", 4)]),
        PrepareConfig(split="loo"),
    )
    assert data.users["user"].tolist() == ["x", "y", "z"]
    assert data.items["item"].tolist() == ["a", "b", "c"]
    inter = data.interactions
    assert (data.users["user"].to_numpy()[inter["user_idx"]] == inter["user"].to_numpy()).all()
    assert (data.items["item"].to_numpy()[inter["item_idx"]] == inter["item"].to_numpy()).all()
    assert data.item_text == ["title a | Root > a", "title b | Root > b", "title c | Root > c"]
    assert [s.tolist() for s in data.sequences()] == [[1], [0], [1]]  # x and z: one row each
    assert [s.tolist() for s in data.sequences("train", "test")] == [[1], [0, 2], [1]]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    data = prepare(frames_of([("u", "a", 1, 5.0), ("u", "b", 2), ("v", "a", 3), ("v", "c", 4)]))
    data.save(tmp_path / "ds")
    loaded = Dataset.load(tmp_path / "ds")
    pd.testing.assert_frame_equal(loaded.interactions, data.interactions)
    pd.testing.assert_frame_equal(loaded.items, data.items)
    pd.testing.assert_frame_equal(loaded.users, data.users)
    assert loaded.meta == data.meta
    data.save(tmp_path / "ds")  # overwriting an existing folder works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_load_checks_counts_against_meta(tmp_path: Path) -> None:
    data = prepare(frames_of([("u", "a", 1), ("u", "b", 2), ("v", "a", 3), ("v", "c", 4)]))
    data.save(tmp_path / "ds")
    data.interactions.iloc[:-1].to_parquet(tmp_path / "ds" / "interactions.parquet", index=False)
    with pytest.raises(DataError, match=r"meta.json: counts disagree"):
        Dataset.load(tmp_path / "ds")


events = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 8), st.integers(0, 20)), min_size=2, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_global_split_invariants(rows: list[tuple[int, int, int]]) -> None:
    frames = frames_of([(f"u{u}", f"i{i}", t) for u, i, t in rows])
    n = len(set(rows))  # exact duplicates are removed
    if int(0.7 * n) in (0, n):
        with pytest.raises(DataError, match="empty"):
            prepare(frames)
        return
    data = prepare(frames)
    inter = data.interactions
    train, test = inter[inter["split"] == "train"], inter[inter["split"] == "test"]
    assert len(train) == int(0.7 * len(inter))
    if len(train) and len(test):
        assert test["ts"].min() >= train["ts"].max()  # no test row earlier than a train row
    expected_cold = sorted(set(test["item"]) - set(train["item"]))
    assert data.items.loc[data.cold_items, "item"].tolist() == expected_cold
    assert data.users.loc[data.cold_users, "user"].tolist() == sorted(
        set(test["user"]) - set(train["user"])
    )
    assert np.isin(data.cold_items, train["item_idx"]).sum() == 0


def test_validation_view_carves_the_history_like_the_test_cut() -> None:
    rows = [(f"u{i % 4}", f"i{i}", i) for i in range(20)]
    data = prepare(frames_of(rows))  # 14 train, 6 test
    view = validation_view(data, share=0.3)
    # History = the first 14 rows; its own 70% cut: int(0.7·14) = 9 train, 5 test.
    assert view.interactions["ts"].tolist() == list(range(14))
    assert view.interactions["split"].tolist() == ["train"] * 9 + ["test"] * 5
    assert sorted(view.items.loc[view.cold_items, "item"]) == sorted(f"i{i}" for i in range(9, 14))
    assert (view.n_items, view.n_users) == (data.n_items, data.n_users)  # ids unchanged
    assert view.meta["test_interactions"] == 5 and view.meta["cut_ts"] == 9
    assert view.meta["cold_test_interactions"] == 5


def test_validation_view_uses_existing_valid_rows() -> None:
    rows = [(f"u{i % 4}", f"i{i}", i) for i in range(20)]
    data = prepare(frames_of(rows), PrepareConfig(valid_share=0.3))
    view = validation_view(data)
    before = data.interactions["split"].astype(str).tolist()
    assert view.interactions["split"].astype(str).tolist() == [
        "test" if s == "valid" else s for s in before if s != "test"
    ]


def test_low_ratings_become_real_negatives_known_only_before_the_users_test(
    tmp_path: Path,
) -> None:
    frames = frames_of(
        [("u1", "a", 1, 5.0), ("u1", "b", 2, 1.0), ("u1", "c", 3, 4.0), ("u1", "d", 9, 2.0),
         ("u2", "a", 4, 4.0), ("u2", "c", 5, 5.0), ("u2", "b", 6, 2.0), ("u3", "z", 7, 1.0),
         ("u1", "b", 8, 4.0), ("u2", "d", 10, 5.0)],
    )  # fmt: skip
    dataset = prepare(frames, PrepareConfig(split="global-time", train_share=0.7,
                                            low_ratings="negatives"))  # fmt: skip
    # low ratings: u1-b (ts 2), u2-b (6), u3-z (7: unknown user and item), u1-d (9)
    negatives = dataset.negatives
    assert negatives is not None and len(negatives) == 3
    assert dataset.meta["filtering"]["negatives_of_unknown_users_or_items"] == 1
    assert len(dataset.interactions) == 6  # low ratings are never interactions
    # the cut puts ts 8 and 10 in test: u1's first test is 8 (u1-d at 9 is after it),
    # u2's is 10 (u2-b at 6 is before it)
    known = dataset.known_negatives()
    users, items = dataset.users["user"].tolist(), dataset.items["item"].tolist()
    pairs = {(users[u], items[i]) for u, i in zip(known["user_idx"], known["item_idx"],
                                                   strict=True)}  # fmt: skip
    assert pairs == {("u1", "b"), ("u2", "b")}
    dataset.save(tmp_path / "data")
    loaded = Dataset.load(tmp_path / "data").negatives
    assert loaded is not None and loaded.equals(negatives)
    assert prepare(frames, PrepareConfig(split="global-time", train_share=0.7)).negatives is None
