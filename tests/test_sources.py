"""Each source on small fixtures written in its real format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from coldrec.data import Dataset
from coldrec.data.frames import INTERACTION_COLUMNS, ITEM_COLUMNS, Frames
from coldrec.data.prepare import PrepareConfig, prepare
from coldrec.data.sources import (
    Amazon2014Source,
    Amazon2018Source,
    LCRecSource,
    RecBoleSource,
    SyntheticSource,
    TabularSource,
)
from coldrec.errors import DataError


def write(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


AMAZON14_REVIEWS = [
    json.dumps({"reviewerID": "U1", "asin": "A", "unixReviewTime": 100, "overall": 5.0}),
    json.dumps({"reviewerID": "U1", "asin": "B", "unixReviewTime": 200}),
    "{not json",
    json.dumps({"reviewerID": "U2", "asin": "C", "unixReviewTime": 150, "overall": 3.0}),
    json.dumps({"reviewerID": "U2", "unixReviewTime": 160}),
    "",
    json.dumps({"reviewerID": "Ü3", "asin": "A", "unixReviewTime": 300, "overall": 1.0}),
]
AMAZON14_META = [
    repr(
        {
            "asin": "A",
            "title": "Rosé\tLip Tint &amp; Balm",
            "price": 5.04,
            "categories": [["Beauty", "Makeup"], ["Beauty", "Makeup", "Lips", "Tint"]],
            "brand": "Läkerol",
            "salesRank": {"Beauty": 10},
        }
    ),
    repr({"asin": "B", "title": "Shampoo", "categories": [["Beauty", "Hair Care"]]}),
    "{'asin': 'C', 'title': 'broken literal'",
    repr({"asin": "C", "categories": [["Beauty", "Fragrance"]]}),
]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_amazon2014_reads_reviews_and_python_literal_meta(tmp_path: Path, suffix: str) -> None:
    reviews = write(tmp_path / f"reviews_Beauty_5.json{suffix}", AMAZON14_REVIEWS)
    meta = write(tmp_path / f"meta_Beauty.json{suffix}", AMAZON14_META)
    frames = Amazon2014Source(interactions=reviews, items=meta).load()

    inter = frames.interactions
    assert inter["user"].tolist() == ["U1", "U1", "U2", "Ü3"]
    assert inter["item"].tolist() == ["A", "B", "C", "A"]
    assert inter["ts"].tolist() == [100, 200, 150, 300]
    assert inter["rating"].tolist()[0] == 5.0
    assert pd.isna(inter["rating"].iloc[1])  # missing `overall` means no rating
    assert frames.skipped.total == 3
    assert frames.skipped.counts == {str(reviews): 2, str(meta): 1}
    assert (
        frames.skipped.examples[0]
        == f"{reviews}:3: not valid JSON (Expecting property name enclosed in double quotes)"
    )
    assert frames.skipped.examples[1] == f"{reviews}:5: field 'asin' is missing"
    assert frames.skipped.examples[2].startswith(f"{meta}:3: not a Python literal")

    items = frames.items.set_index("item")
    assert items.loc["A", "title"] == "Rosé Lip Tint & Balm"  # tab and HTML entity cleaned
    assert items.loc["A", "brand"] == "Läkerol"
    assert items.loc["A", "price"] == 5.04
    assert items.loc["A", "categories"] == [
        ["Beauty", "Makeup"],
        ["Beauty", "Makeup", "Lips", "Tint"],
    ]
    assert pd.isna(items.loc["C", "title"])
    assert pd.isna(items.loc["B", "price"])


def test_amazon2018_reads_json_meta_with_text_price(tmp_path: Path) -> None:
    row = {"overall": 4.0, "reviewerID": "U1", "asin": "A", "unixReviewTime": 10, "verified": True}
    reviews = write(
        tmp_path / "Beauty.json.gz",
        [json.dumps(row), json.dumps(row), json.dumps({**row, "overall": "five"})],
    )
    meta = write(
        tmp_path / "meta_Beauty.json",
        [
            json.dumps(
                {
                    "asin": "A",
                    "title": "Serum",
                    "brand": "Acme",
                    "price": "$1,012.99",
                    "category": ["Beauty", "Skin Care", "Serums"],
                    "description": ["Light.", "Fast."],
                }
            ),
            json.dumps({"asin": "B", "category": "Beauty"}),
        ],
    )
    frames = Amazon2018Source(interactions=reviews, items=meta).load()

    assert len(frames.interactions) == 2  # exact duplicates are kept here, removed in prepare
    assert frames.skipped.examples == [
        f"{reviews}:3: field 'overall' is not a number: 'five'",
        f"{meta}:2: field 'category' is not a list of strings",
    ]
    item = frames.items.iloc[0]
    assert item["price"] == 1012.99
    assert item["categories"] == [["Beauty", "Skin Care", "Serums"]]
    assert item["description"] == "Light. Fast."


def test_lcrec_positions_become_time_and_data_are_order_only(tmp_path: Path) -> None:
    inter = tmp_path / "Office.inter.json"
    inter.write_text(json.dumps({"0": [0, 2, 1], "1": [2]}))
    items = tmp_path / "Office.item.json"
    items.write_text(
        json.dumps(
            {
                "0": {
                    "title": "Pen",
                    "description": "",
                    "brand": "B",
                    "categories": "Office Products, Writing, Pens",
                },
                "1": {"title": "Ink", "categories": "Office Products, Ink"},
                "2": {"title": "Tape", "categories": ["not", "a", "string"]},
            }
        )
    )
    frames = LCRecSource(interactions=inter, items=items).load()

    assert frames.order_only
    assert frames.interactions[["user", "item", "ts"]].values.tolist() == [
        ["0", "0", 0],
        ["0", "2", 1],
        ["0", "1", 2],
        ["1", "2", 0],
    ]
    assert frames.items.set_index("item").loc["0", "categories"] == [
        ["Office Products", "Writing", "Pens"]
    ]
    assert pd.isna(frames.items.set_index("item").loc["0", "description"])
    assert frames.skipped.examples == [f"{items}: item '2': field 'categories' is not a string"]


def test_lcrec_rejects_a_top_level_list(tmp_path: Path) -> None:
    inter = tmp_path / "X.inter.json"
    inter.write_text("[1, 2]")
    items = tmp_path / "X.item.json"
    items.write_text("{}")
    with pytest.raises(DataError, match=r"X.inter.json: expected a JSON object"):
        LCRecSource(interactions=inter, items=items).load()


def test_recbole_atomic_files(tmp_path: Path) -> None:
    inter = write(
        tmp_path / "ml.inter",
        [
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "1\t10\t4\t881250949",
            "1\t11\t2\t881250950",
            "2\t10\tx\t5",
            "2\t11\t5",
        ],
    )
    item = write(
        tmp_path / "ml.item",
        [
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
            "10\tToy Story\t1995\tAnimation Children's Comedy",
            "11\tHeat\t1995\tAction Crime",
        ],
    )
    frames = RecBoleSource(interactions=inter, items=item).load()

    assert not frames.order_only
    assert frames.interactions["ts"].tolist() == [881250949, 881250950]
    assert frames.interactions["rating"].tolist() == [4.0, 2.0]
    assert frames.skipped.examples == [
        f"{inter}:4: field 'rating' is not a number: 'x'",
        f"{inter}:5: 3 cells, header has 4",
    ]
    toy = frames.items.iloc[0]
    assert toy["title"] == "Toy Story"
    assert toy["categories"] == [["Animation"], ["Children's"], ["Comedy"]]


def test_recbole_user_features_become_codes_of_the_dataset(tmp_path: Path) -> None:
    pairs = [("1", "10"), ("2", "10"), ("3", "11"), ("4", "11"), ("1", "11"), ("2", "11")]
    rows = [f"{user}\t{item}\t{ts}" for ts, (user, item) in enumerate(pairs)]
    inter = write(tmp_path / "ml.inter", ["user_id:token\titem_id:token\ttimestamp:float", *rows])
    item = write(tmp_path / "ml.item", ["item_id:token\ttitle:token_seq", "10\tA", "11\tB"])
    users = write(tmp_path / "ml.user", [
        "user_id:token\tage:token\tgender:token\tzip_code:token",
        "1\t20\tM\tA11", "2\t30\tF\tB22", "3\t40\t\tC33", "9\t50\tF\tD99",
    ])  # fmt: skip
    source = RecBoleSource(interactions=inter, items=item, users=users,
                           user_numeric_buckets=2, max_user_feature_values=3)  # fmt: skip
    frames = source.load()
    # ages 20, 30, 40, 50 in two quantile buckets; 4 zip codes are more than 3 values
    assert frames.users is not None
    assert frames.users["age"].tolist() == ["20-30", "20-30", "40-50", "40-50"]
    assert "zip_code" not in frames.users
    assert frames.warnings == ["user field 'zip_code' has 4 distinct values (more than 3): "
                               "left out as a feature"]  # fmt: skip

    dataset = prepare(frames, PrepareConfig(split="global-time", train_share=0.5))
    # users 1..4; user 3 has no gender, user 4 no row at all (unknown = 0); F < M
    codes = [[1, 2], [1, 1], [2, 0], [0, 0]]
    assert dataset.user_feature_names == ["age", "gender"]
    assert dataset.user_features().tolist() == codes
    assert dataset.meta["filtering"]["users_without_features"] == 1
    dataset.save(tmp_path / "data")
    assert Dataset.load(tmp_path / "data").user_features().tolist() == codes


def test_recbole_without_timestamp_is_order_only(tmp_path: Path) -> None:
    inter = write(tmp_path / "x.inter", ["user_id:token\titem_id:token", "a\t1", "a\t2"])
    item = write(tmp_path / "x.item", ["item_id:token\ttitle:token_seq", "1\tOne", "2\tTwo"])
    frames = RecBoleSource(interactions=inter, items=item).load()
    assert frames.order_only
    assert frames.interactions["ts"].tolist() == [2, 3]  # file line numbers keep the order


def test_recbole_names_a_missing_header_field(tmp_path: Path) -> None:
    inter = write(tmp_path / "x.inter", ["uid:token\titem_id:token", "a\t1"])
    item = write(tmp_path / "x.item", ["item_id:token", "1"])
    with pytest.raises(DataError, match=r"x.inter:1: header lacks field\(s\) \['user_id'\]"):
        RecBoleSource(interactions=inter, items=item).load()


def test_csv_with_column_mapping_and_date_text(tmp_path: Path) -> None:
    inter = tmp_path / "events.csv"
    inter.write_text(
        "uid,iid,when,stars\nu1,i1,2020-01-02,5\nu1,i2,2020-01-03,\n,i1,2020-01-04,4\n"
        "u2,i2,not a date,3\n"
    )
    items = tmp_path / "items.csv"
    items.write_text('id,name,cats\ni1,"Pen, blue",Office > Pens | Office > Sale\ni2,Ink,\n')
    frames = TabularSource(
        interactions=inter,
        items=items,
        columns={"user": "uid", "item": "iid", "ts": "when", "rating": "stars"},
        item_columns={"item": "id", "title": "name", "categories": "cats"},
    ).load()

    assert frames.interactions["ts"].tolist() == [1577923200, 1578009600]
    assert frames.interactions["rating"].tolist()[0] == 5.0
    assert pd.isna(frames.interactions["rating"].iloc[1])
    assert frames.skipped.examples == [
        f"{inter}:4: field 'uid' is empty",
        f"{inter}:5: field 'when' is not a time: 'not a date'",
    ]
    assert frames.items.iloc[0]["categories"] == [["Office", "Pens"], ["Office", "Sale"]]
    assert frames.items.iloc[0]["title"] == "Pen, blue"


def test_parquet_with_list_categories_and_no_time(tmp_path: Path) -> None:
    pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"]}).to_parquet(
        tmp_path / "i.parquet"
    )
    pd.DataFrame(
        {"item": ["x", "y"], "title": ["X", "Y"], "categories": [[["A", "B"]], [["A"], ["C", "D"]]]}
    ).to_parquet(tmp_path / "m.parquet")
    frames = TabularSource(interactions=tmp_path / "i.parquet", items=tmp_path / "m.parquet").load()
    assert frames.order_only
    assert frames.interactions["ts"].tolist() == [0, 1, 2]
    assert frames.items["categories"].tolist() == [[["A", "B"]], [["A"], ["C", "D"]]]


def test_unknown_table_format_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown table format"):
        TabularSource(interactions=tmp_path / "a.xlsx", items=tmp_path / "a.xlsx").load()


FILE_SOURCES = [Amazon2014Source, Amazon2018Source, LCRecSource, RecBoleSource, TabularSource]


@pytest.mark.parametrize("source", FILE_SOURCES)
def test_missing_file_is_one_clear_error(tmp_path: Path, source: type) -> None:
    with pytest.raises(DataError, match=r"file not found: .*nope"):
        source(interactions=tmp_path / "nope", items=tmp_path / "nope").load()


@pytest.mark.parametrize("source", [Amazon2014Source, Amazon2018Source])
def test_a_file_of_only_bad_lines_is_an_error(tmp_path: Path, source: type) -> None:
    reviews = write(tmp_path / "r.json", ["garbage", "more garbage"])
    meta = write(tmp_path / "m.json", [])
    with pytest.raises(DataError, match=r"no interactions could be read from .*r.json"):
        source(interactions=reviews, items=meta).load()


def test_every_source_returns_the_canonical_columns(tmp_path: Path) -> None:
    reviews = write(tmp_path / "r.json", AMAZON14_REVIEWS)
    meta14 = write(tmp_path / "m14.json", AMAZON14_META)
    meta18 = write(tmp_path / "m18.json", [json.dumps({"asin": "A", "price": "$.99"})])
    (tmp_path / "x.inter.json").write_text(json.dumps({"0": [1, 2]}))
    (tmp_path / "x.item.json").write_text(json.dumps({"1": {"title": "T", "categories": "A, B"}}))
    atomic = write(tmp_path / "x.inter", ["user_id:token\titem_id:token", "a\t1"])
    atomic_items = write(tmp_path / "x.item", ["item_id:token\ttitle:token_seq", "1\tOne"])
    (tmp_path / "i.csv").write_text("user,item\na,1\n")
    (tmp_path / "m.csv").write_text("item,title,price\n1,One,2.5\n")
    loaded: list[Frames] = [
        Amazon2014Source(interactions=reviews, items=meta14).load(),
        Amazon2018Source(interactions=reviews, items=meta18).load(),
        LCRecSource(interactions=tmp_path / "x.inter.json", items=tmp_path / "x.item.json").load(),
        RecBoleSource(interactions=atomic, items=atomic_items).load(),
        TabularSource(interactions=tmp_path / "i.csv", items=tmp_path / "m.csv").load(),
        SyntheticSource(n_users=50, n_items=100).load(),
    ]
    for frames in loaded:
        inter, items = frames.interactions, frames.items
        assert tuple(inter.columns) == INTERACTION_COLUMNS, frames.source
        assert tuple(items.columns) == ITEM_COLUMNS, frames.source
        assert [str(inter[c].dtype) for c in INTERACTION_COLUMNS] == [
            "string", "string", "int64", "Float64"], frames.source  # fmt: skip
        assert [str(items[c].dtype) for c in ITEM_COLUMNS] == [
            "string", "string", "object", "string", "Float64", "string"], frames.source  # fmt: skip
    assert loaded[1].items["price"].tolist() == [0.99]
    assert loaded[4].items["price"].tolist() == [2.5]


def test_a_mapped_column_that_is_missing_is_an_error(tmp_path: Path) -> None:
    inter = tmp_path / "events.csv"
    inter.write_text("user,item\nu,i\n")
    items = tmp_path / "items.csv"
    items.write_text("item,title\ni,I\n")
    source = TabularSource(interactions=inter, items=items, columns={"ts": "time"})
    with pytest.raises(DataError, match=r"events.csv: missing column\(s\) \['time'\]"):
        source.load()


def test_parquet_rows_are_named_by_row_number(tmp_path: Path) -> None:
    events = pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "rating": ["5", "bad"]})
    events.to_parquet(tmp_path / "i.parquet")
    pd.DataFrame({"item": ["x", "y"], "title": ["X", "Y"]}).to_parquet(tmp_path / "m.parquet")
    frames = TabularSource(interactions=tmp_path / "i.parquet", items=tmp_path / "m.parquet").load()
    assert frames.skipped.examples == [f"{tmp_path / 'i.parquet'}: row 1: field 'user' is empty"]
    assert frames.interactions["rating"].tolist() == [5.0]


def test_parquet_datetime_time_becomes_seconds(tmp_path: Path) -> None:
    events = pd.DataFrame(
        {
            "user": ["a", "a"],
            "item": ["x", "y"],
            "ts": pd.to_datetime(["2020-01-02 00:00:00", "2020-01-03 00:00:01"]),
        }
    )
    events.to_parquet(tmp_path / "i.parquet")
    pd.DataFrame({"item": ["x", "y"], "title": ["X", "Y"]}).to_parquet(tmp_path / "m.parquet")
    frames = TabularSource(interactions=tmp_path / "i.parquet", items=tmp_path / "m.parquet").load()
    assert frames.interactions["ts"].tolist() == [1577923200, 1578009601]


def test_csv_time_cells_are_read_one_by_one(tmp_path: Path) -> None:
    inter = tmp_path / "events.csv"
    inter.write_text("user,item,ts\na,x,100\na,y,2020-01-02\n\nb,x,soon\nb,y,200.7\n")
    items = tmp_path / "items.csv"
    items.write_text("item,title\nx,X\ny,Y\n,Orphan\n")
    frames = TabularSource(interactions=inter, items=items).load()
    assert frames.interactions["ts"].tolist() == [100, 1577923200, 200]
    # The blank line 4 does not shift the line numbers of later rows.
    assert frames.skipped.examples == [
        f"{inter}:5: field 'ts' is not a time: 'soon'",
        f"{items}:4: field 'item' is empty",
    ]
