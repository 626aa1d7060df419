"""Confluence sync throughput against the emulator, with and without attachments.

A generated tenant (1000 content items in deep trees, restrictions at several levels) served
over TLS; one full sync into a fresh SQLite index with the hashing embedder (so the number is
the connector's and the pipeline's, not a model's). Prints documents/s and the requests per
document the emulator counted (the search expands bodies, versions, ancestors, space and
restrictions: no per-page calls; attachments cost a 302 and a download each).

    python -m bench.confluence_sync [--pages 1000] [--page-size 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from connectors.confluence.client import ConfluenceClient
from connectors.confluence.connector import ConfluenceConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer
from emulators.confluence import ConfluenceEmulator, generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline


def run(pages: int, page_size: int, attachments: bool) -> str:
    data = generate_tenant(seed=3, pages=pages)
    if attachments:
        for n, item in enumerate(data["content"]):
            if n % 3 == 0:
                item["attachments"] = [{"id": f"a{item['id']}", "title": f"notes{n}.txt",
                                        "data": f"attachment {n} zephyrmarker " * 20}]
    emulator = ConfluenceEmulator(data)
    with EmulatorServer(emulator) as server, tempfile.TemporaryDirectory() as tmp:
        policy = HttpPolicy("bench", HttpLimits(rate=0), ca_bundle=str(server.ca_bundle))
        client = ConfluenceClient(f"{server.base_url}/wiki", policy, auth="basic",
                                  token="generated-token", username="admin@acme.example",
                                  page_size=page_size)
        connector = ConfluenceConnector("bench", client,
                                        spaces=[s["key"] for s in data["spaces"]],
                                        include_attachments=attachments)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        started = time.perf_counter()
        report = Pipeline(store, HashingEmbedder()).full_sync(connector)
        took = time.perf_counter() - started
        store.close()
    requests = emulator.counters.to_json()["requests"]
    return (f"| {'with' if attachments else 'without'} | {report.documents} | {took:.2f} s | "
            f"{report.documents / took:.0f} | {requests} | {requests / report.documents:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args()
    print("| attachments | documents | full sync | documents/s | requests | per document |")
    print("|---|---:|---:|---:|---:|---:|")
    for attachments in (False, True):
        print(run(args.pages, args.page_size, attachments))


if __name__ == "__main__":
    main()
