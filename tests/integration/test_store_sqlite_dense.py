"""The SQLite store's dense search against a plain reference (every readable row scored, top k):
the same answer whether the caller reads a small share (only their rows are scored) or most of
the index (one product over the whole matrix), and the readable rows it remembers per caller are
forgotten by the next ACL change or write."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from core.acl import Acl, AclFilter
from core.models import Chunk, Section, make_document
from indexer.store import firstpass
from indexer.store import sqlite as sqlite_store
from indexer.store.sqlite import SqliteStore

pytestmark = pytest.mark.integration

DIM = 16
GROUPS = [f"group:g{i}" for i in range(12)]


def build(path: Path, n_docs: int = 120, seed: int = 3) -> tuple[SqliteStore, dict[str, Acl],
                                                                 dict[str, np.ndarray]]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    store = SqliteStore(path)
    acls: dict[str, Acl] = {}
    vectors: dict[str, np.ndarray] = {}
    with store.batch():
        for d in range(n_docs):
            doc_id = f"c:d{d}"
            gates = [rng.sample(GROUPS, rng.randint(1, 3)) for _ in range(rng.randint(1, 2))]
            deny = ["user:mallory@acme.com"] if d % 17 == 0 else []
            acl = acls[doc_id] = Acl.of(gates, deny)
            vec = nrng.standard_normal((2, DIM)).astype(np.float32)
            vec /= np.linalg.norm(vec, axis=1, keepdims=True)
            doc = make_document(doc_id, doc_id, f"u://{d}", [Section("a"), Section("b")], acl)
            store.upsert(doc, [Chunk(doc_id, 0, "a"), Chunk(doc_id, 1, "b")], vec, "t", "r1")
            vectors[f"{doc_id}#0"], vectors[f"{doc_id}#1"] = vec[0], vec[1]
    return store, acls, vectors


def reference(acls: dict[str, Acl], vectors: dict[str, np.ndarray], held: set[str],
              q: np.ndarray, k: int) -> list[str]:
    scored = [(float(v @ q), key) for key, v in vectors.items()
              if acls[key.split("#")[0]].allows(frozenset(held))]
    return [key for _, key in sorted(scored, key=lambda s: (-s[0], s[1]))[:k]]


def found(store: SqliteStore, held: set[str], q: np.ndarray, k: int) -> list[str]:
    return [f"{h.doc_id}#{h.ordinal}" for h in store.dense(q, AclFilter({"c": held}), k)]


@pytest.mark.parametrize("held", [
    {"group:g0"},  # a small share: the gathered path
    {"group:g0", "group:g1", "user:mallory@acme.com"},  # denied some of what the groups open
    set(GROUPS[:9]),  # most of the index: the whole-matrix path
    set(GROUPS) | {"user:mallory@acme.com"},
    {"group:nobody-has-this"},  # nothing readable
])
def test_dense_equals_the_reference_on_both_paths(tmp_path: Path, held: set[str]) -> None:
    store, acls, vectors = build(tmp_path / "i.sqlite")
    rng = np.random.default_rng(9)
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        want = reference(acls, vectors, held, q, 7)
        assert found(store, held, q, 7) == want
        for key in found(store, held, q, 7):  # the denied side, hit by hit
            assert acls[key.split("#")[0]].allows(frozenset(held))


def test_both_paths_are_really_taken(tmp_path: Path) -> None:
    """The threshold splits these callers: one reads under a quarter, one most of the index."""
    _, acls, _ = build(tmp_path / "i.sqlite")
    share = {name: sum(acl.allows(frozenset(held)) for acl in acls.values()) / len(acls)
             for name, held in {"small": {"group:g0"}, "broad": set(GROUPS[:9])}.items()}
    sparse = sqlite_store.SPARSE_SCAN
    assert share["small"] * sparse < 1 <= share["broad"] * sparse


def test_remembered_rows_follow_acl_changes_and_writes(tmp_path: Path) -> None:
    store, acls, vectors = build(tmp_path / "i.sqlite")
    q = vectors["c:d5#0"]
    alice = {"group:g0"}
    before = found(store, alice, q, 240)
    assert "c:d5#0" not in before or acls["c:d5"].allows(frozenset(alice))
    store.update_acl("c:d5", Acl.single(["group:g0"]), None)
    after = found(store, alice, q, 240)
    assert after[0] == "c:d5#0"  # granted at once
    store.update_acl("c:d5", Acl.single(["group:g11"]), None)
    assert not any(k.startswith("c:d5#") for k in found(store, alice, q, 240))  # revoked at once
    store.delete(["c:d7"])
    assert not any(k.startswith("c:d7#") for k in found(store, set(GROUPS), q, 240))


@pytest.fixture
def first_pass_on_small_matrices(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass starts at 50k rows; here it serves the test's 240."""
    monkeypatch.setattr(firstpass, "MIN_ROWS", 1)
    monkeypatch.setattr(sqlite_store, "RESCORE_MIN", 20)


