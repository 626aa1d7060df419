"""The IVF layout of the SQLite store's dense search, forced on for a small index: with every
cluster probed it answers exactly what the exact scan answers, after upserts, deletes and ACL
changes, without retraining on each write; with one cluster probed it may miss rows but never
returns one the caller cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.acl import Acl
from core.models import Chunk, Section, make_document
from indexer.store import ivf
from indexer.store.sqlite import SqliteStore
from tests.integration.test_store_sqlite_dense import (
    DIM,
    GROUPS,
    build,
    found,
    reference,
)

pytestmark = pytest.mark.integration

BROAD = set(GROUPS[:9])  # reads most of the index: the IVF path (narrow callers gather)
CALLERS = [BROAD, set(GROUPS) | {"user:mallory@acme.com"}, set(GROUPS[:10])]


def forced(path: Path, nprobe: int = 10_000) -> tuple[SqliteStore, dict[str, Acl],
                                                      dict[str, np.ndarray]]:
    store, acls, vectors = build(path)
    store.ivf_min_rows = 1
    store.nprobe = nprobe
    return store, acls, vectors


def queries(seed: int, n: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        q = rng.standard_normal(DIM).astype(np.float32)
        out.append(q / np.linalg.norm(q))
    return out


def check_all(store: SqliteStore, acls: dict[str, Acl], vectors: dict[str, np.ndarray],
              seed: int) -> None:
    for held in CALLERS:
        for q in queries(seed):
            got = found(store, held, q, 9)
            assert got == reference(acls, vectors, held, q, 9)
            for key in got:  # the denied side, hit by hit
                assert acls[key.split("#")[0]].allows(frozenset(held))


def upsert(store: SqliteStore, acls: dict[str, Acl], vectors: dict[str, np.ndarray],
           doc_id: str, acl: Acl, seed: int) -> None:
    vec = np.random.default_rng(seed).standard_normal((2, DIM)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    doc = make_document(doc_id, doc_id, f"u://{doc_id}", [Section("a"), Section("b")], acl)
    store.upsert(doc, [Chunk(doc_id, 0, "a"), Chunk(doc_id, 1, "b")], vec, "t", "r2")
    acls[doc_id] = acl
    vectors[f"{doc_id}#0"], vectors[f"{doc_id}#1"] = vec[0], vec[1]


def test_the_ivf_answers_like_the_exact_scan_through_writes(tmp_path: Path) -> None:
    store, acls, vectors = forced(tmp_path / "i.sqlite")
    check_all(store, acls, vectors, 1)
    assert store._dense.layout is not None  # the IVF answered
    buffer = store._dense.matrix.base  # the arranged matrix keeps room to append in place
    assert buffer is not None and len(buffer) > len(store._dense.matrix)
    trained = store._shared().training
    upsert(store, acls, vectors, "c:new1", Acl.single(["group:g1"]), 11)  # a new document
    upsert(store, acls, vectors, "c:d3", Acl.single(["group:g2"]), 12)  # replaced vectors
    store.delete(["c:d4", "c:d9"])
    for gone in ("c:d4", "c:d9"):
        del acls[gone]
        del vectors[f"{gone}#0"], vectors[f"{gone}#1"]
    check_all(store, acls, vectors, 2)
    # the newest document (d3) rewritten: its chunks must not come back under the same ids with
    # the cache still holding the old vectors
    upsert(store, acls, vectors, "c:d3", Acl.single(["group:g2"]), 13)
    check_all(store, acls, vectors, 3)
    assert store._shared().training is trained  # a few writes did not retrain
    cache = store._dense
    assert cache.layout is not None
    assert len(cache.matrix) > cache.layout.offsets[-1]  # new rows in the exact tail
    assert cache.matrix.base is buffer  # every write appended in place, none copied
    assert (~cache.live).sum() == 8  # d3 twice, d4, d9: two rows each


def test_acl_changes_reach_the_ivf_at_once(tmp_path: Path) -> None:
    store, acls, vectors = forced(tmp_path / "i.sqlite")
    q = vectors["c:d5#0"]
    check_all(store, acls, vectors, 3)
    store.update_acl("c:d5", Acl.single(["group:g0"]), None)
    acls["c:d5"] = Acl.single(["group:g0"])
    assert found(store, BROAD, q, 5)[0] == "c:d5#0"  # granted
    store.update_acl("c:d5", Acl.single(["group:g11"]), None)  # only a caller with g11
    acls["c:d5"] = Acl.single(["group:g11"])
    assert not any(k.startswith("c:d5#") for k in found(store, BROAD, q, 240))  # revoked
    check_all(store, acls, vectors, 4)
    # a row written after the layout (the exact tail), then revoked
    upsert(store, acls, vectors, "c:late", Acl.single(["group:g0"]), 21)
    late = vectors["c:late#0"]
    assert found(store, BROAD, late, 5)[0] == "c:late#0"
    store.update_acl("c:late", Acl.single(["group:g11"]), None)
    acls["c:late"] = Acl.single(["group:g11"])
    assert not any(k.startswith("c:late#") for k in found(store, BROAD, late, 240))
    assert found(store, {"group:g11"}, late, 1) == ["c:late#0"]
    check_all(store, acls, vectors, 5)


def test_many_changes_retrain(tmp_path: Path) -> None:
    store, acls, vectors = forced(tmp_path / "i.sqlite")
    check_all(store, acls, vectors, 5)
    trained = store._shared().training
    for d in range(30):  # 60 of 240 rows rewritten: over RETRAIN_SHARE
        upsert(store, acls, vectors, f"c:d{d}", acls[f"c:d{d}"], 100 + d)
    check_all(store, acls, vectors, 6)
    assert store._shared().training is not trained


def test_a_narrow_probe_may_miss_rows_but_never_leaks(tmp_path: Path) -> None:
    store, acls, _ = forced(tmp_path / "i.sqlite", nprobe=1)
    for held in CALLERS:
        for q in queries(7):
            got = found(store, held, q, 9)
            assert len(got) == 9  # too few readable rows probed: the exact scan answers
            assert all(acls[k.split("#")[0]].allows(frozenset(held)) for k in got)
    assert not found(store, {"group:nobody-has-this"}, queries(8)[0], 9)


def test_training_is_deterministic_and_arrange_places_every_row() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((600, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = np.arange(600, dtype=np.int64) * 3
    a, b = ivf.train(matrix, ids), ivf.train(matrix, ids)
    assert np.array_equal(a.centroids, b.centroids) and np.array_equal(a.lists, b.lists)
    layout = ivf.arrange(a, matrix, ids)
    assert sorted(layout.order.tolist()) == list(range(600)) and layout.changed == 0
    moved = matrix.copy()
    moved[5] = -moved[5]  # the same chunk id, another vector: counts as new
    assert ivf.arrange(a, moved, ids).changed == 2


@pytest.mark.parametrize("seed", range(6))
def test_search_is_the_exact_top_of_the_probed_rows(seed: int) -> None:
    """ivf.search against a brute-force answer over exactly the rows it may read (the probed
    lists and the tail), with empty lists and an unclustered tail, and the denied side."""
    rng = np.random.default_rng(seed)
    rows, dim = 400, 8
    matrix = rng.standard_normal((rows, dim)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    training = ivf.train(matrix[:300], np.arange(300, dtype=np.int64), lists=40)
    base = ivf.arrange(training, matrix[:300], np.arange(300, dtype=np.int64))
    arranged = np.concatenate([matrix[:300][base.order], matrix[300:]])  # 100 rows of tail
    readable = rng.random(rows) < 0.5
    for nprobe in (1, 3, 40):
        q = rng.standard_normal(dim).astype(np.float32)
        q /= np.linalg.norm(q)
        # Empty lists first, in the middle and last, the first of them nearest the query.
        mid = len(base.centroids) // 2
        layout = ivf.Layout(
            np.vstack([q, base.centroids[:mid], -q, base.centroids[mid:], q * 0.9]),
            base.order,
            np.concatenate([[0], base.offsets[:mid + 1], base.offsets[mid:],
                            [base.offsets[-1]]]), 0)
        assert (np.diff(layout.offsets) == 0).sum() == 3
        got = ivf.search(layout, arranged, readable, q, nprobe, 7)
        near = np.argsort(-(layout.centroids @ q), kind="stable")[:nprobe]
        allowed = np.zeros(rows, dtype=bool)
        for c in near:
            allowed[layout.offsets[c]:layout.offsets[c + 1]] = True
        allowed[300:] = True
        allowed &= readable
        if allowed.sum() < 7:
            assert got is None
            continue
        assert got is not None
        found_rows, scores = got
        assert readable[found_rows].all()  # never a row the caller may not read
        np.testing.assert_allclose(scores, arranged[found_rows] @ q, rtol=1e-6)
        truth = np.where(allowed, arranged @ q, -np.inf)
        kth = np.sort(truth)[-7]
        assert len(set(found_rows.tolist())) == 7 and (scores >= kth - 1e-6).all()


def test_per_list_sums_match_a_plain_sum() -> None:
    rng = np.random.default_rng(4)
    rows = rng.standard_normal((500, 6)).astype(np.float32)
    lists = rng.integers(0, 9, 500).astype(np.int32)
    lists[lists == 4] = 5  # list 4 empty: its sum stays zero
    want = np.zeros((9, 6), dtype=np.float64)
    for row, c in zip(rows, lists, strict=True):
        want[c] += row
    assert np.allclose(ivf._sums(rows, lists, 9), want, atol=1e-5)


def test_farthest_first_seeds_every_tight_cluster() -> None:
    """40 tight clusters in 384 dimensions, 40 seeds: one seed each (random seeds, as plain
    training draws them, leave about a third of such clusters without one)."""
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((40, 384)).astype(np.float32)
    of = rng.integers(0, 40, 2000)
    rows = centres[of] + 0.9 * rng.standard_normal((2000, 384)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    seeds = ivf._farthest(rows, 40, np.random.default_rng(0))
    seeded = np.argmax(seeds @ centres.T, axis=1)
    assert sorted(seeded.tolist()) == list(range(40))
    random_seeds = rows[np.random.default_rng(0).choice(2000, 40, replace=False)]
    assert len(set(np.argmax(random_seeds @ centres.T, axis=1).tolist())) < 34


def test_small_lists_are_dropped_and_their_rows_moved() -> None:
    rng = np.random.default_rng(8)
    matrix = rng.standard_normal((400, 8)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = np.arange(400, dtype=np.int64)
    training = ivf.train(matrix, ids, lists=30)
    counts = np.bincount(training.lists, minlength=30)
    least = int(np.sort(counts)[5]) + 1  # at least five lists too small
    merged = ivf.without_small(training, matrix, least)
    assert len(merged.centroids) == int((counts >= least).sum()) < 30
    kept = training.centroids[counts >= least]
    assert np.array_equal(merged.centroids, kept)
    stayed = counts[training.lists] >= least  # rows of kept lists keep their centroid
    assert np.array_equal(kept[merged.lists[stayed]], training.centroids[training.lists[stayed]])
    moved = ~stayed  # the others went to their nearest kept centroid
    assert np.array_equal(merged.lists[moved], np.argmax(matrix[moved] @ kept.T, axis=1))
    assert ivf.without_small(merged, matrix, 1) is merged
