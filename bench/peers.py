"""Dense ACL-filtered search: Clearance's embedded store against the engines a user would pick
instead, on one ACL workload, in one run on one machine.

Workload (seeded, the same for every engine): N chunks of D-dimensional clustered unit vectors
(five chunks a document), 2,000 group principals, each document behind 1-3 gates (a gate is an
OR of 1-3 groups, the document needs every gate: Confluence's space ∩ page ∩ ancestor shape),
callers in 1-50 groups, picked so that they read about 3 %, 40 % and 80 % of the chunks.

Each peer uses its own metadata pre-filter on the chunk's ACL id (the ids the caller passes are
computed once per caller, outside the timing: the peer is given Clearance's ACL evaluation for
free); Clearance is timed through `SqliteStore.dense`, its ACL evaluation included. Recall@10
is against the exact top 10 of the caller's readable chunks.

    python -m bench.peers [--chunks 100000[,1000000...]] [--dim 384] [--queries 40]
                          [--engines clearance,faiss-flat,faiss-hnsw,lancedb,chroma,sqlite-vec]
                          [--pool DIR/pool.minilm-onnx-int8.npz]

`--pool`: the same ACL workload over real passage embeddings and real questions
(bench/realpool.py builds the pool from the labelled sets and Debian's man pages).

The peers are optional (`pip install '.[peers]'`); an engine that is not installed is listed as
such. Figures go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# OpenMP threads (FAISS, OpenBLAS) busy-wait after each call by default and would steal the
# cores from the next engine asked; they sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import numpy.typing as npt

from core.acl import Acl, AclFilter
from core.models import Chunk, Section, make_document

CONNECTOR = "peers"
GROUPS = 2000
BROAD = 12  # company-wide and department groups: most gates name one of them
TARGETS = (0.03, 0.40, 0.80)
K = 10

Vectors = npt.NDArray[np.float32]
os.environ.setdefault("LANCE_LOG", "error")  # lance warns on every search otherwise


@dataclass
class Workload:
    vectors: Vectors  # (N, D), unit rows
    chunk_acl: npt.NDArray[np.int64]  # (N,) ACL id of each chunk's document
    acls: list[tuple[frozenset[int], ...]]  # gates of group numbers, by ACL id
    callers: list[frozenset[int]] = field(default_factory=list)
    queries: Vectors = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def admitted(self, caller: frozenset[int]) -> npt.NDArray[np.int64]:
        ok = [i for i, gates in enumerate(self.acls) if all(g & caller for g in gates)]
        return np.array(ok, dtype=np.int64)

    def mask(self, caller: frozenset[int]) -> npt.NDArray[np.bool_]:
        allowed = np.zeros(len(self.acls), dtype=bool)
        allowed[self.admitted(caller)] = True
        return np.asarray(allowed[self.chunk_acl])


def make_workload(n: int, dim: int, n_queries: int, seed: int = 5,
                  pool: tuple[Vectors, Vectors] | None = None) -> Workload:
    """The seeded workload; `pool` (passages, questions): real embeddings instead of the
    synthetic clusters (bench/realpool.py), the first n passages and n_queries questions
    drawn from the pool's, the ACLs as for synthetic vectors."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    centers = nrng.standard_normal((256, dim)).astype(np.float32)
    n_docs = (n + 4) // 5
    per_doc = np.full(n_docs, 5)
    per_doc[-1] = n - 5 * (n_docs - 1)
    doc_center = nrng.integers(0, len(centers), n_docs)
    if pool is None:
        vectors = centers[np.repeat(doc_center, per_doc)]
        vectors = vectors + 0.9 * nrng.standard_normal(vectors.shape).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    else:
        vectors = np.ascontiguousarray(pool[0][:n], dtype=np.float32)
    acls: list[tuple[frozenset[int], ...]] = []
    index: dict[tuple[frozenset[int], ...], int] = {}
    doc_acl = np.zeros(n_docs, dtype=np.int64)
    for d in range(n_docs):
        gates = []
        for _ in range(rng.randint(1, 3)):
            gate = {rng.randrange(BROAD)} if rng.random() < 0.9 else set()
            gate |= {rng.randrange(BROAD, GROUPS) for _ in range(rng.randint(1, 2))}
            gates.append(frozenset(gate))
        key = tuple(sorted(gates, key=sorted))
        doc_acl[d] = index.setdefault(key, len(acls))
        if doc_acl[d] == len(acls):
            acls.append(key)
    work = Workload(vectors.astype(np.float32), np.repeat(doc_acl, per_doc), acls)
    work.callers = pick_callers(work, rng)
    if pool is None:
        q = centers[nrng.integers(0, len(centers), n_queries)]
        q = q + 0.9 * nrng.standard_normal(q.shape).astype(np.float32)
        work.queries = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    else:
        pick = nrng.choice(len(pool[1]), min(n_queries, len(pool[1])), replace=False)
        work.queries = np.ascontiguousarray(pool[1][pick], dtype=np.float32)
    return work


