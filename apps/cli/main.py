"""`clearance [--home DIR] COMMAND [--config FILE] [--json] ...`

Exit codes: 0 ok, 2 usage/config error, 1 runtime failure; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from apps.cli import output
from apps.runtime import Runtime
from auth.identity import Decision, explain
from core.errors import ClearanceError, SyncLocked, UnknownDocument, UsageError
from core.settings import load_settings
from indexer.locks import connector_lock
from indexer.sync import SyncReport, last_run_key, orphaned_connectors, prune_orphans

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument("--home", type=Path, default=default,
                        help="state folder (env CLEARANCE_HOME, default ~/.clearance)")
    parser.add_argument("--config", type=Path, default=default,
                        help="TOML config (env CLEARANCE_CONFIG, default ./clearance.toml)")
    parser.add_argument("--json", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="machine-readable output")
    parser.add_argument("--verbose", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="structured logs on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clearance",
                     description="Permission-aware enterprise search and answers.")
    _common(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p, suppress=True)
        return p

    p = command("sync", "pull documents and permissions from the configured connectors")
    p.add_argument("--connector", action="append", help="only this connector (repeatable)")
    p.add_argument("--mode", choices=["full", "incremental", "permissions", "groups", "prune"],
                   default="full",
                   help="full (content + ACLs + deletions), incremental (no deletions), "
                        "permissions (ACLs only), groups, or prune (ACLs + deletions)")
    p.add_argument("--queue", action="store_true",
                   help="enqueue on the Celery broker for a worker instead of running here")
    for name, help in (("search", "find documents you may read"),
                       ("ask", "answer a question from documents you may read, with citations")):
        p = command(name, help)
        p.add_argument("query", nargs="?", help="omit to read one question per line from stdin")
        p.add_argument("--as", dest="as_email", required=True, metavar="EMAIL")
        p.add_argument("--k", type=int, default=None, help="documents to return")
    p = command("explain", "say whether a person may read a document, and why")
    p.add_argument("doc_id")
    p.add_argument("--as", dest="as_email", required=True, metavar="EMAIL")
    command("status", "per connector: last sync, documents, errors, permission freshness")
    p = command("worker", "run a Celery worker for this deployment's sync jobs")
    p.add_argument("--pool", choices=["prefork", "solo"], default="prefork",
                   help="prefork: one process per concurrent sync; solo: one sync at a time")
    p.add_argument("--concurrency", type=int, default=2, help="parallel syncs (prefork)")
    p.add_argument("--loglevel", default="info", help="Celery log level")
    p.add_argument("--name", default=None, help="worker node name (default clearance-PID@host)")
    p = command("beat", "trigger the connectors' schedules (run exactly one per deployment)")
    p.add_argument("--loglevel", default="info", help="Celery log level")
    command("demo", "sync the bundled Acme tenant and show answers differ by who asks")
    p = command("reindex", "OpenSearch: build the next index version and swap the alias")
    p.add_argument("--dimension", type=int, default=None,
                   help="vector dimension of the new index (default: the current one)")
    from emulators.cli import add_arguments as emulate_arguments
    emulate_arguments(command("emulate", "serve a source's loopback emulator; print its base URL"))
    return parser


def _configure_logging(verbose: bool) -> None:
    class _Json(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            skip = set(vars(logging.makeLogRecord({})))
            fields = {k: v for k, v in vars(record).items() if k not in skip}
            return json.dumps({"at": round(record.created, 3), "level": record.levelname,
                               "event": record.getMessage(), **fields}, default=str)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json())
    root = logging.getLogger("clearance")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    # pypdf warns on every damaged PDF; the sync report already lists the skipped files.
    logging.getLogger("pypdf").setLevel(logging.ERROR)


def _questions(args: argparse.Namespace) -> list[str] | None:
    if args.query is not None:
        if not args.query.strip():
            raise UsageError("the question is empty")
        return None
    return [line.strip() for line in sys.stdin if line.strip()]


def cmd_sync_queue(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.app import enqueue

    names = [c.name for c in rt.connectors(args.connector)]
    queued = enqueue(rt.jobs, rt.settings, names, args.mode)
    if args.json:
        output.print_json({"queued": queued})
    else:
        for q in queued:
            print(f"queued {q['mode']} sync of {q['connector']!r}: task {q['task_id']}")
    return 0


def cmd_sync(rt: Runtime, args: argparse.Namespace) -> int:
    if args.queue:
        return cmd_sync_queue(rt, args)
    reports: list[SyncReport] = []
    failed = False
    for connector in rt.connectors(args.connector):
        progress = output.TerminalProgress()
        pipeline = rt.pipeline(progress)
        run = {"full": pipeline.full_sync, "incremental": pipeline.incremental_sync,
               "permissions": pipeline.permission_sync, "groups": pipeline.group_sync,
               "prune": pipeline.prune}[args.mode]
        started = time.time()
        try:
            with connector_lock(rt.settings.home, connector.name):
                reports.append(run(connector))
        except ClearanceError as exc:
            failed = True
            last = rt.store.get_state(last_run_key(connector.name, args.mode))
            # Only this invocation's run: a sync locked out ran nothing of its own.
            if last and last.get("status") == "failed" and (last.get("finished") or 0) >= started:
                reports.append(SyncReport(**{k: v for k, v in last.items() if k != "duration"}))
            if exc.exit_code == 2:
                raise  # a config mistake: main() prints it, once
            print(f"clearance: sync of {connector.name!r} failed: {exc}", file=sys.stderr)
        finally:
            progress.done()
    orphans = _prune_orphans(rt, args.mode)
    if args.json:
        output.print_json({"syncs": [r.to_json() for r in reports],
                           **({"orphans_deleted": orphans} if orphans else {})})
    else:
        for r in reports:
            print(output.summary(r))
            if r.status == "partial":
                print("  PARTIAL: part of the source could not be read; what could not be "
                      "confirmed is readable by nobody (see below)")
            for err in r.errors[:10]:
                print(f"  skipped {err}")
            if r.error_count > 10:
                print(f"  ... and {r.error_count - 10} more")
            for warning in r.warnings[:10]:
                print(f"  warning: {warning}")
        for o in orphans:
            print(f"{o['connector']}: no longer configured, {o['documents']} documents deleted")
    return 1 if failed else 0


def _prune_orphans(rt: Runtime, mode: str) -> list[dict[str, Any]]:
    """Passes that delete also delete documents of connectors no longer in the config."""
    if mode not in ("full", "incremental", "prune"):
        return []
    configured = [c.name for c in rt.settings.file.connectors]
    out: list[dict[str, Any]] = []
    for name in orphaned_connectors(rt.store, configured):
        try:
            with connector_lock(rt.settings.home, name):
                deleted = prune_orphans(rt.store, configured, only=[name])
        except SyncLocked:
            print(f"clearance: {name!r} is no longer configured but a sync of it is running; "
                  "its documents are deleted by a later sync", file=sys.stderr)
            continue
        out.extend({"connector": n, "documents": d} for n, d in deleted.items())
    return out


def cmd_search(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    k = args.k if args.k is not None else rt.settings.file.retrieval.k
    if k < 1:
        raise UsageError("--k must be at least 1")
    from retriever.filters import acl_filter

    return _each_question(args, lambda q: rt.retriever.search(q, acl_filter(identity), k),
                          output.hits_json, output.print_hits)


def cmd_ask(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    return _each_question(args, lambda q: rt.assistant.ask(q, identity),
                          lambda answer: answer.to_json(), output.print_answer)


def _each_question(args: argparse.Namespace, run: Callable[[str], T],
                   as_json: Callable[[T], Any], show: Callable[[T], None]) -> int:
    """One question from the argument, or one per stdin line (one JSON line each, in order)."""
    batch = _questions(args)
    for q in batch if batch is not None else [args.query]:
        result = run(q)
        if args.json:
            output.print_json(as_json(result))
        else:
            if batch is not None:
                print(f"# {q}")
            show(result)
    return 0


def cmd_explain(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    doc = rt.store.document(args.doc_id)
    if doc is None:
        raise UnknownDocument(f"no document {args.doc_id!r} in the index")
    if doc.connector not in rt.connector_names:
        decision = Decision(False, f"connector {doc.connector!r} is no longer configured: its "
                                   "documents are searched by nobody until a sync deletes them")
    else:
        decision = explain(doc.acl, identity.at(doc.connector))
    if args.json:
        output.print_json({"doc_id": doc.doc_id, "email": identity.email, **decision.to_json()})
    else:
        print(f"{doc.doc_id} ({doc.title}) for {identity.email}:")
        print("\n".join(decision.lines()))
    return 0


def _schedule_status(rt: Runtime, cfg: Any, runs: dict[str, Any],
                     now: float) -> dict[str, dict[str, Any]]:
    """Each scheduled mode's spec and next run; empty when no broker (nothing is scheduled)."""
    if not rt.settings.file.jobs.broker_url:
        return {}
    from datetime import UTC, datetime

    from indexer.jobs.schedules import upcoming

    started = {m: r["started"] for m, r in runs.items() if r}
    return {mode: {"spec": spec, "next_run": round(at.timestamp(), 3)}
            for mode, (spec, at) in upcoming(cfg, datetime.fromtimestamp(now, UTC),
                                             started).items()}


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.records import skipped_key

    now = time.time()
    target = rt.settings.file.jobs.permission_freshness_target
    modes = ("full", "incremental", "permissions", "groups", "prune")
    rows = []
    for cfg in rt.settings.file.connectors:
        stats = rt.store.stats(cfg.name)
        runs = {m: rt.store.get_state(last_run_key(cfg.name, m)) for m in modes}
        last = max((r for r in runs.values() if r), key=lambda r: r["started"], default=None)
        skips = [rt.store.get_state(skipped_key(cfg.name, m)) for m in modes]
        skip = max((r for r in skips if r), key=lambda r: r["started"], default=None)
        freshness = now - stats.oldest_acl_confirmed_at if stats.oldest_acl_confirmed_at else None
        schedules = _schedule_status(rt, cfg, runs, now)
        rows.append({
            "connector": cfg.name, "kind": cfg.kind,
            "last_run": None if last is None else {
                "mode": last["mode"], "started": last["started"], "status": last["status"],
                "duration": last["duration"], "documents": last["documents"],
                "errors": last["error_count"], "error": last["error"],
                "resumed": bool(last.get("resumed"))},
            "last_skipped": None if skip is None else {
                "mode": skip["mode"], "at": skip["started"], "reason": skip["error"]},
            "documents": stats.documents, "chunks": stats.chunks,
            "readable_by_nobody": stats.readable_by_nobody,
            "permission_freshness_seconds": None if freshness is None else round(freshness, 1),
            "permission_freshness_target_seconds": target,
            "permission_freshness_over_target": freshness is not None and freshness > target,
            "next_run": min((s["next_run"] for s in schedules.values()), default=None),
            "schedules": schedules, "schedule": cfg.schedule,
        })
    orphaned = [{"connector": name, "documents": count} for name, count in
                orphaned_connectors(rt.store, [c.name for c in rt.settings.file.connectors])
                .items()]
    if args.json:
        output.print_json({"connectors": rows, "orphaned": orphaned})
        return 0
    for o in orphaned:
        print(f"{o['connector']}: NOT CONFIGURED, {o['documents']} documents still indexed "
              "(deleted by the next sync or prune)")
    if not rows:
        print("No connectors configured.")
    for row in rows:
        last = row["last_run"]
        when = "never" if last is None else (
            f"{output.ago(now - last['started'])} ago ({last['mode']}, {last['status']}, "
            f"{last['documents']} documents, {last['duration']:.1f}s, {last['errors']} errors)"
            + (", interrupted and resumed" if last["resumed"] else ""))
        fresh = row["permission_freshness_seconds"]
        print(f"{row['connector']} ({row['kind']}): last sync {when}")
        print(f"  {row['documents']} documents, {row['chunks']} chunks, "
              f"{row['readable_by_nobody']} readable by nobody")
        flag = "  OVER TARGET" if row["permission_freshness_over_target"] else ""
        print(f"  permission freshness: oldest ACL confirmed "
              f"{'n/a' if fresh is None else output.ago(fresh) + ' ago'} "
              f"(target {output.ago(target)}){flag}")
        if row["schedules"]:
            mode, nxt = min(row["schedules"].items(), key=lambda kv: kv[1]["next_run"])
            print(f"  next run: {mode} in {output.ago(max(0.0, nxt['next_run'] - now))} "
                  f"(schedules: " + ", ".join(f"{m} {s['spec']!r}"
                                             for m, s in row["schedules"].items()) + ")")
        else:
            print("  next run: not scheduled (no [jobs] broker_url)")
        if last and last["error"]:
            print(f"  last error: {last['error']}")
        skip = row["last_skipped"]
        if skip and (last is None or skip["at"] >= last["started"]):
            print(f"  last skipped: {skip['mode']} {output.ago(now - skip['at'])} ago: "
                  f"{skip['reason']}")
    return 0


