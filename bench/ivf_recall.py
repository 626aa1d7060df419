"""IVF recall on real embeddings (issue 16): the labelled sets' passages and questions.

    python -m bench.ivf_recall [--sets faq howto debfaq manpages-desc manpages-name]
                               [--embedder minilm-onnx-int8] [--vectors DIR]

bench/peers.py measures the store's IVF on synthetic clustered vectors, where recall@10 is
1.000 even at nprobe 4. Real embeddings are far less clustered. This bench embeds every
labelled set's documents through the real pipeline (chunker + embedder, as sets.py indexes
them), pools their passages into one matrix, asks every set's questions, and compares the
IVF's answer (indexer/store/ivf.py: the same train / arrange / search the store runs, lists
= sqrt(N)) with the exact scan, for several `nprobe`, for a caller reading everything and for
callers reading a random 40 % and 3 % of the passages. Reported: recall@10 (what `search`
shows) and recall@100 (the hybrid's candidate depth), and the share of rows each probe reads.
At 100k rows the opt-in IVF's default (`[store] dense_search = "ivf"`, 24 of 316 lists) reads
~7.6 %: the row share, not nprobe, is what carries over between sizes, so the table shows the
nprobe reading the same share here.
Beside it: the product's default exact path (4-bit first pass over every row, the best
max(300, 10k, readable / 128) rescored in float32, widened while firstpass.enough doubts
them) and, if FAISS is installed (`pip install '.[peers]'`), FAISS IVF-flat and HNSW (M 32,
efConstruction 80) at several efSearch on the same vectors.

`--vectors DIR` keeps the pooled passages and questions as DIR/ivf-recall.<embedder>.npz;
`--stores DIR` reads the passages from the indexes `bench.quality.sets --candidates DIR` kept.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.quality.run import DatasetConnector
from bench.quality.sets import PUBLIC, load_set, store_path
from core.acl import Acl
from core.models import Section, make_document
from indexer.embedding import load_embedder
from indexer.store import ivf
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline

Matrix = npt.NDArray[np.float32]


def embed_sets(names: list[str], embedder_name: str,
               stores: Path | None = None) -> tuple[Matrix, Matrix]:
    """(passages, questions): every set's chunk vectors as the store holds them, and the
    embeddings of every set's questions. `stores`: read the passages from the indexes
    bench.quality.sets kept there (`--candidates DIR`) instead of syncing again."""
    embedder = load_embedder(embedder_name)
    passages: list[Matrix] = []
    questions: list[Matrix] = []
    for name in names:
        docs, qs = load_set(name)
        kept = store_path(stores, name, embedder_name) if stores is not None else None
        with tempfile.TemporaryDirectory() as tmp:
            if kept is not None:
                if not kept.is_file():
                    raise SystemExit(f"{kept}: no index kept there (run bench.quality.sets "
                                     f"--candidates {stores})")
                store = SqliteStore(kept)
            else:
                store = SqliteStore(Path(tmp) / "v.sqlite3")
                connector = docs[0][0].split(":")[0]
                Pipeline(store, embedder).full_sync(DatasetConnector(connector, [
                    make_document(d, title, f"{connector}://{d}", [Section(text)],
                                  Acl.from_json(PUBLIC)) for d, title, text in docs]))
            blobs = [r[0] for r in store._db.execute("SELECT vector FROM chunks")]
            store.close()
        passages.append(np.frombuffer(b"".join(blobs), dtype=np.float32)
                        .reshape(len(blobs), -1))
        questions.append(np.asarray(embedder.embed([q for q, _, _ in qs]), dtype=np.float32))
        print(f"{name}: {len(blobs):,} passages, {len(qs)} questions", flush=True)
    return np.concatenate(passages), np.concatenate(questions)


def top(scores: Matrix, take: int) -> set[int]:
    take = min(take, len(scores))
    return {int(i) for i in np.argpartition(-scores, take - 1)[:take]}


def run(passages: Matrix, questions: Matrix, probes: list[int]) -> None:
    n = len(passages)
    ids = np.arange(n, dtype=np.int64)
    training = ivf.train(passages, ids)
    layout = ivf.arrange(training, passages, ids)
    arranged = np.ascontiguousarray(passages[layout.order])
    lists = len(layout.centroids)
    sizes = np.diff(layout.offsets)
    print(f"\n{n:,} passages x {passages.shape[1]}, {len(questions):,} questions, "
          f"{lists} lists (sqrt N), list sizes min / median / max {sizes.min()} / "
          f"{int(np.median(sizes))} / {sizes.max()}")
    rng = np.random.default_rng(7)
    callers = {"100 %": np.ones(n, dtype=bool), "40 %": rng.random(n) < 0.40,
               "3 %": rng.random(n) < 0.03}
    print("\n| caller | nprobe | rows read | recall@10 | recall@100 | questions with "
          "recall@10 < 1 |")
    print("|---|---|---|---|---|---|")
    for label, readable in callers.items():
        arranged_mask = readable[layout.order]
        exact_scores = passages @ questions.T  # (rows, questions)
        for nprobe in probes:
            r10 = r100 = 0.0
            missed = 0
            read = 0
            for qi, q in enumerate(questions):
                masked = np.where(readable, exact_scores[:, qi], -np.inf)
                truth10, truth100 = top(masked, 10), top(masked, 100)
                found = ivf.search(layout, arranged, arranged_mask, q, nprobe, 100)
                if found is None:  # the store scans exactly here
                    got = truth100
                    read += n
                else:
                    rows, scores = found
                    order = np.argsort(-scores)
                    got_rows = [int(layout.order[rows[i]]) for i in order]
                    got = set(got_rows)
                    near = layout.centroids @ q
                    chosen = np.argpartition(-near, min(nprobe, lists) - 1)[:nprobe]
                    read += int(sizes[chosen].sum())
                    got10 = set(got_rows[:10])
                    hit10 = len(got10 & truth10) / len(truth10)
                    r10 += hit10
                    missed += hit10 < 1
                    r100 += len(got & truth100) / len(truth100)
                    continue
                r10 += 1.0
                r100 += 1.0
            m = len(questions)
            print(f"| {label} | {nprobe} | {read / (m * n):.1%} | {r10 / m:.3f} | "
                  f"{r100 / m:.3f} | {missed} |", flush=True)


def _p50_p95(times: list[float]) -> str:
    ms = np.asarray(times) * 1e3
    return f"{np.percentile(ms, 50):.3f} / {np.percentile(ms, 95):.3f}"


def exact_and_peers(passages: Matrix, questions: Matrix) -> None:
    """recall@10 and per-question latency (one question per call, one thread) of the 4-bit
    first pass with exact rescoring (the store's default for broad callers) and of FAISS's
    IVF and HNSW, for a caller who reads every passage and one who reads a random 40 %
    (FAISS given the caller's rows as a bitmap selector, as bench/peers.py does)."""
    import time

    from indexer.store import firstpass
    from indexer.store.sqlite import RESCORE_FACTOR, RESCORE_MIN, RESCORE_SHARE

    n = len(passages)
    callers = {"100 %": np.ones(n, dtype=bool),
               "40 %": np.random.default_rng(11).random(n) < 0.40}
    exact = questions @ passages.T
    truths = {label: [set(np.argpartition(-np.where(mask, s, -np.inf), 9)[:10].tolist())
                      for s in exact] for label, mask in callers.items()}

    def recall(found: list[set[int]], label: str) -> float:
        return float(np.mean([len(f & t) / 10
                              for f, t in zip(found, truths[label], strict=True)]))

    print("\n| engine | setting | caller | recall@10 | p50 / p95 ms |")
    print("|---|---|---|---|---|")
    scan = firstpass.FirstPass(passages)
    for label, mask in callers.items():
        bias = np.where(mask, 0.0, -np.inf).astype(np.float32)
        readable = int(mask.sum())
        default = max(RESCORE_MIN, RESCORE_FACTOR * 10, -(-readable // RESCORE_SHARE))
        for wanted in sorted({100, 200, default}):
            found, times, asked = [], [], []
            for q in questions:
                t = time.perf_counter()
                if wanted == default:  # the store's rule: widened until firstpass.enough
                    got = firstpass.search(scan, passages, q, bias, 10, wanted, readable)
                    assert got is not None
                    if got.rows is None or got.scores is None:
                        cand = np.flatnonzero(mask)
                        best = passages[cand] @ q
                    else:
                        cand, best = got.rows, got.scores
                    asked.append(len(got.rows) if got.rows is not None else readable)
                else:
                    pair = scan.candidates(q, bias, wanted)
                    assert pair is not None
                    cand = pair.rows
                    best = passages[cand] @ q
                top10 = cand[np.argpartition(-best, 9)[:10]]
                times.append(time.perf_counter() - t)
                found.append(set(top10.tolist()))
            if wanted == default:
                setting = (f"~{wanted} rescored to start, widened (rescored mean "
                           f"{np.mean(asked):.0f}, max {max(asked)})")
                mark = " (default)"
            else:
                setting, mark = f"~{wanted} rescored", ""
            print(f"| clearance exact{mark} | 4-bit first pass over {firstpass.DIMS} "
                  f"principal directions, {setting} | {label} | "
                  f"{recall(found, label):.4f} | {_p50_p95(times)} |", flush=True)
    try:
        import faiss
    except ImportError:
        print("| faiss | not installed | | | |")
        return
    faiss.omp_set_num_threads(1)
    dim = passages.shape[1]
    lists = ivf.list_count(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(passages)
    index.add(passages)
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.add(passages)
    engines: list[tuple[str, str, Any]] = [
        *[("faiss IVF-flat", f"{lists} lists, nprobe {p}",
           lambda sel, p=p: faiss.SearchParametersIVF(sel=sel, nprobe=p)) for p in (8, 24, 48, 96)],
        *[("faiss HNSW", f"M 32, efSearch {ef}",
           lambda sel, ef=ef: faiss.SearchParametersHNSW(sel=sel, efSearch=ef))
          for ef in (64, 128, 256, 512, 1024)]]
    for label, mask in callers.items():
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        for name, setting, make in engines:
            params = make(sel)
            target = index if name.startswith("faiss IVF") else hnsw
            found, times = [], []
            for q in questions:
                t = time.perf_counter()
                _, ids = target.search(q[None, :], 10, params=params)
                times.append(time.perf_counter() - t)
                found.append({int(i) for i in ids[0] if i >= 0})
            print(f"| {name} | {setting} | {label} | {recall(found, label):.4f} | "
                  f"{_p50_p95(times)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+",
                    default=["faq", "howto", "debfaq", "manpages-desc", "manpages-name"])
    ap.add_argument("--embedder", default="minilm-onnx-int8")
    ap.add_argument("--vectors", type=Path, default=None)
    ap.add_argument("--stores", type=Path, default=None,
                    help="the --candidates DIR of bench.quality.sets: passages read from the "
                         "indexes it kept, not synced again")
    ap.add_argument("--nprobe", default=None,
                    help="comma list (default: 4, 8, 16, 24, 48 and the one reading the "
                         "store's 100k share, 7.6 %%)")
    args = ap.parse_args()
    path = args.vectors / f"ivf-recall.{args.embedder}.npz" if args.vectors else None
    if path is not None and path.exists():
        saved = np.load(path)
        passages, questions = saved["passages"], saved["questions"]
    else:
        passages, questions = embed_sets(args.sets, args.embedder, args.stores)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, passages=passages, questions=questions)
    lists = ivf.list_count(len(passages))
    same_share = max(1, math.ceil(ivf.NPROBE / ivf.list_count(100_000) * lists))
    if args.nprobe:
        try:
            probes = sorted({int(x) for x in args.nprobe.split(",")})
        except ValueError:
            ap.error("--nprobe: a comma list of integers")
    else:
        probes = sorted({4, 8, 16, 24, 48, same_share})
    run(passages, questions, probes)
    exact_and_peers(passages, questions)


if __name__ == "__main__":
    main()
