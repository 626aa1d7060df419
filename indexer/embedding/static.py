"""A static (model2vec-style) embedder distilled from the shipped all-MiniLM-L6-v2 weights.

Opt-in with `[embedder] name = "static"`, for tenants where ingest speed matters more than
recall (see bench/RESULTS.md for its recall next to MiniLM's). Distillation runs once, offline
and deterministically, from the same safetensors file the MiniLM embedders read:

1. every wordpiece of the vocabulary (the [unusedN] slots excepted) goes through the numpy
   MiniLM encoder alone, as ``[CLS] piece [SEP]``, and is mean-pooled as MiniLM pools;
2. the 30k vectors are centred and projected by PCA onto their first DIM components
   (an SVD in float64: deterministic for the same weights);
3. each row is scaled by a SIF weight ``a / (a + p)``, p a Zipf estimate of the piece's
   probability from its vocabulary rank (BERT's vocabulary is roughly frequency ordered), so
   "the" and "of" count little.

The table (vocab x DIM float32) is cached under `cache_dir`, keyed by the weights' SHA-256 and
BUILD_VERSION, written atomically, rebuilt if missing or damaged. A passage's vector is the mean
of its pieces' rows, L2-normalised: no network, no attention, ~100x the encoder's speed.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import EmbedderUnavailable
from indexer.embedding import Vectors
from indexer.embedding.minilm import (
    Tokenizers,
    _encode_batch,
    default_model_dir,
    l2_normalise,
    load_weights,
)

BUILD_VERSION = 1  # bump when the distillation below changes: older cached tables are ignored
DIM = 256
SIF = 1e-3
_BATCH = 1024

F32 = npt.NDArray[np.float32]


def table_path(cache_dir: Path, digest: str) -> Path:
    return cache_dir / f"minilm-l6-static-d{DIM}-b{BUILD_VERSION}-{digest[:16]}.npy"


def distil(model_dir: Path) -> F32:
    """The (vocab, DIM) table for the weights in `model_dir` (minutes of CPU; cache it)."""
    from indexer.embedding.minilm import _BLAS

    weights = load_weights(model_dir)
    tok = Tokenizers(model_dir, 256)
    vocab = tok.tokenizer.get_vocab()
    size = len(vocab)
    pieces = sorted(vocab.items(), key=lambda kv: kv[1])
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    raw = np.zeros((size, 384), dtype=np.float32)
    keep = [i for piece, i in pieces if not piece.startswith("[unused")]
    with _BLAS.held():  # one BLAS thread: same sums in the same order on every run
        for b in range(0, len(keep), _BATCH):
            idx = keep[b : b + _BATCH]
            raw[idx] = _encode_batch(weights, [[cls, i, sep] for i in idx])
    rows = raw[keep].astype(np.float64)
    mean = rows.mean(axis=0)
    _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
    comps = vt[:DIM]
    # An SVD's signs are arbitrary: fix each component's sign by its largest coefficient.
    signs = np.sign(comps[np.arange(DIM), np.abs(comps).argmax(axis=1)])
    comps *= signs[:, None]
    table = np.zeros((size, DIM), dtype=np.float64)
    table[keep] = (rows - mean) @ comps.T
    rank = np.arange(1, size + 1, dtype=np.float64)
    p = (1.0 / rank) / np.sum(1.0 / rank)
    table *= (SIF / (SIF + p))[:, None]
    return table.astype(np.float32)


def _write(path: Path, table: F32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tmp.open("wb") as f:
            np.save(f, table, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_table(model_dir: Path, cache_dir: Path, vocab_size: int) -> F32:
    """The cached table for these weights, distilled first if missing or unreadable."""
    from indexer.embedding.onnx import weights_digest

    path = table_path(cache_dir, weights_digest(model_dir))
    try:
        table: F32 = np.load(path, allow_pickle=False)
        if table.shape == (vocab_size, DIM) and table.dtype == np.float32 \
                and bool(np.isfinite(table).all()):
            return table
    except (OSError, ValueError):
        pass
    table = distil(model_dir)
    try:
        _write(path, table)
    except OSError as exc:
        raise EmbedderUnavailable(f"cannot write the static model to {cache_dir}: {exc}") from exc
    return table


class StaticEmbedder:
    """Mean of distilled per-wordpiece vectors. Thread-safe; distils or loads on first use."""

    name: str = f"all-MiniLM-L6-v2-static-d{DIM}"
    dim: int = DIM
    max_tokens: int = 256  # chunks are cut as for MiniLM; the table itself has no window

    def __init__(self, model_dir: Path | str | None = None,
                 cache_dir: Path | str | None = None) -> None:
        from indexer.embedding.onnx import default_cache_dir

        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._lock = threading.Lock()
        self._loaded: tuple[Tokenizers, F32] | None = None

    def _load(self) -> tuple[Tokenizers, F32]:
        with self._lock:
            if self._loaded is None:
                model_dir = self._model_dir or default_model_dir()
                tok = Tokenizers(model_dir, self.max_tokens)
                tok.tokenizer.no_truncation()
                table = ensure_table(model_dir, self._cache_dir, tok.tokenizer.get_vocab_size())
                self._loaded = (tok, table)
            return self._loaded

    def load(self) -> None:
        self._load()

    def count_tokens(self, text: str) -> int:
        tok, _ = self._load()
        return tok.count(text)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        tok, table = self._load()
        for row, enc in enumerate(tok.counter.encode_batch(list(texts), add_special_tokens=False)):
            if enc.ids:
                out[row] = table[np.asarray(enc.ids, dtype=np.int64)].mean(axis=0)
        return l2_normalise(out)