def cmd_worker(rt: Runtime, args: argparse.Namespace) -> int:
    import os
    import socket

    from indexer.jobs import tasks

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    rt.connectors()  # a config mistake stops here, not inside every task
    app = rt.jobs
    settings = rt.settings
    tasks.serve(lambda: Runtime(settings))
    _configure_logging(True)
    logging.getLogger("clearance").propagate = False  # Celery's root handler would repeat it
    name = args.name or f"clearance-{os.getpid()}@{socket.gethostname()}"
    concurrency = 1 if args.pool == "solo" else args.concurrency
    app.worker_main(["worker", f"--pool={args.pool}", f"--concurrency={concurrency}",
                     f"--queues={settings.file.jobs.queue}", f"--hostname={name}",
                     f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle"])
    return 0


def cmd_beat(rt: Runtime, args: argparse.Namespace) -> int:
    rt.connectors()
    app = rt.jobs
    rt.settings.home.mkdir(parents=True, exist_ok=True)
    app.Beat(schedule=str(rt.settings.home / "beat-schedule"), loglevel=args.loglevel).run()
    return 0


def cmd_reindex(rt: Runtime, args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    from indexer.store.opensearch import reindex

    # No sync may write while the index is copied: hold every connector's lock.
    with ExitStack() as locks:
        for cfg in rt.settings.file.connectors:
            locks.enter_context(connector_lock(rt.settings.home, cfg.name))
        result = reindex(rt.store, args.dimension)
    if args.json:
        output.print_json(result.to_json())
    else:
        print(f"reindexed {result.records} records: {result.old_index} -> "
              f"{result.new_index} (dimension {result.dimension})")
    return 0


def cmd_emulate(rt: Runtime, args: argparse.Namespace) -> int:
    from emulators.cli import run

    return run(args)


def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.demo import run_demo

    return run_demo(rt.settings.home, json_output=args.json)


COMMANDS = {"sync": cmd_sync, "search": cmd_search, "ask": cmd_ask, "explain": cmd_explain,
            "status": cmd_status, "demo": cmd_demo, "worker": cmd_worker, "beat": cmd_beat,
            "reindex": cmd_reindex, "emulate": cmd_emulate}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        _configure_logging(args.verbose)
        if args.command == "demo":
            settings = load_settings(args.home, None)
        else:
            settings = load_settings(args.home, args.config)
        return COMMANDS[args.command](Runtime(settings), args)
    except ClearanceError as exc:
        print(f"clearance: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("clearance: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