def pick_callers(work: Workload, rng: random.Random) -> list[frozenset[int]]:
    """Callers in 1-50 groups whose readable share is nearest each target."""
    weights = np.bincount(work.chunk_acl, minlength=len(work.acls)) / len(work.chunk_acl)
    found: list[tuple[float, frozenset[int]]] = []
    for _ in range(400):
        broad = rng.sample(range(BROAD), rng.randint(0, BROAD))
        narrow = rng.sample(range(BROAD, GROUPS), rng.randint(1, 50 - len(broad)))
        caller = frozenset(broad + narrow)
        share = float(weights[work.admitted(caller)].sum()) if len(work.acls) else 0.0
        found.append((share, caller))
    return [min(found, key=lambda f: abs(f[0] - t))[1] for t in TARGETS]


def exact_top(work: Workload, mask: npt.NDArray[np.bool_], q: Vectors) -> list[int]:
    scores = np.where(mask, work.vectors @ q, -np.inf)
    take = min(K, int(mask.sum()))
    top = np.argpartition(-scores, take - 1)[:take] if take else np.zeros(0, dtype=np.int64)
    return [int(i) for i in top[np.argsort(-scores[top])]]


# -- engines: build(work) -> search(q, caller_no) -> row numbers ------------------------------
Search = Callable[[Vectors, int], list[int]]


_STORES: dict[tuple[int, str], tuple[Any, dict[int, int], list[AclFilter]]] = {}


def clearance_store(work: Workload, tmp: Path,
                    key: str = "clearance") -> tuple[Any, dict[int, int], list[AclFilter]]:
    """The workload's store under `key` (chunk id -> row number, callers' filters); variants
    with keys of their own get stores of their own, so none is timed on another's warm cache."""
    from indexer.store.sqlite import SqliteStore

    if (id(work), key) in _STORES:
        return _STORES[(id(work), key)]
    store = SqliteStore(tmp / "clearance.sqlite")
    acl_objs = [Acl.of([[f"group:g{g}" for g in sorted(gate)] for gate in gates])
                for gates in work.acls]
    start = 0
    with store.batch():
        d = 0
        while start < len(work.vectors):
            end = min(start + 5, len(work.vectors))
            doc = make_document(f"{CONNECTOR}:d{d}", f"d{d}", f"bench://{d}",
                                [Section(f"chunk {i}") for i in range(start, end)],
                                acl_objs[int(work.chunk_acl[start])])
            chunks = [Chunk(doc.doc_id, i - start, f"chunk {i}") for i in range(start, end)]
            store.upsert(doc, chunks, work.vectors[start:end], "bench", "r0")
            start, d = end, d + 1
    row_of = {int(r[0]): 5 * int(r[1].split(":d")[1]) + int(r[2]) for r in store._db.execute(
        "SELECT chunk_id, doc_id, ordinal FROM chunks").fetchall()}
    filters = [AclFilter({CONNECTOR: [f"group:g{g}" for g in caller]})
               for caller in work.callers]
    _STORES[(id(work), key)] = (store, row_of, filters)
    return store, row_of, filters


def clearance_engine(ivf_on: bool = False, nprobe: int | None = None,
                     ranking_only: bool = False,
                     bounds_on: bool = True) -> Callable[[Workload, Path], Search]:
    """Clearance's `dense` (texts fetched) or `dense_ranking` (ids and scores only), exact as
    the product's default is (cluster bounds where the rows pass their tests, else the 4-bit
    first pass + float32 rescoring for broad callers; `bounds_on` False: the first pass
    only), or with the opt-in IVF probing `nprobe` clusters (None: its default)."""
    def build(work: Workload, tmp: Path) -> Search:
        from indexer.store import ivf
        from indexer.store.sqlite import IVF_OFF

        key = ("ivf" if ivf_on else "exact") + ("-rank" if ranking_only else "") + (
            f"-np{nprobe}" if nprobe else "") + ("" if bounds_on else "-firstpass")
        store, row_of, filters = clearance_store(work, tmp, key)
        store.ivf_min_rows = ivf.MIN_ROWS if ivf_on else IVF_OFF
        store.nprobe = nprobe or ivf.NPROBE
        if not bounds_on:
            store.bounded_min_rows = IVF_OFF

        def search(q: Vectors, caller: int) -> list[int]:
            if ranking_only:
                return [row_of[c] for c, _ in store.dense_ranking(q, filters[caller], K)]
            return [row_of[h.chunk_id] for h in store.dense(q, filters[caller], K)]

        return search

    return build


