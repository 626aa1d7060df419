"""Confluence sync throughput against the emulator, with and without attachments.

A generated tenant (`emulators.confluence.generate_tenant`: 1000 content items in deep trees,
restrictions at several levels, drafts, trash, blog posts; a text attachment on every third
page, a markdown and an image on some) served over TLS; one full sync into a fresh SQLite
index with the hashing embedder (so the number is the connector's and the pipeline's, not a
model's). Prints documents/s and the requests the emulator counted, per document and by kind:
the search expands bodies, versions, ancestors, space and restrictions, so there are no
per-page calls; an attachment costs a 302 and a download. A last row reads the space
permissions through v2 (`space_permissions = "v2"`).

    python -m bench.confluence_sync [--pages 1000] [--page-size 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Literal

from connectors.confluence.client import ConfluenceClient
from connectors.confluence.connector import ConfluenceConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer
from emulators.confluence import ConfluenceEmulator, generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline

KINDS = (("search", "/content/search"), ("restrictions", "/restriction/"),
         ("space perms", "/space"), ("groups", "/group"), ("users", "/users-bulk"),
         ("attachments", ("/download/", "/media/")))


def _kind(path: str) -> str:
    for name, marks in KINDS:
        for mark in (marks,) if isinstance(marks, str) else marks:
            if mark in path:
                return name
    return "other"


def _row(label: str, perms: str, documents: int, took: float, counts: dict[str, int],
         per: int) -> str:
    by_kind: dict[str, int] = {}
    for path, n in counts.items():
        by_kind[_kind(path)] = by_kind.get(_kind(path), 0) + n
    requests = sum(counts.values())
    split = ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items()))
    return (f"| {label} | {perms} | {documents} | {took:.2f} s | {per / took:.0f} | "
            f"{requests} | {requests / per:.2f} | {split} |")


def run(pages: int, page_size: int, attachments: bool,
        perms: Literal["v1", "v2"] = "v1", incremental: bool = False) -> list[str]:
    data = generate_tenant(seed=3, pages=pages, attachment_every=3)
    emulator = ConfluenceEmulator(data)
    with EmulatorServer(emulator) as server, tempfile.TemporaryDirectory() as tmp:
        policy = HttpPolicy("bench", HttpLimits(rate=0), ca_bundle=str(server.ca_bundle))
        client = ConfluenceClient(f"{server.base_url}/wiki", policy, auth="basic",
                                  token="generated-token", username="admin@acme.example",
                                  page_size=page_size)
        connector = ConfluenceConnector("bench", client,
                                        spaces=[s["key"] for s in data["spaces"]],
                                        include_attachments=attachments,
                                        space_permissions=perms)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        pipeline = Pipeline(store, HashingEmbedder())
        started = time.perf_counter()
        report = pipeline.full_sync(connector)
        took = time.perf_counter() - started
        assert report.status == "ok", report.errors
        label = "with" if attachments else "without"
        rows = [_row(f"full, {label}", perms, report.documents, took,
                     emulator.counters.to_json()["by_path"], report.documents)]
        if incremental:  # 1% of the pages edited, then an incremental pass
            emulator.counters.reset()
            current = [c for c in data["content"] if c["status"] == "current"]
            for item in current[:: 100]:
                emulator.edit(item["id"], body=f"<p>Edited {item['id']}, zephyrmarker.</p>")
            started = time.perf_counter()
            report = pipeline.incremental_sync(connector)
            took = time.perf_counter() - started
            assert report.status == "ok", report.errors
            rows.append(_row(f"incremental, {len(current[::100])} edited", perms,
                             report.indexed, took, emulator.counters.to_json()["by_path"],
                             len(current)))
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    print("(incremental: documents = re-indexed; documents/s and per document = over the "
          "pages in scope)")
    print("| sync, attachments | space perms | documents | time | documents/s | requests | "
          "per document | requests by kind |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for attachments, perms, incremental in ((False, "v1", True), (True, "v1", False),
                                            (False, "v2", False)):
        for row in run(args.pages, args.page_size, attachments, perms,  # type: ignore[arg-type]
                       incremental):
            print(row, flush=True)


if __name__ == "__main__":
    main()
