"""Time from a permission change at the source to the new ACL being enforced in search.

With a schedule, that time is (wait until the permission sync fires) + (queue pickup) + (the
permission sync's run until it reaches the document). The wait is set by the schedule: with the
default `permission_schedule = "*/5 * * * *"` it is up to 300 s (150 s on average, for a change
at a random moment). This bench measures the rest, and checks the sum end to end:

1. triggered: deny a reader in one folder's `.access.json`, enqueue `permission_sync` at once
   (what beat does when it fires), poll ACL-filtered search as that reader until the document
   is gone; then lift the deny and time its return. Worker: `clearance worker --pool solo`.
2. scheduled: the same changes at random moments with `clearance beat` firing
   `@every <interval>s`; measured change -> enforced, against the bound interval + (trigger ->
   pass finished, which covers a document on the last page).

Permission syncs embed nothing, so the hashing embedder (used for the initial full sync) does not
change the numbers.

    python -m bench.permission_latency [--docs 2000] [--repeats 5] [--interval 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from auth.identity import resolve
from bench.synthetic import write_tree
from indexer.jobs.app import create_app, enqueue
from indexer.jobs.testing import JobsDeployment, RedisServer
from retriever.filters import acl_filter

READER = "reader@bench.example"
MARKER = "zyxquokkamarker"
DEFAULT_PERMISSION_SCHEDULE_S = 300.0


def prepare(root: Path) -> Path:
    """The first folder readable by the whole domain, with one document findable by MARKER."""
    (root / "f0000" / ".access.json").write_text(json.dumps({"read": ["domain:bench.example"]}))
    doc = root / "f0000" / "doc00000.md"
    doc.write_text(doc.read_text() + f"\n\nThe {MARKER} paragraph.\n")
    return root


def set_denied(root: Path, denied: bool) -> None:
    body = {"read": ["domain:bench.example"], "deny": [f"user:{READER}"] if denied else []}
    (root / "f0000" / ".access.json").write_text(json.dumps(body))


def visible(dep: JobsDeployment) -> bool:
    identity = resolve(dep.store, READER)
    hits = dep.store.lexical(MARKER, acl_filter(identity), 5)
    return any(h.doc_id == "docs:f0000/doc00000.md" for h in hits)


def wait_visibility(dep: JobsDeployment, want: bool, timeout: float) -> float:
    t = time.perf_counter()
    while visible(dep) != want:
        if time.perf_counter() - t > timeout:
            raise TimeoutError(f"the ACL change was not enforced within {timeout:g}s")
        time.sleep(0.005)
    return time.perf_counter()


def triggered(dep: JobsDeployment, root: Path,
              repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Per change: trigger -> this document enforced, trigger -> the whole pass finished (every
    document enforced), and the pass's own duration."""
    settings = dep.settings()
    app = create_app(settings, with_schedule=False)
    latencies, completions, durations = [], [], []
    for i in range(repeats * 2):
        deny = i % 2 == 0
        set_denied(root, deny)
        since = time.time()
        t0 = time.perf_counter()
        enqueue(app, settings, ["docs"], "permissions")
        latencies.append(wait_visibility(dep, not deny, 120) - t0)
        report = dep.wait_report("permissions", since=since, timeout=120)
        completions.append(report["finished"] - since)
        durations.append(report["duration"])
    return latencies, completions, durations


def scheduled(dep: JobsDeployment, root: Path, repeats: int, interval: float) -> list[float]:
    rng = random.Random(1)
    dep.beat()
    time.sleep(interval)  # let beat settle into its rhythm
    out = []
    for i in range(repeats * 2):
        deny = i % 2 == 0
        time.sleep(rng.uniform(0, interval))  # a change at a random moment of the cycle
        set_denied(root, deny)
        t0 = time.perf_counter()
        out.append(wait_visibility(dep, not deny, interval * 3 + 120) - t0)
    return out


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f}s, max {max(values):.3f}s "
            f"(n={len(values)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5, help="deny+lift pairs per part")
    ap.add_argument("--interval", type=int, default=10, help="seconds, for part 2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = prepare(write_tree(work / "tree", args.docs))
        with RedisServer(work / "redis") as redis:
            dep = JobsDeployment(work / "deploy", redis.url, root, schedules={
                "schedule": "off", "permission_schedule": f"@every {args.interval}s"})
            try:
                dep.worker("--pool", "solo")
                settings = dep.settings()
                enqueue(create_app(settings, with_schedule=False), settings, ["docs"], "full")
                full = dep.wait_report("full", since=0, timeout=3600)
                assert visible(dep), "the reader should see the document before any change"
                print(f"{args.docs} documents indexed ({full['duration']:.1f}s full sync)")
                latencies, completions, durations = triggered(dep, root, args.repeats)
                print(f"1. triggered: change -> this document enforced {summary(latencies)}; "
                      f"trigger -> pass finished (every document enforced) "
                      f"{summary(completions)}; permission sync duration {summary(durations)}")
                beat = scheduled(dep, root, args.repeats, args.interval)
                bound = args.interval + max(completions)
                print(f"2. beat @every {args.interval}s: change -> enforced {summary(beat)}; "
                      f"bound interval + max(1) = {bound:.2f}s; expected mean about "
                      f"{args.interval / 2 + statistics.median(latencies):.2f}s")
            finally:
                dep.close()
    d50, dmax = statistics.median(completions), max(completions)
    s = DEFAULT_PERMISSION_SCHEDULE_S
    print(f"default schedule '*/5 * * * *' on {args.docs} documents: worst case "
          f"{s:.0f}s + {dmax:.2f}s = {s + dmax:.1f}s, mean {s / 2:.0f}s + {d50:.2f}s = "
          f"{s / 2 + d50:.1f}s (the wait for the schedule dominates)")


if __name__ == "__main__":
    main()
