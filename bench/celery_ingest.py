"""Ingest throughput through Celery (a `clearance worker` process fed through a local
redis-server) against the same full sync run in-process, on the same generated tree.

In-process: Pipeline.full_sync into a fresh home, timed around the call. Through Celery: the
same sync into another fresh home, timed from `sync --queue`'s enqueue to the moment its report
is written (broker hop, worker pickup and state polling included). The worker is warmed first
by syncing a 5-document connector, as the in-process embedder is warmed by one embed call, so
neither side pays for loading the model. Ratio = Celery docs/s / in-process docs/s (target >=
0.9). Runs alternate, best of `--runs` each.

    python -m bench.celery_ingest [--docs 1000] [--embedder minilm] [--runs 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.synthetic import write_tree
from connectors.files.connector import FilesConnector
from indexer.embedding import load_embedder
from indexer.jobs.app import create_app, enqueue
from indexer.jobs.testing import JobsDeployment, RedisServer
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline


def in_process(root: Path, home: Path, embedder_name: str) -> tuple[float, int]:
    embedder = load_embedder(embedder_name)
    embedder.embed(["warm up the model"])
    store = SqliteStore(home / "index.sqlite3")
    try:
        t = time.perf_counter()
        report = Pipeline(store, embedder).full_sync(FilesConnector("docs", root))
        return time.perf_counter() - t, report.documents
    finally:
        store.close()


def through_celery(dep: JobsDeployment, connector: str) -> tuple[float, int]:
    settings = dep.settings()
    app = create_app(settings, with_schedule=False)
    since = time.time()
    t = time.perf_counter()
    enqueue(app, settings, [connector], "full")
    dep.connector = connector
    report = dep.wait_report("full", since=since, timeout=3600)
    elapsed = time.perf_counter() - t
    if report["status"] != "ok":
        raise RuntimeError(f"sync failed: {report['error']}\n{dep.logs()}")
    return elapsed, int(report["documents"])


def celery_deployment(work: Path, broker: str, root: Path, warm: Path,
                      embedder: str) -> JobsDeployment:
    dep = JobsDeployment(work, broker, root, embedder=embedder)
    with dep.config.open("a", encoding="utf-8") as cfg:
        cfg.write(f'\n[[connectors]]\nname = "warmup"\nkind = "files"\nroot = "{warm}"\n')
    return dep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_tree(work / "tree", args.docs)
        warm = write_tree(work / "warm", 5, seed=99)
        inproc: list[float] = []
        celery: list[float] = []
        with RedisServer(work / "redis") as redis:
            for run in range(args.runs):
                seconds, docs = in_process(root, work / f"inproc{run}", args.embedder)
                inproc.append(docs / seconds)
                print(f"in-process run {run + 1}: {docs} docs in {seconds:.2f}s "
                      f"= {docs / seconds:.1f} docs/s", flush=True)
                dep = celery_deployment(work / f"celery{run}", redis.url, root, warm,
                                        args.embedder)
                try:
                    dep.worker("--pool", "solo")
                    through_celery(dep, "warmup")
                    seconds, docs = through_celery(dep, "docs")
                finally:
                    dep.close()
                celery.append(docs / seconds)
                print(f"celery run {run + 1}:     {docs} docs in {seconds:.2f}s "
                      f"= {docs / seconds:.1f} docs/s", flush=True)
    best_in, best_celery = max(inproc), max(celery)
    print(f"embedder {args.embedder}, {args.docs} docs, best of {args.runs}: in-process "
          f"{best_in:.1f} docs/s, celery {best_celery:.1f} docs/s, ratio "
          f"{best_celery / best_in:.3f} (median ratio "
          f"{statistics.median(celery) / statistics.median(inproc):.3f}; target >= 0.9)")


if __name__ == "__main__":
    main()