_FAISS: dict[tuple[int, int], Any] = {}  # (workload, efConstruction or 0 for flat)


def faiss_engine(hnsw: bool, ef: int = 256,
                 construction: int = 80) -> Callable[[Workload, Path], Search]:
    """FAISS flat or HNSW (M 32, efConstruction `construction`) searched at efSearch `ef`;
    HNSW variants at other `ef` share one graph (its build time is counted by the first one
    built)."""
    def build(work: Workload, tmp: Path) -> Search:
        import faiss

        dim = work.vectors.shape[1]
        key = (id(work), construction if hnsw else 0)
        index = _FAISS.get(key)
        if index is None:
            if hnsw:
                index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = construction
            else:
                index = faiss.IndexFlatIP(dim)
            index.add(work.vectors)
            _FAISS[key] = index
        masks = [np.packbits(work.mask(c), bitorder="little") for c in work.callers]

        def search(q: Vectors, caller: int) -> list[int]:
            sel = faiss.IDSelectorBitmap(len(work.vectors), faiss.swig_ptr(masks[caller]))
            params = (faiss.SearchParametersHNSW(sel=sel, efSearch=ef) if hnsw
                      else faiss.SearchParameters(sel=sel))
            _, ids = index.search(q[None, :], K, params=params)
            return [int(i) for i in ids[0] if i >= 0]

        return search

    return build


def _in_list(ids: npt.NDArray[np.int64]) -> str:
    return ",".join(str(int(i)) for i in ids) or "-1"


def lancedb_engine(work: Workload, tmp: Path) -> Search:
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp / "lance"))
    dim = work.vectors.shape[1]
    table = db.create_table("chunks", pa.table({
        "row": pa.array(np.arange(len(work.vectors)), pa.int64()),
        "acl_id": pa.array(work.chunk_acl, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(work.vectors.ravel()), dim)}))
    wheres = [f"acl_id IN ({_in_list(work.admitted(c))})" for c in work.callers]

    def search(q: Vectors, caller: int) -> list[int]:
        rows = (table.search(q).metric("dot").where(wheres[caller], prefilter=True)
                .limit(K).select(["row"]).to_arrow())
        return [int(r) for r in rows.column("row").to_pylist()]

    return search


def chroma_engine(work: Workload, tmp: Path) -> Search:
    import chromadb

    client = chromadb.PersistentClient(path=str(tmp / "chroma"))
    col = client.create_collection("chunks", metadata={"hnsw:space": "ip"})
    step = 5000
    for s in range(0, len(work.vectors), step):
        e = min(s + step, len(work.vectors))
        col.add(ids=[str(i) for i in range(s, e)], embeddings=work.vectors[s:e].tolist(),
                metadatas=[{"acl_id": int(a)} for a in work.chunk_acl[s:e]])
    wheres: list[dict[str, Any]] = [
        {"acl_id": {"$in": [int(i) for i in work.admitted(c)] or [-1]}} for c in work.callers]

    def search(q: Vectors, caller: int) -> list[int]:
        out = col.query(query_embeddings=[q.tolist()], n_results=K, where=wheres[caller])
        return [int(i) for i in out["ids"][0]]

    return search


