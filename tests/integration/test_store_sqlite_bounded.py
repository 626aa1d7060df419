"""The SQLite store's cluster-bounded dense search (indexer/store/bounded.py), forced on for a
small index: on tightly clustered vectors it answers broad callers exactly from a few clusters
and never with a row the caller cannot read; on vectors that break its model (no clusters, a
dominant shared direction, a tight topic filed into clusters trained without it, a σ that
understates the spread) it either refuses or still returns the exact top k."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from core.acl import Acl
from core.models import Chunk, Section, make_document
from indexer.store import bounded, ivf
from indexer.store.sqlite import IVF_OFF, SqliteStore
from tests.integration.test_store_sqlite_dense import found, reference

pytestmark = pytest.mark.integration

DIM = 384
GROUPS = [f"group:g{i}" for i in range(4)]
BROAD = {"group:g0", "group:g1", "group:g2"}  # reads about three quarters of the rows


def clustered(n: int, centres: int, seed: int, noise: float = 0.9) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, DIM)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, DIM)).astype(np.float32)
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def like_queries(n: int, centres: int, seed: int) -> np.ndarray:
    return clustered(n, centres, seed)  # the same centres (same seed): queries near the rows


def build(path: Path, vectors: np.ndarray, per_doc: int = 4) -> tuple[SqliteStore, dict[str, Acl],
                                                                       dict[str, np.ndarray]]:
    store = SqliteStore(path)
    store.bounded_min_rows = 1000
    acls: dict[str, Acl] = {}
    keyed: dict[str, np.ndarray] = {}
    with store.batch():
        for d in range(0, len(vectors), per_doc):
            doc_id = f"c:d{d}"
            acl = acls[doc_id] = Acl.single([GROUPS[(d // per_doc) % len(GROUPS)]])
            vec = vectors[d:d + per_doc]
            doc = make_document(doc_id, doc_id, f"u://{d}", [Section("x")] * len(vec), acl)
            store.upsert(doc, [Chunk(doc_id, i, "x") for i in range(len(vec))], vec, "t", "r1")
            for i in range(len(vec)):
                keyed[f"{doc_id}#{i}"] = vec[i]
    return store, acls, keyed


def exact(store: SqliteStore, acls: dict[str, Acl], keyed: dict[str, np.ndarray],
          held: set[str], q: np.ndarray, k: int) -> bool:
    """The store's top k is the reference's: the same rows, best first (two rows whose scores
    differ by float32 rounding alone may come in either order)."""
    got, want = found(store, held, q, k), reference(acls, keyed, held, q, k)
    scores = [float(keyed[key] @ q) for key in got]
    return set(got) == set(want) and all(a >= b - 1e-6 for a, b in pairwise(scores))


def test_clustered_rows_are_answered_by_their_bounds_exactly(tmp_path: Path) -> None:
    store, acls, keyed = build(tmp_path / "i.sqlite", clustered(8000, 64, seed=1))
    for q in like_queries(12, 64, seed=1):
        for k in (1, 10, 60):
            assert exact(store, acls, keyed, BROAD, q, k)
    cache = store._dense
    assert cache.bounds is not None and cache.layout is not None
    assert not cache.first_tried  # no query needed the first pass
    # the denied side: the fourth group's rows never reach a broad caller, however near
    denied = next(key for key in keyed if acls[key.split("#")[0]].allows(frozenset({"group:g3"})))
    got = found(store, BROAD, keyed[denied], 200)
    assert denied not in got
    assert all(acls[key.split("#")[0]].allows(frozenset(BROAD)) for key in got)
    assert found(store, {"group:g3", *BROAD}, keyed[denied], 1) == [denied]


def test_acl_changes_and_writes_after_the_layout(tmp_path: Path) -> None:
    vectors = clustered(8000, 64, seed=2)
    store, acls, keyed = build(tmp_path / "i.sqlite", vectors)
    q = like_queries(1, 64, seed=2)[0]
    top = found(store, BROAD, q, 1)[0]
    doc = top.split("#")[0]
    store.update_acl(doc, Acl.single(["group:g3"]), None)  # revoked: gone at once
    acls[doc] = Acl.single(["group:g3"])
    assert not any(key.startswith(doc + "#") for key in found(store, BROAD, q, 100))
    assert exact(store, acls, keyed, BROAD, q, 10)
    # a new tight topic written after the layout: the tail is scanned exactly
    buffer = store._dense.matrix.base
    assert buffer is not None and len(buffer) > len(store._dense.matrix)  # room to append
    late = clustered(40, 1, seed=99, noise=0.3)
    with store.batch():
        d = make_document("c:late", "late", "u://late", [Section("x")] * 40,
                          Acl.single(["group:g0"]))
        store.upsert(d, [Chunk("c:late", i, "x") for i in range(40)], late, "t", "r2")
    acls["c:late"] = Acl.single(["group:g0"])
    keyed.update({f"c:late#{i}": late[i] for i in range(40)})
    assert store._dense.bounds is not None  # patched, not reloaded
    assert store._dense.matrix.base is buffer  # appended in place, not copied
    for probe in (late[0], q):
        assert exact(store, acls, keyed, BROAD, probe, 10)


def test_rows_without_tight_clusters_are_refused(tmp_path: Path) -> None:
    """Vectors along a handful of shared directions (like real embeddings: anisotropic, no
    tight clusters): the sample test or the cluster tests refuse, the first pass answers."""
    rng = np.random.default_rng(4)
    basis = rng.standard_normal((12, DIM)).astype(np.float32)
    x = rng.standard_normal((6000, 12)).astype(np.float32) ** 3 @ basis
    x += 0.2 * rng.standard_normal(x.shape).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store, acls, keyed = build(tmp_path / "i.sqlite", x)
    q = x[17] + 0.1 * rng.standard_normal(DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    assert exact(store, acls, keyed, BROAD, q, 10)
    assert store._dense.bounds is None and store._shared().refused_rows == 6000
    # the refusal is remembered: the next load of about as many rows does not train again
    store.update_acl("c:d0", Acl.single(["group:g3"]), None)
    acls["c:d0"] = Acl.single(["group:g3"])
    assert exact(store, acls, keyed, BROAD, q, 10)


def test_off_means_the_first_pass_path(tmp_path: Path) -> None:
    store, acls, keyed = build(tmp_path / "i.sqlite", clustered(8000, 64, seed=5))
    store.bounded_min_rows = IVF_OFF
    q = like_queries(1, 64, seed=5)[0]
    assert exact(store, acls, keyed, BROAD, q, 10)
    assert store._dense.bounds is None


def _arranged(vectors: np.ndarray, training: ivf.Training) -> tuple[ivf.Layout, np.ndarray]:
    ids = np.arange(len(vectors), dtype=np.int64)
    layout = ivf.arrange(training, vectors, ids)
    return layout, np.ascontiguousarray(vectors[layout.order])


def _exact_or_none(layout: ivf.Layout, held: bounded.Bounds | None, matrix: np.ndarray,
                   queries: np.ndarray, readable: np.ndarray, k: int = 10) -> int:
    """Every answer is the exact top k of the readable rows, or None; how many answered."""
    answered = 0
    if held is None:
        return 0
    for q in queries:
        got = bounded.search(layout, held, matrix, readable, q, k)
        if got is None:
            continue
        rows, scores = got
        assert readable[rows].all()  # never a row the caller cannot read
        mine = set(rows[np.argsort(-scores, kind="stable")[:k]].tolist())
        exact = np.where(readable, matrix @ q, -np.inf)
        assert mine == set(np.argsort(-exact, kind="stable")[:k].tolist())
        answered += 1
    return answered


def test_a_topic_filed_into_clusters_trained_without_it_is_still_found() -> None:
    """Clusters trained, then 1.2 % new rows of one new topic filed into them by nearest
    centroid: their residuals are far longer than their clusters' (loose: scored by every
    query), and queries on the topic get exactly its rows; other queries stay exact."""
    old = clustered(12000, 100, seed=6)
    training = ivf.train_accepted(old, np.arange(len(old), dtype=np.int64), lambda *_: True,
                                  spread=True)
    assert training is not None
    topic = clustered(150, 1, seed=77)
    layout, matrix = _arranged(np.vstack([old, topic]), training)
    held = bounded.bounds(layout, matrix)
    assert held is not None
    assert set(np.flatnonzero(layout.order >= len(old)).tolist()) <= set(held.loose.tolist())
    everyone = np.ones(len(matrix), dtype=bool)
    assert _exact_or_none(layout, held, matrix, clustered(20, 1, seed=77), everyone) == 20
    assert _exact_or_none(layout, held, matrix, like_queries(20, 100, seed=6), everyone) > 15


def test_an_understated_sigma_is_caught_by_the_query_check() -> None:
    """With σ cut tenfold the bounds prune clusters that hold true top rows; the check of the
    rows read sees residuals far past CHECK deviations and refuses instead of answering."""
    vectors = clustered(8000, 64, seed=8)
    training = ivf.train_accepted(vectors, np.arange(8000, dtype=np.int64), lambda *_: True,
                                  spread=True)
    assert training is not None
    layout, matrix = _arranged(vectors, training)
    held = bounded.bounds(layout, matrix)
    assert held is not None
    broken = replace(held, sigma=(held.sigma / 10).astype(np.float32),
                     reach=(held.reach / 10).astype(np.float32))
    readable = np.random.default_rng(1).random(len(matrix)) < 0.7
    queries = like_queries(30, 64, seed=8)
    assert _exact_or_none(layout, held, matrix, queries, readable) == 30
    assert _exact_or_none(layout, broken, matrix, queries, readable) == 0
