"""Ingest throughput: documents/s and chunks/s of a full sync, against raw embedding speed.

For the bundled Acme tenant and a generated tree (default 10,000 documents), runs a clean full
sync (extraction, chunking, embedding, SQLite writes, checkpoints) and then embeds exactly the
same chunk texts again with the bare embedder, in the same batch sizes. The ratio
end-to-end / raw says how much the pipeline costs on top of the model (target >= 0.9 with the
pipelined sync). Each corpus is synced twice, pipelined and sequential (Pipeline(pipelined=False)),
into separate stores, so that the gain of overlapping embedding with extraction and writes shows.

    python -m bench.ingest [--docs 10000] [--embedder minilm] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from apps.demo import TENANT
from bench.synthetic import write_tree
from connectors.extract import preload
from connectors.files.connector import FilesConnector
from indexer.chunking import chunk_document, embedding_text
from indexer.embedding import Embedder, load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline


def measure(name: str, root: Path, embedder: Embedder, work: Path,
            pipelined: bool = True, raw_every: int = 1) -> dict[str, float]:
    """One clean full sync of `root`, then the same chunk texts through the bare embedder
    (`raw_every` > 1: only every n-th page of them, to estimate the raw rate in less time)."""
    # The parsers are imported before the clock starts, as the model is loaded before it: one-off
    # costs of a process (Runtime.pipeline starts the same import when a sync starts).
    preload().join()
    # One full batch of full-length texts: ORT's arena grows to its largest shape here, not
    # in whichever of the two timed phases comes first.
    embedder.embed(["warm up the model with a long passage " * 40] * 32)
    store = SqliteStore(work / f"{name}-{pipelined}.sqlite3")
    pipeline = Pipeline(store, embedder, pipelined=pipelined)
    connector = FilesConnector(name, root)
    t, cpu = time.perf_counter(), time.process_time()
    report = pipeline.full_sync(connector)
    e2e, e2e_cpu = time.perf_counter() - t, time.process_time() - cpu
    # The same chunk texts, embedded page by page as the pipeline does, without anything else.
    pages = []
    for page in connector.documents():
        texts = [embedding_text(d.title, c) for d in page.documents
                 for c in chunk_document(d, embedder.count_tokens, pipeline.policy)]
        pages.append(texts)
    sample = pages[::raw_every]
    t, cpu = time.perf_counter(), time.process_time()
    for texts in sample:
        if texts:
            embedder.embed(texts)
    raw, raw_cpu = time.perf_counter() - t, time.process_time() - cpu
    chunks = sum(len(p) for p in pages)
    sampled = sum(len(p) for p in sample)
    raw_rate = sampled / raw
    store.close()
    return {"documents": report.documents, "chunks": chunks, "e2e_s": e2e, "raw_s": raw,
            "docs_per_s": report.documents / e2e, "chunks_per_s": chunks / e2e,
            "raw_chunks_per_s": raw_rate, "ratio": chunks / e2e / raw_rate,
            # CPU seconds (all threads of this process) per chunk, raw over end to end: what the
            # pipeline costs on top of the model, steadier than wall time on a loaded machine.
            "cpu_ratio": (raw_cpu / sampled) / (e2e_cpu / chunks),
            "cpu_ms_per_chunk": 1000 * e2e_cpu / chunks}


def show(label: str, r: dict[str, float]) -> None:
    print(f"{label}: {r['documents']:.0f} documents, {r['chunks']:.0f} chunks in {r['e2e_s']:.1f}s"
          f" -> {r['docs_per_s']:.1f} docs/s, {r['chunks_per_s']:.1f} chunks/s end to end; "
          f"raw embedding {r['raw_chunks_per_s']:.1f} chunks/s; "
          f"ratio end-to-end/raw {r['ratio']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--embedder", nargs="+", default=["minilm"],
                    help="one or more embedders, measured in turn in the same run")
    ap.add_argument("--cache-dir", type=Path, default=None, help="ONNX embedders' graphs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_tree(work / "generated", args.docs)
        for name in args.embedder:
            embedder = load_embedder(name, cache_dir=args.cache_dir)
            embedder.embed(["warm up the model"])
            for pipelined in (True, False):
                how = "pipelined" if pipelined else "sequential"
                show(f"{name}, {how}, acme sample tenant",
                     measure(f"acme-{name}", TENANT, embedder, work, pipelined))
                show(f"{name}, {how}, generated tree ({args.docs} docs)",
                     measure(f"generated-{name}", root, embedder, work, pipelined))


if __name__ == "__main__":
    main()
