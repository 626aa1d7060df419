"""Retrieval quality of the embedders on a fixed slice of the labelled man-page set.

int8 must retrieve as well as fp32 within noise (two questions' worth) and its vectors must stay
close to the numpy reference on the same documents (mean cosine >= 0.99, min >= 0.98); the
static table must be distilled deterministically, cached by the weights' hash, rebuilt when
damaged, and still retrieve far better than chance. The full figures are bench/quality/compare.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.quality.compare import truncate
from bench.quality.dataset import load_dataset
from indexer.embedding import Embedder
from indexer.embedding.minilm import MiniLMEmbedder, default_model_dir
from indexer.embedding.onnx import OnnxMiniLMEmbedder, weights_digest
from indexer.embedding.static import DIM, StaticEmbedder, table_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Slice = tuple[list[str], list[str], list[set[int]]]  # doc texts, questions, relevant doc rows


@pytest.fixture(scope="module")
def labelled() -> Slice:
    """Every 12th question, its relevant pages and every 10th other page (first ~120 words)."""
    ds = load_dataset("manpages-name")
    chosen = ds.questions[::12]
    wanted = {d for _, _, rel in chosen for d in rel}
    docs = [(d, t, x) for i, (d, t, x) in enumerate(ds.documents) if d in wanted or i % 10 == 0]
    row = {d: i for i, (d, _, _) in enumerate(docs)}
    texts = [f"{t}\n{truncate(x, 120)}" for _, t, x in docs]
    return texts, [q for _, q, _ in chosen], [{row[d] for d in rel} for _, _, rel in chosen]


def recall_at_5(embedder: Embedder, data: Slice) -> float:
    texts, questions, relevant = data
    docs, qs = embedder.embed(texts), embedder.embed(questions)
    top = np.argsort(-(qs @ docs.T), axis=1)[:, :5]
    hits = [len(rel & set(t.tolist())) / len(rel) for t, rel in zip(top, relevant, strict=True)]
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_int8_retrieves_as_fp32_and_stays_close_to_numpy(labelled: Slice, cache: Path) -> None:
    texts, questions, _ = labelled
    assert len(questions) >= 40 and len(texts) >= 150
    int8 = OnnxMiniLMEmbedder("int8", cache_dir=cache)
    fp32 = OnnxMiniLMEmbedder("fp32", cache_dir=cache)
    r_int8, r_fp32 = recall_at_5(int8, labelled), recall_at_5(fp32, labelled)
    assert r_fp32 >= 0.6, f"fp32 recall@5 {r_fp32:.3f}: the slice or the model is broken"
    noise = 2 / len(questions)
    assert abs(r_int8 - r_fp32) <= noise, f"int8 {r_int8:.3f} vs fp32 {r_fp32:.3f}"
    ref = MiniLMEmbedder().embed(texts).astype(np.float64)
    c = np.sum(int8.embed(texts).astype(np.float64) * ref, axis=1)
    assert c.mean() >= 0.99, f"mean cosine {c.mean():.4f}"
    assert c.min() >= 0.98, f"document {int(np.argmin(c))}: cosine {c.min():.4f}"


def test_static_is_deterministic_cached_rebuilt_and_retrieves(labelled: Slice,
                                                              cache: Path) -> None:
    texts = labelled[0]
    static = StaticEmbedder(cache_dir=cache)
    assert (static.name, static.dim) == (f"all-MiniLM-L6-v2-static-d{DIM}", DIM)
    first = static.embed(texts)
    path = table_path(cache, weights_digest(default_model_dir()))
    assert path.is_file() and [p for p in cache.iterdir() if p.suffix == ".tmp"] == []
    stat = path.stat()
    # A second embedder reads the cached table as is (the file is not rewritten).
    again = StaticEmbedder(cache_dir=cache).embed(texts)
    assert np.array_equal(first, again) and path.stat().st_mtime_ns == stat.st_mtime_ns
    # A damaged table is distilled again, to the same numbers: the distillation is deterministic.
    path.write_bytes(path.read_bytes()[:1000])
    rebuilt = StaticEmbedder(cache_dir=cache).embed(texts)
    assert np.array_equal(first, rebuilt)
    assert path.stat().st_size == stat.st_size
    # Far better than chance (5 of ~200 pages), if below MiniLM; empty text stays a zero row.
    r = recall_at_5(static, labelled)
    assert r >= 0.3, f"static recall@5 {r:.3f}"
    zero = static.embed(["", "copy files"])
    assert not zero[0].any() and abs(float(np.linalg.norm(zero[1])) - 1) < 1e-5
    with pytest.raises(TypeError):
        static.embed("one string")  # type: ignore[arg-type]