def qdrant_engine(work: Workload, tmp: Path) -> Search:
    """Qdrant's local mode (qdrant-client without a server: the collection lives in this
    process, as the embedded store does), its payload filter `acl_id` in the caller's ids."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp / "qdrant"))
    client.create_collection("chunks", vectors_config=models.VectorParams(
        size=work.vectors.shape[1], distance=models.Distance.DOT))
    step = 5000
    for s in range(0, len(work.vectors), step):
        e = min(s + step, len(work.vectors))
        client.upsert("chunks", points=models.Batch(
            ids=list(range(s, e)), vectors=work.vectors[s:e].tolist(),
            payloads=[{"acl_id": int(a)} for a in work.chunk_acl[s:e]]))
    filters = [models.Filter(must=[models.FieldCondition(
        key="acl_id", match=models.MatchAny(any=[int(i) for i in work.admitted(c)] or [-1]))])
        for c in work.callers]

    def search(q: Vectors, caller: int) -> list[int]:
        found = client.query_points("chunks", query=q.tolist(), query_filter=filters[caller],
                                    limit=K).points
        return [int(p.id) for p in found]

    return search


def sqlite_vec_engine(work: Workload, tmp: Path) -> Search:
    import apsw  # the stdlib sqlite3 of many Python builds cannot load extensions
    import sqlite_vec

    db = apsw.Connection(str(tmp / "vec.sqlite"))
    db.enable_load_extension(True)
    db.load_extension(sqlite_vec.loadable_path())
    dim = work.vectors.shape[1]
    db.execute(f"CREATE VIRTUAL TABLE chunks USING vec0(row INTEGER PRIMARY KEY, "
               f"embedding float[{dim}] distance_metric=cosine, acl_id INTEGER)")
    with db:
        db.executemany("INSERT INTO chunks(row, embedding, acl_id) VALUES (?, ?, ?)",
                       ((i, work.vectors[i].tobytes(), int(work.chunk_acl[i]))
                        for i in range(len(work.vectors))))
    admitted = [_in_list(work.admitted(c)) for c in work.callers]

    def search(q: Vectors, caller: int) -> list[int]:
        rows = db.execute(f"SELECT row FROM chunks WHERE embedding MATCH ? AND k = {K} "
                          f"AND acl_id IN ({admitted[caller]})", (q.tobytes(),))
        return [int(r[0]) for r in rows]

    return search


ENGINES: dict[str, Callable[[Workload, Path], Search]] = {
    "clearance": clearance_engine(),
    "clearance-rank": clearance_engine(ranking_only=True),
    "clearance-firstpass": clearance_engine(bounds_on=False),
    "clearance-firstpass-rank": clearance_engine(ranking_only=True, bounds_on=False),
    "clearance-ivf": clearance_engine(ivf_on=True),
    "clearance-ivf-rank": clearance_engine(ivf_on=True, ranking_only=True),
    "clearance-ivf-np4": clearance_engine(ivf_on=True, nprobe=4),
    "clearance-ivf-np8": clearance_engine(ivf_on=True, nprobe=8),
    "clearance-ivf-np16": clearance_engine(ivf_on=True, nprobe=16),
    "clearance-ivf-np48": clearance_engine(ivf_on=True, nprobe=48),
    "faiss-flat": faiss_engine(hnsw=False),
    "faiss-hnsw": faiss_engine(hnsw=True),
    "faiss-hnsw-ef512": faiss_engine(hnsw=True, ef=512),
    "faiss-hnsw-ef1024": faiss_engine(hnsw=True, ef=1024),
    "faiss-hnsw-c200": faiss_engine(hnsw=True, construction=200),
    "faiss-hnsw-c200-ef512": faiss_engine(hnsw=True, ef=512, construction=200),
    "faiss-hnsw-c200-ef1024": faiss_engine(hnsw=True, ef=1024, construction=200),
    "lancedb": lancedb_engine,
    "chroma": chroma_engine,
    "sqlite-vec": sqlite_vec_engine,
    "qdrant-local": qdrant_engine,
}


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@dataclass
class Row:
    engine: str
    build_s: float
    rss_mb: float
    by_caller: list[tuple[float, float, float]]  # p50 ms, p95 ms, recall@10


def build_engine(name: str, work: Workload, tmp: Path) -> tuple[Search, float, float] | str:
    """The engine's search, its build seconds and its RSS growth (warm: every caller asked
    once, so lazily built caches count)."""
    gc.collect()
    before = rss_mb()
    t0 = time.perf_counter()
    try:
        search = ENGINES[name](work, tmp)
    except ImportError as exc:
        return f"{name}: not installed ({exc.name})"
    for c in range(len(work.callers)):
        search(work.queries[0], c)
    return search, time.perf_counter() - t0, rss_mb() - before


def measure(built: dict[str, tuple[Search, float, float]], work: Workload,
            truth: list[list[list[int]]]) -> list[Row]:
    """Every engine on every query in turn, so a busy machine slows them alike."""
    times: dict[str, list[list[float]]] = {n: [[] for _ in work.callers] for n in built}
    recalls: dict[str, list[list[float]]] = {n: [[] for _ in work.callers] for n in built}
    names = list(built)
    order = random.Random(17)
    for c in range(len(work.callers)):
        for qi, q in enumerate(work.queries):
            # each query in a fresh (seeded) engine order: every engine follows every other
            # about equally often (a rotation always put the same engine before each one, and
            # the one after another Clearance store ran 1.7x faster than after FAISS: caches)
            turn = order.sample(names, len(names))
            for name in turn:
                search = built[name][0]
                t = time.perf_counter()
                got = search(q, c)
                times[name][c].append((time.perf_counter() - t) * 1000)
                want = truth[c][qi]
                recalls[name][c].append(len(set(got) & set(want)) / len(want) if want else 1.0)
    callers = range(len(work.callers))
    return [Row(name, b, r, [(statistics.median(times[name][c]),
                              float(np.percentile(times[name][c], 95)),
                              statistics.fmean(recalls[name][c])) for c in callers])
            for name, (_, b, r) in built.items()]


def _twins(work: Workload) -> tuple[Any, Any, list[AclFilter]] | None:
    """The "clearance" engine's store (exact, the default) and an IVF store on the same file."""
    from indexer.store.sqlite import SqliteStore

    if (id(work), "exact") not in _STORES:
        return None
    exact, _, filters = _STORES[(id(work), "exact")]
    twin = SqliteStore(exact.path, dense_search="ivf")
    return exact, twin, filters


