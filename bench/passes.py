"""Throughput of the pipeline's three passes with the files connector (protocol v2).

On a generated tree (bench/synthetic.py) with a large `.groups.json`, in one run: a clean
content pass (full sync), an unchanged content pass (incremental: nothing re-embedded), the
permission pass after every folder's ACL changed, and the identity pass. The files connector
makes no HTTP requests: 0 requests per document is the baseline the SaaS connectors report
against. The hashing embedder keeps the model out of the figure (bench/ingest.py measures it).

    python -m bench.passes [--docs 5000] [--groups 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.synthetic import write_tree
from connectors.base import Connector
from connectors.files.connector import FilesConnector
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline, SyncReport


def big_groups(root: Path, groups: int, members: int = 5) -> int:
    data = {f"g{g:05d}": [f"user:u{(g * 7 + m) % 5000}@bench.example" for m in range(members)]
            for g in range(groups)}
    (root / ".groups.json").write_text(json.dumps(data))
    return groups * members


def reshare(root: Path) -> None:
    """Every folder's ACL changes (content does not): the permission pass rewrites them all."""
    for access in root.glob("f*/.access.json"):
        acl = json.loads(access.read_text())
        acl["read"] = [*acl["read"], "user:auditor@bench.example"]
        access.write_text(json.dumps(acl))


def timed(run: Callable[[Connector], SyncReport],
          connector: Connector) -> tuple[SyncReport, float]:
    t = time.perf_counter()
    report = run(connector)
    return report, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--groups", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tree(Path(tmp) / "tree", args.docs)
        memberships = big_groups(root, args.groups)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        pipeline = Pipeline(store, HashingEmbedder())
        connector = FilesConnector("bench", root)
        rows = []
        report, secs = timed(pipeline.full_sync, connector)
        rows.append(("content, clean (full)", report.documents, secs, report.chunks_embedded))
        report, secs = timed(pipeline.incremental_sync, connector)
        rows.append(("content, unchanged (incremental)", report.documents, secs,
                     report.chunks_embedded))
        reshare(root)
        report, secs = timed(pipeline.permission_sync, connector)
        assert report.acl_updated == args.docs, report
        rows.append(("permissions, every ACL changed", report.documents, secs,
                     report.chunks_embedded))
        report, secs = timed(pipeline.group_sync, connector)
        rows.append((f"identities ({memberships} memberships)", memberships, secs, 0))
        store.close()
    print("| pass | items | seconds | items/s | chunks embedded | HTTP requests/doc |")
    print("|---|---|---|---|---|---|")
    for name, items, secs, chunks in rows:
        print(f"| {name} | {items} | {secs:.2f} | {items / secs:,.0f} | {chunks} | 0 |")


if __name__ == "__main__":
    main()