@pytest.mark.parametrize("held", [set(GROUPS[:9]), set(GROUPS) | {"user:mallory@acme.com"}])
def test_the_first_pass_returns_the_exact_order(
        tmp_path: Path, held: set[str], first_pass_on_small_matrices: None) -> None:
    store, acls, vectors = build(tmp_path / "i.sqlite")
    rng = np.random.default_rng(4)
    for _ in range(8):
        q = rng.standard_normal(DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        assert found(store, held, q, 5) == reference(acls, vectors, held, q, 5)
    assert store._dense.first is not None  # the first pass answered, not the float32 scan


def test_writes_keep_the_first_pass_and_score_new_rows_exactly(
        tmp_path: Path, first_pass_on_small_matrices: None) -> None:
    """After a write the first pass over the rows it covers is kept (no rebuild per write): rows
    appended since are scored in float32 beside it, deleted rows are masked, answers stay
    the exact reference; past REFRESH_SHARE of the rows changed, the next query reloads."""
    store, acls, vectors = build(tmp_path / "i.sqlite")
    held = set(GROUPS) | {"user:mallory@acme.com"}
    rng = np.random.default_rng(6)
    q = rng.standard_normal(DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    assert found(store, held, q, 5) == reference(acls, vectors, held, q, 5)
    copy = store._dense.first
    assert copy is not None and store._dense.first_rows == 240
    # A new document whose first chunk is the query itself: the best hit, from the tail.
    doc = make_document("c:new", "c:new", "u://new", [Section("a"), Section("b")],
                        Acl.single(["group:g3"]))
    vec = np.stack([q, -q]).astype(np.float32)
    store.upsert(doc, [Chunk("c:new", 0, "a"), Chunk("c:new", 1, "b")], vec, "t", "r2")
    acls["c:new"], vectors["c:new#0"], vectors["c:new#1"] = doc.acl, vec[0], vec[1]
    best = reference(acls, vectors, held, q, 5)
    top_before = best[1]
    assert best[0] == "c:new#0" and found(store, held, q, 5) == best
    assert store._dense.first is copy  # patched, not rebuilt
    assert "c:new#0" not in found(store, {"group:g0"} - {"group:g3"}, q, 240)  # denied side
    store.delete([top_before.split("#")[0]])
    del acls[top_before.split("#")[0]]
    for key in [k for k in vectors if k.startswith(top_before.split("#")[0] + "#")]:
        del vectors[key]
    got = found(store, held, q, 5)
    assert got == reference(acls, vectors, held, q, 5) and top_before not in got
    assert store._dense.first is copy
    # More than REFRESH_SHARE of the rows rewritten: a clean load and a new copy.
    with store.batch():
        for d in range(30):
            doc_id = f"c:d{d}"
            v = rng.standard_normal((2, DIM)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            doc = make_document(doc_id, doc_id, f"u://{d}", [Section("a"), Section("b")],
                                acls.get(doc_id, Acl.single(["group:g1"])))
            store.upsert(doc, [Chunk(doc_id, 0, "a"), Chunk(doc_id, 1, "b")], v, "t", "r3")
            acls[doc_id] = doc.acl
            vectors[f"{doc_id}#0"], vectors[f"{doc_id}#1"] = v[0], v[1]
    assert found(store, held, q, 5) == reference(acls, vectors, held, q, 5)
    assert store._dense.first is not copy and store._dense.first_rows == len(vectors)


def test_first_pass_candidates_keep_the_nearest_readable_rows_only(
        first_pass_on_small_matrices: None) -> None:
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((2000, 256)).astype(np.float32)  # 256 > DIMS: projected
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[7] = 0.0  # an all-zero row must not divide by zero
    scan = firstpass.build(matrix)
    assert scan is not None
    everyone = np.zeros(len(matrix), dtype=np.float32)
    q = matrix[3]
    got = scan.candidates(q, everyone, 50)
    assert got is not None
    # 2,000 rows: the sample is every row, so the cut is the 50th best approximate score
    assert len(got.rows) == 50 and 3 in got.rows.tolist() and len(got.approx) == 50
    assert np.all(np.diff(got.rows) > 0)  # ascending rows
    assert got.bound == float(got.approx.min())
    exact = set(np.argsort(-(matrix @ q))[:5].tolist())
    assert exact <= set(got.rows.tolist())
    # The denied side: a row the caller cannot read is never a candidate, however near.
    denied = everyone.copy()
    denied[3] = -np.inf
    got = scan.candidates(q, denied, 50)
    assert got is not None and 3 not in got.rows.tolist() and len(got.rows) == 50
    # Fewer readable rows than asked for: only those come back, with finite scores, and
    # nothing is left out.
    few = np.full(len(matrix), -np.inf, dtype=np.float32)
    few[[7, 11, 1999]] = 0.0
    got = scan.candidates(q, few, 50)
    assert got is not None and got.rows.tolist() == [7, 11, 1999]
    assert np.all(np.isfinite(got.approx)) and got.bound == -np.inf


def test_a_sampled_cut_bounds_every_row_it_leaves_out(
        first_pass_on_small_matrices: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one row in 31 sampled the candidate count is an estimate; what must hold is the
    bound: no readable row outside the candidates scores above it, no unreadable row is a
    candidate, and an estimate far too generous is cut to CAP x count."""
    monkeypatch.setattr(firstpass, "QUANTILE_ROWS", 64)
    rng = np.random.default_rng(4)
    matrix = rng.standard_normal((2000, 256)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    scan = firstpass.build(matrix)
    assert scan is not None and scan.step == 31 and scan.sampled == 65
    bias = np.where(rng.random(len(matrix)) < 0.5, 0.0, -np.inf).astype(np.float32)
    readable = np.flatnonzero(bias == 0)
    every = scan.candidates(matrix[0], bias, len(matrix))  # every readable row, scored
    assert every is not None and every.rows.tolist() == readable.tolist()
    sizes = []
    for i in range(40):
        q = matrix[i]
        got = scan.candidates(q, bias, 100)
        assert got is not None and set(got.rows.tolist()) <= set(readable.tolist())
        again = scan.candidates(q, bias, len(matrix))
        assert again is not None
        approx = dict(zip(again.rows.tolist(), again.approx.tolist(), strict=True))
        left_out = set(readable.tolist()) - set(got.rows.tolist())
        assert max(approx[r] for r in left_out) <= got.bound
        assert min(got.approx) >= got.bound and len(got.rows) <= firstpass.CAP * 100
        sizes.append(len(got.rows))
    assert min(sizes) != max(sizes)  # an estimate: the count varies with the query
    assert 50 <= np.median(sizes) <= 200


def test_enough_wants_the_kth_exact_score_clear_of_the_pass_error() -> None:
    approx = np.linspace(1.0, 0.5, 100).astype(np.float32)
    rng = np.random.default_rng(8)
    small = approx + rng.normal(0, 0.01, 100).astype(np.float32)  # error sd 0.01
    assert firstpass.enough(small, approx, 0.5, 10)  # 10th exact ~0.95, 45 sd above 0.5
    assert not firstpass.enough(small, approx, 0.5, 95)  # 95th exact ~0.52: within 4 sd
    assert not firstpass.enough(small, approx, 0.94, 10)  # a row left out may score 0.94
    wide = approx + rng.normal(0, 0.2, 100).astype(np.float32)
    assert not firstpass.enough(wide, approx, 0.5, 10)  # the same gap, a pass 20x worse
    assert not firstpass.enough(small[:5], approx[:5], 0.5, 10)  # fewer candidates than asked
    # Rows outside the pass, scored exactly, count toward the take-th score.
    near = approx + rng.normal(0, 0.02, 100).astype(np.float32)
    assert not firstpass.enough(near, approx, 0.5, 99)
    assert firstpass.enough(near, approx, 0.5, 99, others=np.full(99, 2.0, dtype=np.float32))


def quiet_store(path: Path, n: int = 600, dim: int = 256) -> tuple[SqliteStore, np.ndarray]:
    """A store whose vectors vary most in their first 128 dimensions (the first pass's
    principal directions) and little in the other 128, where the queries point: the pass's
    approximate scores are nearly blind to what ranks them. Even rows are group:g0's, odd
    rows group:g1's."""
    rng = np.random.default_rng(12)
    matrix = np.hstack([3.0 * rng.standard_normal((n, 128)),
                        0.3 * rng.standard_normal((n, dim - 128))]).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    store = SqliteStore(path)
    with store.batch():
        for d in range(n):
            acl = Acl.single([f"group:g{d % 2}"])
            doc = make_document(f"c:d{d}", f"c:d{d}", f"u://{d}", [Section("a")], acl)
            store.upsert(doc, [Chunk(f"c:d{d}", 0, "a")], matrix[d:d + 1], "t", "r1")
    return store, matrix


@pytest.mark.parametrize("k, scan", [(10, firstpass.SCAN), (3, 1)])
def test_the_first_pass_widens_until_the_exact_top_is_inside(
        tmp_path: Path, first_pass_on_small_matrices: None,
        monkeypatch: pytest.MonkeyPatch, k: int, scan: int) -> None:
    """Its fixed candidate count once lost the true top 10 at 1M rows; here 20 candidates from
    a pass blind to the query's direction miss it, and the store must still answer exactly,
    for the caller, never with the other group's rows: by asking for more candidates (SCAN 1:
    only a round that would ask for every readable row scans them instead) or, past 1/SCAN of
    the caller's 300 rows, by scoring them all."""
    monkeypatch.setattr(firstpass, "SCAN", scan)
    store, matrix = quiet_store(tmp_path / "i.sqlite")
    asked: list[int] = []
    original = firstpass.FirstPass.candidates

    def spy(self: firstpass.FirstPass, q: np.ndarray, bias: np.ndarray, count: int) -> object:
        asked.append(count)
        return original(self, q, bias, count)

    monkeypatch.setattr(firstpass.FirstPass, "candidates", spy)
    rng = np.random.default_rng(13)
    even = np.arange(0, len(matrix), 2)
    missed = 0
    for _ in range(6):
        q = np.concatenate([np.zeros(128), rng.standard_normal(128)]).astype(np.float32)
        q /= np.linalg.norm(q)
        want = [f"c:d{i}#0" for i in even[np.argsort(-(matrix[even] @ q))[:k]]]
        assert found(store, {"group:g0"}, q, k) == want
        assert store._dense.first is not None  # the first pass was asked, not bypassed
        bias = np.full(len(matrix), -np.inf, dtype=np.float32)
        bias[even] = 0.0
        narrow = store._dense.first.candidates(q, bias, 20)
        assert narrow is not None and set(narrow.rows.tolist()) <= set(even.tolist())
        missed += not {f"c:d{i}#0" for i in narrow.rows.tolist()} >= set(want)
    assert missed >= 3  # 20 candidates alone would have lost rows: the widening mattered
    start = max(20, 10 * k)  # RESCORE_MIN (20 here), 10 x k
    assert asked[0] == start
    assert (max(asked) > start) == (scan == 1)  # wider rounds, or straight to the scan


def test_the_first_candidate_count_grows_with_the_callers_rows(
        tmp_path: Path, first_pass_on_small_matrices: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    store, matrix = quiet_store(tmp_path / "i.sqlite")
    monkeypatch.setattr(sqlite_store, "RESCORE_SHARE", 4)  # 300 readable rows: 75 to start
    asked: list[int] = []
    original = firstpass.FirstPass.candidates

    def spy(self: firstpass.FirstPass, q: np.ndarray, bias: np.ndarray, count: int) -> object:
        asked.append(count)
        return original(self, q, bias, count)

    monkeypatch.setattr(firstpass.FirstPass, "candidates", spy)
    q = matrix[4]
    assert found(store, {"group:g0"}, q, 2)[0] == "c:d4#0"
    assert asked[0] == 75
    assert "c:d4#0" not in found(store, {"group:g1"}, q, 300)  # the denied side


def test_principal_directions_carry_most_of_a_low_rank_matrix() -> None:
    rng = np.random.default_rng(2)
    low = rng.standard_normal((3000, 20)) @ rng.standard_normal((20, 64))
    matrix = (low + 0.01 * rng.standard_normal((3000, 64))).astype(np.float32)
    basis = firstpass.basis(matrix, 20)
    assert basis.shape == (64, 20)
    assert np.allclose(basis.T @ basis, np.eye(20), atol=1e-4)
    kept = np.linalg.norm(matrix @ basis) ** 2 / np.linalg.norm(matrix) ** 2
    assert kept > 0.999
    assert np.array_equal(firstpass.basis(matrix, 64), np.eye(64, dtype=np.float32))


def test_quantised_codes_decode_within_a_step() -> None:
    rng = np.random.default_rng(3)
    values = rng.standard_normal((50, 256)).astype(np.float32)
    values[4] = 0.0
    packed, scales = firstpass.quantise(values, 128)
    assert packed.shape == (50, 2, 64) and scales.shape == (100,)
    codes = np.stack([packed & 15, packed >> 4], axis=-1).reshape(50, 2, 128).astype(np.int16)
    decoded = ((codes - 8) * scales.reshape(50, 2)[:, :, None]).reshape(50, 256)
    assert np.all(np.abs(decoded - values) <= scales.repeat(128).reshape(50, 256) / 2 + 1e-6)
    assert np.all(decoded[4] == 0.0)


def test_a_failing_first_pass_falls_back_to_float32(
        tmp_path: Path, first_pass_on_small_matrices: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firstpass, "build", lambda matrix: None)
    store, acls, vectors = build(tmp_path / "i.sqlite")
    q = vectors["c:d1#0"]
    held = set(GROUPS)
    assert found(store, held, q, 5) == reference(acls, vectors, held, q, 5)
    assert store._dense.first is None


def test_a_first_pass_failing_at_query_time_falls_back_to_float32(
        tmp_path: Path, first_pass_on_small_matrices: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firstpass.FirstPass, "candidates", lambda self, q, bias, count: None)
    store, acls, vectors = build(tmp_path / "i.sqlite")
    q = vectors["c:d1#0"]
    held = set(GROUPS[:9])
    assert found(store, held, q, 5) == reference(acls, vectors, held, q, 5)
    assert store._dense.first is None and store._dense.first_tried  # not retried per query


def test_too_small_a_matrix_gets_no_first_pass() -> None:
    assert firstpass.build(np.ones((10, 4), dtype=np.float32)) is None


def test_appending_rows_reuses_the_buffer_and_leaves_older_views_intact() -> None:
    rng = np.random.default_rng(1)
    first = rng.standard_normal((40, DIM)).astype(np.float32)
    grown = sqlite_store._appended(first, first[:3])  # a fresh buffer with room
    assert grown.shape == (43, DIM) and np.array_equal(grown[40:], first[:3])
    before = grown.copy()
    more = sqlite_store._appended(grown, first[5:7])
    assert more.base is grown.base  # appended in place
    assert np.array_equal(grown, before)  # the older view still shows what it showed
    assert np.array_equal(more, np.concatenate([before, first[5:7]]))
    # no room left: a new buffer, the old one untouched
    big = sqlite_store._appended(more, rng.standard_normal((100, DIM)).astype(np.float32))
    assert big.base is not more.base and np.array_equal(big[:45], more)


def test_the_gather_budget_grows_with_the_index(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Narrow callers' contiguous copies are kept within max(GATHER_BUDGET, matrix / 8), each
    at most a quarter of it: on a large index a 3 % caller's copy fits (it did not at 1M)."""
    store, _, vectors = build(tmp_path / "i.sqlite")
    monkeypatch.setattr(sqlite_store, "GATHER_BUDGET", 1)  # only the share counts here
    q = next(iter(vectors.values()))
    found(store, {"group:g0"}, q, 5)  # loads the matrix
    cache = store._dense
    budget = cache.matrix.nbytes // sqlite_store.GATHER_SHARE
    fits = np.arange(budget // 4 // cache.matrix[0].nbytes, dtype=np.int64)  # a quarter
    too_big = np.arange(len(fits) + 1, dtype=np.int64)
    acl_a, acl_b = AclFilter({"c": {"a"}}), AclFilter({"c": {"b"}})
    first = store._gathered(cache, acl_a, fits)
    assert store._gathered(cache, acl_a, fits) is first  # kept and reused
    assert np.array_equal(first, cache.matrix[fits])
    store._gathered(cache, acl_b, too_big)
    assert frozenset(acl_b.terms()) not in cache.gathered  # over a quarter: not kept


def test_handles_on_one_file_share_one_dense_cache(tmp_path: Path) -> None:
    """The web server's serving threads each open a handle: they share one matrix (and first
    copy), each query brought to its own connection's generation; the denied side holds
    across handles, and a handle with another IVF setting has a cache of its own."""
    import gc
    import threading

    store, acls, vectors = build(tmp_path / "i.sqlite")
    other = SqliteStore(tmp_path / "i.sqlite")
    q = vectors["c:d5#0"]
    alice = {"group:g0"}
    found(store, alice, q, 5)
    assert other._dense is store._dense  # one cache, not one per handle
    assert found(other, alice, q, 5) == reference(acls, vectors, alice, q, 5)
    other.update_acl("c:d5", Acl.single(["group:g0"]), None)  # granted through the other
    acls["c:d5"] = Acl.single(["group:g0"])
    assert found(store, alice, q, 5)[0] == "c:d5#0"
    other.update_acl("c:d5", Acl.single(["group:g11"]), None)  # and revoked
    acls["c:d5"] = Acl.single(["group:g11"])
    assert not any(k.startswith("c:d5#") for k in found(store, alice, q, 240))
    assert found(store, alice, q, 7) == reference(acls, vectors, alice, q, 7)
    ivf_handle = SqliteStore(tmp_path / "i.sqlite", dense_search="ivf")
    found(ivf_handle, alice, q, 5)
    assert ivf_handle._dense is not store._dense

    # Threads, each with its own handle, querying while another thread revokes documents
    # (deletes, or moves them to a group no reader holds): no query that started after a
    # revocation had committed may show that document.
    import time

    errors: list[str] = []
    revoked: dict[str, float] = {}
    stop = threading.Event()

    def ask(held: set[str]) -> None:
        handle = SqliteStore(tmp_path / "i.sqlite")
        rng = np.random.default_rng(len(held))
        while not stop.is_set():
            v = rng.standard_normal(DIM).astype(np.float32)
            started = time.monotonic()
            for hit in handle.dense(v / np.linalg.norm(v), AclFilter({"c": held}), 9):
                gone = revoked.get(hit.doc_id)
                if gone is not None and gone < started:
                    errors.append(f"{hit.doc_id} shown to {sorted(held)} after its revocation")
        handle.close()

    readers = [threading.Thread(target=ask, args=(h,)) for h in
               ({"group:g0"}, {"group:g1", "group:g2"}, set(GROUPS[:9]))]
    for t in readers:
        t.start()
    for i in range(30):
        doc_id = f"c:d{i}"
        if i % 3 == 0:
            other.delete([doc_id])
        else:
            other.update_acl(doc_id, Acl.single(["group:g11"]), None)
        revoked[doc_id] = time.monotonic()  # committed: every later query must miss it
        time.sleep(0.002)
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    for handle in (store, other, ivf_handle):
        handle.close()
    del store, other, ivf_handle, handle
    gc.collect()
    from indexer.store.sqlite import _SHARED
    assert not [k for k in list(_SHARED) if k[0].startswith(str(tmp_path.resolve()))]


def test_a_load_that_outgrows_its_counted_buffer_keeps_every_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows written between the load's COUNT and its SELECT outgrow the buffer sized by the
    count: simulated by a buffer of one row, read in batches of seven; every row arrives."""
    store, acls, vectors = build(tmp_path / "i.sqlite")
    monkeypatch.setattr(sqlite_store, "_roomy", lambda rows, dim: np.empty((1, dim), np.float32))
    monkeypatch.setattr(sqlite_store, "LOAD_BATCH", 7)
    everyone = set(GROUPS) | {"user:mallory@acme.com"}
    q = vectors["c:d9#1"]
    assert found(store, everyone, q, 240) == reference(acls, vectors, everyone, q, 240)
    assert len(store._dense.matrix) == len(vectors) == 240