def first_query_after_writes(work: Workload, rounds: int = 3) -> None:
    """What the first broad query after a write costs on the exact store (int8 copy kept,
    new rows scored in float32) and on the IVF store (training kept), and a forced retrain."""
    from indexer.store import ivf

    stores = _twins(work)
    if stores is None:
        return
    exact, twin, filters = stores
    broad = filters[-1]
    for s in (exact, twin):
        s.dense(work.queries[0], broad, K)
    rng = np.random.default_rng(11)
    acl = Acl.of([["group:g0"]])
    print("\nfirst broad query after writes (ms, median of "
          f"{rounds}): | documents rewritten | exact store | IVF store |")
    for docs in (1, 200, 1000):
        got: dict[str, list[float]] = {"exact": [], "ivf": []}
        for _ in range(rounds):
            with exact.batch():
                for d in rng.choice(len(work.vectors) // 5, size=docs, replace=False):
                    vec = work.vectors[5 * d:5 * d + 5]
                    vec = vec + 0.01 * rng.standard_normal(vec.shape).astype(np.float32)
                    doc = make_document(f"{CONNECTOR}:d{d}", f"d{d}", f"bench://{d}",
                                        [Section(f"chunk {5 * d + i}") for i in range(5)], acl)
                    exact.upsert(doc, [Chunk(doc.doc_id, i, f"chunk {5 * d + i}")
                                       for i in range(5)], vec.astype(np.float32), "bench", "r1")
            for name, s in (("exact", exact), ("ivf", twin)):
                t = time.perf_counter()
                s.dense(work.queries[0], broad, K)
                got[name].append((time.perf_counter() - t) * 1000)
        print(f"| {docs} ({5 * docs} chunks) | {statistics.median(got['exact']):.0f} | "
              f"{statistics.median(got['ivf']):.0f} |")
    t = time.perf_counter()
    ivf.train(twin._dense.matrix, twin._dense.chunk_ids)
    print(f"a retrain at {len(work.vectors)} rows (what each write would cost if the first "
          f"query retrained): {(time.perf_counter() - t) * 1000:.0f} ms")


def hybrid_depth(work: Workload, depth: int = 100) -> None:
    """The dense side as the hybrid retriever asks it (top `depth`, texts fetched): the exact
    store against the IVF store on the same file, interleaved, with the IVF's recall@depth."""
    stores = _twins(work)
    if stores is None:
        return
    exact, twin, filters = stores
    print(f"\ndense side at depth {depth}: | caller | exact p50 / p95 ms | IVF p50 / p95 ms | "
          f"IVF recall@{depth} |")
    for c, f in enumerate(filters):
        twin.dense(work.queries[0], f, depth)
        got: dict[str, list[float]] = {"exact": [], "ivf": []}
        recall = []
        for q in work.queries:
            ids = {}
            for name, s in (("exact", exact), ("ivf", twin)):
                t = time.perf_counter()
                ids[name] = {h.chunk_id for h in s.dense(q, f, depth)}
                got[name].append((time.perf_counter() - t) * 1000)
            recall.append(len(ids["ivf"] & ids["exact"]) / max(len(ids["exact"]), 1))
        cells = " | ".join(f"{statistics.median(got[n]):.2f} / {np.percentile(got[n], 95):.2f}"
                           for n in ("exact", "ivf"))
        print(f"| {c} | {cells} | {statistics.fmean(recall):.3f} |")


def run_size(n: int, dim: int, n_queries: int, names: list[str],
             write_cost: bool = False, pool: tuple[Vectors, Vectors] | None = None) -> list[Row]:
    return measure_size(n, dim, n_queries, names, write_cost, pool)[0]


def measure_size(n: int, dim: int, n_queries: int, names: list[str],
                 write_cost: bool = False, pool: tuple[Vectors, Vectors] | None = None
                 ) -> tuple[list[Row], list[float]]:
    """Every engine's row at n chunks, printed as a table, and the share each caller reads."""
    work = make_workload(n, dim, n_queries, pool=pool)
    dim = work.vectors.shape[1]
    masks = [work.mask(c) for c in work.callers]
    shares = [float(m.mean()) for m in masks]
    truth = [[exact_top(work, m, q) for q in work.queries] for m in masks]
    kind = "real passages (bench/realpool.py)" if pool is not None else "synthetic"
    print(f"\n{n} chunks x {dim} ({kind}), {len(work.acls)} distinct ACLs, callers reading "
          + ", ".join(f"{s:.1%}" for s in shares) + f"; {n_queries} queries each, top {K}")
    built: dict[str, tuple[Search, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            sub = Path(tmp) / name
            sub.mkdir()
            result = build_engine(name, work, sub)
            if isinstance(result, str):
                print(result)
            else:
                built[name] = result
        rows = measure(built, work, truth)
        if write_cost:
            hybrid_depth(work)
            first_query_after_writes(work)
        built.clear()
        _STORES.clear()
        gc.collect()
    print("| engine | build s | RSS +MB | " + " | ".join(
        f"{s:.0%}: p50 / p95 ms, R@10" for s in shares) + " |")
    print("|---" * (3 + len(shares)) + "|")
    for r in rows:
        cells = " | ".join(f"{p50:.2f} / {p95:.2f}, {rec:.3f}" for p50, p95, rec in r.by_caller)
        print(f"| {r.engine} | {r.build_s:.1f} | {r.rss_mb:.0f} | {cells} |")
    base = next((r for r in rows if r.engine == "clearance"), None)
    if base:
        for r in rows:
            if r is not base:
                ratios = ", ".join(f"{b[0] / x[0]:.2f}" for b, x in zip(base.by_caller,
                                                                        r.by_caller, strict=True))
                print(f"clearance p50 / {r.engine} p50 by caller: {ratios}")
    return rows, shares


def parse_engines(ap: argparse.ArgumentParser, text: str) -> list[str]:
    """--engines: known engine names, comma-separated (a usage error otherwise)."""
    names = [e for e in text.split(",") if e]
    unknown = [e for e in names if e not in ENGINES]
    if unknown or not names:
        ap.error(f"unknown engine(s): {', '.join(unknown) or '(none given)'}; "
                 f"known: {', '.join(ENGINES)}")
    return names


def parse_sizes(ap: argparse.ArgumentParser, text: str) -> list[int]:
    """--chunks: comma-separated sizes of at least 100, in the order given."""
    try:
        sizes = [int(x) for x in text.split(",") if x]
    except ValueError:
        ap.error(f"--chunks: comma-separated integers, not {text!r}")
    if not sizes or min(sizes) < 100:
        ap.error("--chunks: each size at least 100")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", default="100000",
                    help="comma-separated sizes, e.g. 10000,100000,1000000 for the scaling run")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--write-cost", action="store_true",
                    help="also time the first broad query after 1 / 200 / 1,000 rewrites")
    ap.add_argument("--pool", type=Path,
                    help="real passages and questions (bench/realpool.py's .npz) instead of "
                         "the synthetic vectors; --dim is then the pool's")
    args = ap.parse_args(argv)
    names, sizes = parse_engines(ap, args.engines), parse_sizes(ap, args.chunks)
    pool = None
    if args.pool is not None:
        from bench.realpool import load_pool

        try:
            pool = load_pool(args.pool)
        except (OSError, ValueError, KeyError) as exc:
            ap.error(f"--pool {args.pool}: not a pool file ({type(exc).__name__})")
        if max(sizes) > len(pool[0]):
            ap.error(f"--chunks: the pool holds {len(pool[0]):,} passages, fewer than "
                     f"{max(sizes):,}")
    for n in sizes:
        run_size(n, args.dim, args.queries, names, write_cost=args.write_cost, pool=pool)


if __name__ == "__main__":
    main()
