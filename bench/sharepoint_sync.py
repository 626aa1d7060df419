"""SharePoint sync throughput against the Graph + Entra emulator: first sync, then an
incremental sync after 1% of the files changed (half edited, half re-shared).

A generated tenant (sites, OneDrives, folders with broken inheritance, every link type) served
over TLS; syncs into a fresh SQLite index with the hashing embedder (the number is the
connector's and the pipeline's, not a model's). Prints items/s and the Graph requests per item
the emulator counted. A first sync costs per file one `/permissions` call, one `/content`
call and one download (the 302's target); an incremental one reads permissions only for the
files whose sharing changed and downloads only the edited ones.

    python -m bench.sharepoint_sync [--files 400] [--sites 6] [--page-size 200]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from connectors.http import HttpLimits, HttpPolicy
from connectors.sharepoint.client import Credential, GraphClient
from connectors.sharepoint.connector import SharePointConnector
from emulators.base import EmulatorServer
from emulators.graph import GraphEmulator
from emulators.graph.generate import CLIENT_ID, CLIENT_SECRET, TENANT_ID, generate_tenant
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline


def connector(server: EmulatorServer, sites: list[str], page_size: int) -> SharePointConnector:
    policy = HttpPolicy("bench", HttpLimits(rate=0), ca_bundle=str(server.ca_bundle))
    client = GraphClient(policy, Credential(TENANT_ID, CLIENT_ID, CLIENT_SECRET),
                         authority_host=server.base_url, graph_url=f"{server.base_url}/v1.0",
                         page_size=page_size)
    return SharePointConnector("bench", client, sites=sites, include_onedrive=True)


def graph_requests(emulator: GraphEmulator) -> int:
    by_path = emulator.counters.to_json()["by_path"]
    return sum(n for p, n in by_path.items() if p.startswith("/v1.0/") or
               p.startswith("/_download/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=400, help="items per site drive")
    parser.add_argument("--sites", type=int, default=6)
    parser.add_argument("--page-size", type=int, default=200)
    args = parser.parse_args()
    data = generate_tenant(seed=5, sites=args.sites, files_per_drive=args.files,
                           page_size=args.page_size)
    emulator = GraphEmulator(data)
    sites = [s["id"] for s in data["sites"] if not s.get("personal")]
    print("| sync | items changed | documents written | time | items/s | Graph requests "
          "| per item |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with EmulatorServer(emulator) as server, tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        pipeline = Pipeline(store, HashingEmbedder())
        started = time.perf_counter()
        report = pipeline.full_sync(connector(server, sites, args.page_size))
        took = time.perf_counter() - started
        docs = report.documents
        calls = graph_requests(emulator)
        print(f"| first | {docs} | {docs} | {took:.2f} s | {docs / took:.0f} | {calls} | "
              f"{calls / docs:.2f} |")
        files = [(d["id"], i["id"]) for s in data["sites"] for d in s["drives"]
                 for i in d["items"] if "content" in i and not i.get("deleted")
                 and i["name"].endswith((".md", ".txt", ".html"))]
        rnd = random.Random(1)
        changed = rnd.sample(files, max(2, len(files) // 100))
        for n, (drive, item) in enumerate(changed):
            if n % 2 == 0:
                emulator.edit(drive, item, content=f"edited {n} zephyrmarker")
            else:
                emulator.set_permissions(drive, item, [{"roles": ["read"], "grantedToV2": {
                    "user": {"id": "u0"}}}], broken=True)
        emulator.counters.reset()
        started = time.perf_counter()
        report = pipeline.incremental_sync(connector(server, sites, args.page_size))
        took = time.perf_counter() - started
        calls = graph_requests(emulator)
        written = report.indexed + report.acl_updated
        print(f"| incremental (1%) | {len(changed)} | {written} | {took:.2f} s | "
              f"{docs / took:.0f} | {calls} | {calls / docs:.3f} "
              f"({calls / len(changed):.1f} per changed item) |")
        store.close()


if __name__ == "__main__":
    main()
