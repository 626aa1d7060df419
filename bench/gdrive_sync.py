"""Google Drive sync throughput against the Google emulator: first sync, then an incremental
sync after 1% of the files changed (half edited, half re-shared).

A generated domain (My Drives with folders, shared drives, nested groups, every grant kind,
trashed files, shortcuts, Google-native documents) served over TLS; the connector signs in
with a service account key (JWT bearer, one token per impersonated user) and syncs into a fresh
SQLite index with the hashing embedder (the number is the connector's and the pipeline's, not
a model's). Prints files/s and the API requests per file (the policy's count: Drive,
Directory and token requests, retries included). A first sync costs per file one
`permissions.list` and one download or export; an incremental one follows each stream's
changes feed and reads permissions and content only for what changed.

    python -m bench.gdrive_sync [--users 60] [--files-per-user 20] [--drives 6]
                                [--files-per-drive 100] [--page-size 100]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from connectors.gdrive.client import DriveClient, ServiceAccountKey
from connectors.gdrive.connector import GoogleDriveConnector
from connectors.http import HttpLimits, HttpPolicy
from emulators.base import EmulatorServer
from emulators.google import FOLDER, SHORTCUT, GoogleEmulator
from emulators.google.generate import ServiceAccount, generate_tenant, to_user
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline

ADMIN = "user000@acme.example"


def connector(server: EmulatorServer, account: ServiceAccount, page_size: int
              ) -> GoogleDriveConnector:
    policy = HttpPolicy("bench", HttpLimits(rate=0, concurrency=4),
                        ca_bundle=str(server.ca_bundle))
    key = ServiceAccountKey.parse(json.dumps(account.key_file(server.base_url)))
    client = DriveClient(policy, key, delegated_admin=ADMIN, domain="acme.example",
                         api_endpoint=server.base_url, page_size=page_size)
    return GoogleDriveConnector("bench", client)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--files-per-user", type=int, default=20)
    parser.add_argument("--drives", type=int, default=6)
    parser.add_argument("--files-per-drive", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    account = ServiceAccount.new()
    data = generate_tenant(account, seed=5, users=args.users,
                           files_per_user=args.files_per_user, drives=args.drives,
                           files_per_drive=args.files_per_drive)
    emulator = GoogleEmulator(data)
    print("| sync | files changed | documents written | time | files in scope/s | API "
          "requests | per file in scope |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with EmulatorServer(emulator) as server, tempfile.TemporaryDirectory() as tmp:
        emulator.bind(server.base_url)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        pipeline = Pipeline(store, HashingEmbedder())
        first = connector(server, account, args.page_size)
        started = time.perf_counter()
        report = pipeline.full_sync(first)
        took = time.perf_counter() - started
        docs = len(store.doc_ids("bench"))
        calls = first.http_stats.requests
        print(f"| first ({report.status}) | {docs} | {report.indexed} | {took:.2f} s | "
              f"{docs / took:.0f} | {calls} | {calls / docs:.2f} |")
        files = [f for f in data["files"] if f["mimeType"] not in (FOLDER, SHORTCUT)
                 and not f.get("trashed") and f["mimeType"].startswith("text/")]
        rnd = random.Random(1)
        changed = rnd.sample(files, max(2, docs // 100))
        for n, entry in enumerate(changed):
            if n % 2 == 0:
                emulator.edit(entry["id"], content=f"edited {n} zephyrmarker")
            else:
                emulator.set_permissions(entry["id"], [to_user(ADMIN)])
        second = connector(server, account, args.page_size)
        emulator.counters.reset()
        started = time.perf_counter()
        report = pipeline.incremental_sync(second)
        took = time.perf_counter() - started
        calls = second.http_stats.requests
        written = report.indexed + report.acl_updated
        print(f"| incremental (1%: {len(changed) - len(changed) // 2} edited, "
              f"{len(changed) // 2} re-shared; {report.status}) | {len(changed)} | {written} | "
              f"{took:.2f} s | {docs / took:.0f} | {calls} | {calls / docs:.3f} "
              f"({calls / len(changed):.1f} per changed file) |")
        kinds: dict[str, int] = {}
        for path, n in emulator.counters.to_json()["by_path"].items():
            kind = ("token" if path == "/token" else "changes" if "/changes" in path
                    else "directory" if path.startswith("/admin/") else
                    "permissions" if path.endswith("/permissions") else
                    "content" if path.endswith("/export") or path.count("/") == 4
                    else "listing")
            kinds[kind] = kinds.get(kind, 0) + n
        print(f"\nincremental requests by kind: {dict(sorted(kinds.items()))}")
        store.close()


if __name__ == "__main__":
    main()
