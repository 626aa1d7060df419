"""HashingEmbedder: the deterministic test embedder behaves like an embedder should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.hashing import HashingEmbedder

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

LEAVE_Q = "How many vacation days do employees get?"
LEAVE_DOC = "Employees get 25 paid vacation days per year; unused days carry over to March."
BACKUP_DOC = "Nightly database backups are written to the object store and kept for a month."


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_satisfies_protocol_and_names() -> None:
    e = HashingEmbedder()
    assert isinstance(e, Embedder)
    assert (e.name, e.dim, e.max_tokens) == ("hashing-256", 256, 256)
    assert HashingEmbedder(dim=64).name == "hashing-64"


def test_shape_dtype_and_unit_rows() -> None:
    e = HashingEmbedder(dim=128)
    v = e.embed([LEAVE_Q, LEAVE_DOC, "x", "Ünïcödé façade 東京"])
    assert v.shape == (4, 128) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)


def test_empty_inputs() -> None:
    e = HashingEmbedder()
    assert e.embed([]).shape == (0, 256)
    v = e.embed(["", "  \n\t ", "!!! ???", LEAVE_Q])
    assert not v[:3].any(), "texts without words must give zero rows"
    assert np.linalg.norm(v[3]) == pytest.approx(1.0, abs=1e-6)


def test_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError):
        HashingEmbedder().embed("not a list")


def test_deterministic_within_a_process() -> None:
    a = HashingEmbedder().embed([LEAVE_Q, BACKUP_DOC])
    b = HashingEmbedder().embed([BACKUP_DOC, LEAVE_Q])
    assert np.array_equal(a, b[::-1])
    # Batch composition does not matter.
    assert np.array_equal(HashingEmbedder().embed([LEAVE_Q])[0], a[0])


def test_deterministic_across_processes() -> None:
    """The same vector under different hash seeds: no use of Python's salted hash()."""
    code = (
        "import sys; from indexer.embedding.hashing import HashingEmbedder;"
        "v = HashingEmbedder().embed([sys.argv[1]])[0];"
        "print(','.join(repr(float(x)) for x in v))"
    )
    outs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code, LEAVE_DOC],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.append(done.stdout.strip())
    assert outs[0] == outs[1]
    here = HashingEmbedder().embed([LEAVE_DOC])[0]
    assert np.array_equal(np.array([float(x) for x in outs[0].split(",")], np.float32), here)


def test_case_and_punctuation_insensitive() -> None:
    v = HashingEmbedder().embed(["Vacation days, employees!", "vacation DAYS employees"])
    assert np.allclose(v[0], v[1])


def test_similar_beats_dissimilar() -> None:
    q, leave, backup = HashingEmbedder().embed([LEAVE_Q, LEAVE_DOC, BACKUP_DOC])
    assert cos(q, leave) > cos(q, backup) + 0.2
    # Sub-word overlap counts: an inflected form is closer than an unrelated word.
    w = HashingEmbedder().embed(["backup", "backups", "holiday"])
    assert cos(w[0], w[1]) > cos(w[0], w[2]) + 0.3


def test_unrelated_texts_are_nearly_orthogonal() -> None:
    texts = [f"alpha{i} bravo{i} charlie{i}" for i in range(40)]
    v = HashingEmbedder(dim=256).embed(texts)
    sims = v @ v.T
    off_diagonal = sims[~np.eye(len(texts), dtype=bool)]
    # They share trigrams like "<al", so not zero, but far below a real match.
    assert float(np.abs(off_diagonal).mean()) < 0.5


def test_count_tokens_counts_words() -> None:
    e = HashingEmbedder()
    assert e.count_tokens("") == 0
    assert e.count_tokens("How many vacation-days? 25!") == 5
    assert e.count_tokens(LEAVE_Q) == 7


def test_truncates_to_max_tokens_words() -> None:
    e = HashingEmbedder()
    head = " ".join(f"word{i}" for i in range(e.max_tokens))
    v = e.embed([head, head + " tail words beyond the window"])
    assert np.array_equal(v[0], v[1])
    assert not np.array_equal(e.embed([head[:-8]])[0], v[0])


def test_load_embedder_names() -> None:
    assert load_embedder("hashing").name == "hashing-256"
    assert load_embedder("hashing-64").dim == 64
    assert load_embedder("minilm").name == "all-MiniLM-L6-v2"  # lazy: loads nothing yet
    assert load_embedder("all-MiniLM-L6-v2", batch_size=8).name == "all-MiniLM-L6-v2"
    for bad in ("bert", "hashing-x", "hashing-2", ""):
        with pytest.raises(ConfigError):
            load_embedder(bad)
