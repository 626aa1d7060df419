"""Web latency: time to the first streamed sentence and to the full answer through the web
surface (real HTTP, SSE, sessions, the lane pool), with the extractive answerer.

A generated tree (default 10,000 documents) is synced, the app is served by uvicorn on
loopback, and questions taken from the documents' own sentences are asked over `POST /ask`
(server-sent events) — first one asker at a time, then `--concurrency` askers at once. Prints
p50/p95 of both figures, errors (must be 0) and the concurrent/sequential ratio.

    python -m bench.web_latency [--docs 10000] [--questions 200] [--concurrency 20]
                                [--embedder hashing]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from apps.cli.main import main as cli
from apps.runtime import Runtime
from apps.web.app import create_app
from bench.synthetic import write_tree
from core.settings import load_settings
from tests.web.conftest import free_socket, serve


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def questions(root: Path, n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    files = sorted(root.rglob("doc*.md"))
    out = []
    for path in rng.sample(files, min(n, len(files))):
        sentences = re.findall(r"[A-Z][^.]{30,}\.", path.read_text(encoding="utf-8"))
        if sentences:
            out.append(rng.choice(sentences)[:120] + "?")
    return out


def ask(url: str, cookie: str, csrf: str, question: str) -> tuple[float | None, float, bool]:
    """(seconds to the first delta or None, seconds to done, refused)."""
    started = time.perf_counter()
    first: float | None = None
    with requests.post(f"{url}/ask", json={"question": question}, stream=True, timeout=120,
                       cookies={"clearance": cookie}, headers={"X-CSRF-Token": csrf}) as r:
        r.raise_for_status()
        event = ""
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
                if event == "delta" and first is None:
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "done":
                return first, time.perf_counter() - started, bool(json.loads(line[6:])["refused"])
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(line)
    raise RuntimeError("the stream ended without a done event")


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="clearance-bench-web-") as tmp:
        work = Path(tmp)
        root = write_tree(work / "docs", args.docs)
        config = work / "clearance.toml"
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config.write_text(f'[embedder]\nname = "{args.embedder}"\n\n[web]\ndev_login = true\n'
                          f'public_url = "{url}"\nasks_per_minute = 10000\n'
                          f'workers = {args.workers}\n\n'
                          '[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n')
        t0 = time.perf_counter()
        assert cli(["--home", str(work / "home"), "sync", "--config", str(config)]) == 0
        sync_s = time.perf_counter() - t0
        rt = Runtime(load_settings(work / "home", config), read_only=True)
        app = create_app(rt)
        stop = serve(app, sock)
        state = app.state.web
        people = [f"u{i}@bench.example" for i in range(6)]
        sessions = []
        for email in people:
            sid = state.sessions.create(email, dev=True)
            found = state.sessions.get(sid)
            assert found is not None
            sessions.append((sid, found.csrf))
        qs = questions(root, args.questions)
        try:
            ask(url, *sessions[0], qs[0])  # warm: lanes, caches, the first embedder call
            seq = [ask(url, *sessions[i % len(sessions)], q) for i, q in enumerate(qs)]
            errors = 0

            def one(i: int) -> tuple[float | None, float, bool] | None:
                nonlocal errors
                try:
                    return ask(url, *sessions[i % len(sessions)], qs[i % len(qs)])
                except Exception:  # counted: the run must report 0
                    errors += 1
                    return None
            t1 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                conc = [r for r in pool.map(one, range(len(qs))) if r is not None]
            wall = time.perf_counter() - t1
        finally:
            stop()
            rt.lanes().close()

    def figures(rows: list[tuple[float | None, float, bool]]) -> dict[str, float]:
        firsts = [f for f, _, _ in rows if f is not None]
        fulls = [d for _, d, _ in rows]
        return {"first_p50_ms": 1000 * percentile(firsts, 0.5),
                "first_p95_ms": 1000 * percentile(firsts, 0.95),
                "full_p50_ms": 1000 * percentile(fulls, 0.5),
                "full_p95_ms": 1000 * percentile(fulls, 0.95),
                "answered": sum(1 for _, _, r in rows if not r), "asked": len(rows)}
    s, c = figures(seq), figures(conc)
    return {"docs": args.docs, "embedder": args.embedder, "sync_s": round(sync_s, 1),
            "workers": args.workers, "sequential": s, "concurrent": c,
            "concurrency": args.concurrency, "errors": errors,
            "concurrent_questions_per_s": round(len(conc) / wall, 1),
            "full_p50_ratio_concurrent_over_sequential":
                round(c["full_p50_ms"] / s["full_p50_ms"], 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=10_000)
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--embedder", default="hashing")
    result = run(p.parse_args())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
