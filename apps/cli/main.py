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
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from apps.cli import output
from apps.home import make_private_by_default, tighten_home
from apps.runtime import Runtime
from auth.identity import Decision, explain
from core.errors import ClearanceError, SyncLocked, UnknownDocument, UsageError
from core.redact import RedactingFilter
from core.settings import load_settings
from indexer.sync import (
    Mode,
    SyncReport,
    last_run_key,
    orphaned_connectors,
    pass_status,
    prune_orphans,
)

if TYPE_CHECKING:
    from indexer.jobs.runner import LockedRuns
    from indexer.locks import Held, SyncLock, Trigger

T = TypeVar("T")


# Far above any useful page of results, far below SQLite's 64-bit LIMIT.
MAX_K = 1000


def _k(value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(
            f"must be at least 1 and at most {MAX_K}" if k > 0 else "must be at least 1")
    return k


def _check_text(args: argparse.Namespace) -> None:
    """Arguments with undecodable bytes (surrogate escapes from argv) are a usage error, before
    any of them reaches the index, the identity store or the terminal."""
    for name, value in vars(args).items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | Path) and not _utf8(str(item)):
                flag = {"query": "the question", "doc_id": "the document id",
                        "as_email": "--as"}.get(name, f"--{name.replace('_', '-')}")
                raise UsageError(f"{flag} is not valid UTF-8 (undecodable bytes)")


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
        p.add_argument("--k", type=_k, default=None,
                       help=f"documents to return (ask: to answer from), 1 to {MAX_K}")
    # p is the ask parser here (the last of the loop)
    p.add_argument("--conversation", metavar="NAME", default=None,
                   help="a follow-up in your conversation NAME (started if new)")
    p = command("explain", "say whether a person may read a document, and why")
    p.add_argument("doc_id")
    p.add_argument("--as", dest="as_email", required=True, metavar="EMAIL")
    command("status", "per connector: last sync, documents, errors, permission freshness")
    from apps.cli.audit import add_arguments as audit_arguments
    audit_arguments(command("audit", "read the audit log: who asked what, what they were shown"))
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
    from apps.web.server import add_arguments as web_arguments
    web_arguments(command("web", "serve the web Q&A page, its JSON API and the admin page"))
    command("slack", "run the Slack bot in Socket Mode ([slack] app_token_env)")
    from apps.cli.evaluation import add_arguments as eval_arguments
    eval_arguments(command("eval", "retrieval and answer quality on a labelled question file; "
                                   "--leaks: audit every hit against the sources' permissions"))
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
    handler.addFilter(RedactingFilter())  # no URL credentials in any log line
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
    try:
        questions = [line.strip() for line in sys.stdin if line.strip()]
    except UnicodeDecodeError:
        questions = ["\udcff"]  # a strict stream: same verdict as a surrogate-escaped one
    if not all(_utf8(q) for q in questions):
        raise UsageError("standard input is not valid UTF-8 (undecodable bytes)")
    return questions


def cmd_sync_queue(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.app import enqueue
    from indexer.locks import cli_holder

    names = [c.name for c in rt.connectors(args.connector)]
    queued = enqueue(rt.jobs, rt.settings, names, args.mode, cli_holder("sync --queue"))
    if args.json:
        output.print_json({"queued": queued})
    else:
        for q in queued:
            if q["merged_into"]:
                print(q["merged_into"]["message"])
            else:
                print(f"queued {q['mode']} sync of {q['connector']!r}: task {q['task_id']}")
    return 0


def _last_run(rt: Runtime, name: str, mode: Any) -> dict[str, Any] | None:
    """The failed run's report, if the store can still be read: a store cut off midway cannot,
    and the sync's own error (printed next) is the one that matters."""
    try:
        last: dict[str, Any] | None = rt.store.get_state(last_run_key(name, mode))
    except ClearanceError as exc:
        logging.getLogger("clearance.cli").warning("sync.report_unreadable",
                                                   extra={"error": str(exc)})
        return None
    return last


def _run_in_process(rt: Runtime, lock: SyncLock, connector: Any, mode: Any,
                    runs: LockedRuns) -> None:
    """One sync here under the connector's SyncLock, then what was merged into it meanwhile."""
    from indexer.jobs.runner import run_exclusive
    from indexer.locks import cli_holder, mode_name

    progress = output.TerminalProgress()

    def announce(trigger: Trigger) -> None:
        progress.done()
        print(f"running the {mode_name(trigger.mode)} of {connector.name!r} merged into this "
              f"one (requested by {trigger.requested_by})", file=sys.stderr)

    try:
        run_exclusive(lock, rt.store, rt.pipeline, connector, mode, cli_holder("sync"),
                      progress=progress, announce=announce, into=runs)
    finally:
        progress.done()


def cmd_sync(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.runner import LockedRuns
    from indexer.locks import SyncBusy, mode_name, sync_lock

    if args.queue:
        return cmd_sync_queue(rt, args)
    runs = LockedRuns()
    reports = runs.reports
    merged: list[dict[str, Any]] = []  # triggers handed to a sync already running elsewhere
    failed = False
    lock = sync_lock(rt.settings)
    configs = rt.connector_configs(args.connector)
    config_failed = False
    for config in configs:
        try:
            connector = rt.build(config)
        except ClearanceError as exc:
            if exc.exit_code != 2 or len(configs) == 1:
                raise
            # One connector's setup (an unset secret variable, say) stops that connector only:
            # the others still sync, and the exit code still says "config error".
            config_failed = failed = True
            print(output.text(f"clearance: {config.name!r} not synced: {exc}"), file=sys.stderr)
            continue
        started = time.time()
        try:
            _run_in_process(rt, lock, connector, args.mode, runs)
        except SyncBusy as busy:
            if not busy.merged:
                failed = True
                print(f"clearance: sync of {connector.name!r} failed: {busy}", file=sys.stderr)
            else:
                merged.append({"connector": connector.name, "mode": args.mode,
                               "merged_into": {"mode": busy.running.mode,
                                               "holder": busy.running.holder,
                                               "message": str(busy)}})
                if not args.json:
                    print(busy)
        except ClearanceError as exc:
            failed = True
            last = _last_run(rt, connector.name, args.mode)
            # Only this invocation's run: a sync locked out ran nothing of its own.
            if (last and last.get("status") == "failed" and (last.get("finished") or 0) >= started
                    and all(r.run_id != last.get("run_id") for r in reports)):
                reports.append(SyncReport(**{k: v for k, v in last.items() if k != "duration"}))
            if exc.exit_code == 2:
                raise  # a config mistake: main() prints it, once
            print(output.text(f"clearance: sync of {connector.name!r} failed: {exc}"),
                  file=sys.stderr)
    for trigger, error in runs.failed:
        failed = True
        print(output.text(f"clearance: the {mode_name(trigger.mode)} merged into this one "
                          f"failed: {error}"), file=sys.stderr)
    # After a failure the store may be the problem: orphans wait for the next clean sync.
    orphans = [] if failed else _prune_orphans(rt, args.mode)
    if args.json:
        # "merged" only when a trigger went to a running sync: otherwise the shape is unchanged
        output.print_json({"syncs": [r.to_json() for r in reports],
                           **({"merged": merged} if merged else {}),
                           **({"orphans_deleted": orphans} if orphans else {})})
    else:
        for r in reports:
            print(output.summary(r))
            if r.status == "partial":
                print("  PARTIAL: part of the source could not be read; what could not be "
                      "confirmed is readable by nobody (see below)")
            for err in r.errors[:10]:
                print(f"  skipped {output.text(err)}")
            if r.error_count > 10:
                print(f"  ... and {r.error_count - 10} more")
            for warning in r.warnings[:10]:
                print(f"  warning: {warning}")
        for o in orphans:
            print(f"{o['connector']}: no longer configured, {o['documents']} documents deleted")
    return 2 if config_failed else 1 if failed else 0


def _prune_orphans(rt: Runtime, mode: str) -> list[dict[str, Any]]:
    """Passes that delete also delete documents of connectors no longer in the config."""
    if mode not in ("full", "incremental", "prune"):
        return []
    from indexer.locks import cli_holder, sync_lock

    configured = [c.name for c in rt.settings.file.connectors]
    lock = sync_lock(rt.settings)
    out: list[dict[str, Any]] = []
    for name in orphaned_connectors(rt.store, configured):
        try:
            held = lock.acquire(name, "prune", cli_holder("sync"), merge=False)
            try:
                deleted = prune_orphans(rt.store, configured, only=[name])
            finally:
                held.release()
        except SyncLocked:
            print(f"clearance: {name!r} is no longer configured but a sync of it is running; "
                  "its documents are deleted by a later sync", file=sys.stderr)
            continue
        out.extend({"connector": n, "documents": d} for n, d in deleted.items())
    return out


def cmd_search(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    k = args.k if args.k is not None else rt.settings.file.retrieval.k
    return _each_question(args, lambda q: rt.assistant.search(q, identity, k),
                          output.hits_json, output.print_hits)


def cmd_ask(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    name = args.conversation
    if name is not None:
        from assistant.conversations import ConversationStore

        ConversationStore.check_name(name)
    if not args.json and sys.stdout.isatty():  # a person watching: print as it streams
        return _each_question(
            args, lambda q: output.stream_answer(
                rt.assistant.ask_stream(q, identity, k=args.k, conversation=name)),
            lambda answer: answer.to_json(), lambda answer: None, header_first=True)
    return _each_question(args, lambda q: rt.assistant.ask(q, identity, k=args.k,
                                                           conversation=name),
                          lambda answer: answer.to_json(), output.print_answer)


def _each_question(args: argparse.Namespace, run: Callable[[str], T],
                   as_json: Callable[[T], Any], show: Callable[[T], None],
                   header_first: bool = False) -> int:
    """One question from the argument, or one per stdin line (one JSON line each, in order)."""
    batch = _questions(args)
    for q in batch if batch is not None else [args.query]:
        if header_first and batch is not None and not args.json:
            print(f"# {output.text(q)}")  # the answer streams after it
        result = run(q)
        if args.json:
            output.print_json(as_json(result))
        else:
            if batch is not None and not header_first:
                print(f"# {output.text(q)}")
            show(result)
    return 0


def cmd_explain(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    started = time.perf_counter()
    doc = rt.store.document(args.doc_id)
    if doc is None:
        rt.audit.explain(identity, args.doc_id, None, started)
        raise UnknownDocument(f"no document {args.doc_id!r} in the index")
    if doc.connector not in rt.connector_names:
        decision = Decision(False, f"connector {doc.connector!r} is no longer configured: its "
                                   "documents are searched by nobody until a sync deletes them")
    else:
        decision = explain(doc.acl, identity.at(doc.connector))
    rt.audit.explain(identity, doc.doc_id, decision.allowed, started)
    if args.json:
        output.print_json({"doc_id": doc.doc_id, "email": identity.email, **decision.to_json()})
    else:
        print(output.text(f"{doc.doc_id} ({doc.title}) for {identity.email}:"))
        print("\n".join(output.text(line) for line in decision.lines()))
    return 0


def _schedule_status(rt: Runtime, cfg: Any, runs: dict[Mode, Any],
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


def _index_stats(rt: Runtime, name: str) -> Any:
    """The connector's index figures; zero when the index itself is gone (reported apart)."""
    from core.errors import IndexMissing
    from indexer.store.base import ConnectorStats

    try:
        return rt.store.stats(name)
    except IndexMissing:
        return ConnectorStats(0, 0, 0, None)


def _index_gap(rt: Runtime, name: str, indexed: int) -> str | None:
    """An empty index next to a source that lists documents (a cluster restarted empty, a
    deleted SQLite file): say so. Only an empty index costs a listing of the source."""
    if indexed:
        return None
    try:
        (connector,) = rt.connectors([name])
        listed = sum(len(page.acls) for page in connector.permissions(None))
    except ClearanceError as exc:
        return f"index empty; the source could not be listed: {exc}"
    return f"index empty or missing: {listed} documents at the source" if listed else None


def _pending_resume(rt: Runtime, name: str) -> dict[str, Any] | None:
    """An interrupted content sync's checkpoint: where the next sync resumes."""
    from indexer.sync import _checkpoint_key

    for mode in ("full", "incremental"):
        saved = rt.store.get_state(_checkpoint_key(name, mode))
        if saved:
            report = saved["report"]
            return {"mode": mode, "started": report["started"], "documents": report["documents"]}
    return None


def _jobs_status(rt: Runtime, connector: str, modes: Sequence[str],
                 problems: list[str]) -> dict[str, Any]:
    """The connector's running sync and merged triggers (from the SyncLock), and the last
    trigger that was merged into a running sync and ran after it. A lock that cannot be read
    adds one line to `problems` (status then exits 1)."""
    from indexer.jobs.records import merged_key
    from indexer.locks import LockUnavailable, sync_lock

    merged = [r for r in (rt.store.get_state(merged_key(connector, m)) for m in modes) if r]
    out: dict[str, Any] = {
        "running": None, "pending": [],
        "last_merged": max(merged, key=lambda r: r["requested_at"], default=None)}
    lock = sync_lock(rt.settings)
    try:
        running, pending = lock.running(connector)
    except LockUnavailable as exc:
        if str(exc) not in problems:
            problems.append(str(exc))
        return out
    finally:
        close = getattr(lock, "close", None)
        if callable(close):
            close()
    if running is not None:
        out["running"] = {"mode": running.mode, "holder": running.holder}
    out["pending"] = [t.to_json() for t in pending]
    return out


def _print_jobs_status(row: dict[str, Any], now: float) -> None:
    from indexer.locks import mode_name

    if row.get("running"):
        print(f"  running now: {mode_name(row['running']['mode'])} ({row['running']['holder']})")
    for t in row.get("pending") or []:
        print(f"  merged, runs right after it: {mode_name(t['mode'])} "
              f"(requested {output.ago(max(0.0, now - t['requested_at']))} ago "
              f"by {t['requested_by']})")
    merged = row.get("last_merged")
    if merged:
        ran, into = merged["ran"], merged["merged_into"]
        print(f"  last merged: {mode_name(merged['mode'])} requested "
              f"{output.ago(max(0.0, now - merged['requested_at']))} ago by "
              f"{merged['requested_by']}, merged into the {mode_name(into['mode'])}"
              f" ({into['holder']}), ran right after it: "
              f"{'failed' if ran is None else ran['status']}")


def _overshared(rt: Runtime, connector: str, store_problems: list[str]) -> list[dict[str, Any]]:
    """Documents with sensitive data shared with everyone or a whole domain (issue 13)."""
    from assistant import oversharing

    if store_problems:
        return []
    return [f.to_json() for f in oversharing.flagged(rt.store, [connector])]


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.records import skipped_key

    problems: list[str] = []
    now = time.time()
    target = rt.settings.file.jobs.permission_freshness_target
    modes: tuple[Mode, ...] = ("full", "incremental", "permissions", "groups", "prune")
    store_problems: list[str] = getattr(rt.store, "problems", list)()
    rows: list[dict[str, Any]] = []
    for cfg in rt.settings.file.connectors:
        stats = _index_stats(rt, cfg.name)
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
            "index_problem": _index_gap(rt, cfg.name, stats.documents),
            "resume": _pending_resume(rt, cfg.name),
            **_jobs_status(rt, cfg.name, modes, problems),
            **pass_status(rt.store, cfg.name, now),
            "overshared": _overshared(rt, cfg.name, store_problems),
        })
    orphaned = [] if store_problems else [
        {"connector": name, "documents": count} for name, count in
        orphaned_connectors(rt.store, [c.name for c in rt.settings.file.connectors]).items()]
    failing = bool(store_problems) or any(row["index_problem"] for row in rows)
    from indexer.embedding import (  # issue 12: never a mixed index, say so
        fallback_notice,
        reembed_notice,
    )
    reembed = None if store_problems else reembed_notice(rt.store.embedder_names(),
                                                         rt.embedder.name)
    audit = None if store_problems else _leak_audit_status(rt, problems)
    fallback = fallback_notice(rt.settings.file.embedder.name)
    if args.json:
        output.print_json({"connectors": rows, "orphaned": orphaned,
                           "problems": [*store_problems, *problems], "re_embed": reembed,
                           "leak_audit": audit, "embedder_fallback": fallback})
        return 1 if _status_problems(problems) or failing else 0
    if audit is not None:
        _print_leak_audit(audit, now)
    for problem in store_problems:
        print(f"PROBLEM: {output.text(problem)}")
    for notice in (fallback, reembed):
        if notice:
            print(f"EMBEDDER: {notice}")
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
        print(output.text(f"{row['connector']} ({row['kind']}): last sync {when}"))
        print(f"  {row['documents']} documents, {row['chunks']} chunks, "
              f"{row['readable_by_nobody']} readable by nobody")
        for o in row["overshared"]:
            print(output.text(f"  OVERSHARED: {o['doc_id']} ({o['title']}) holds "
                              f"{', '.join(o['types'])} and is shared with {o['shared_with']}: "
                              "kept out of answers; fix its sharing at the source"))
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
        if row["index_problem"]:
            print(f"  PROBLEM: {row['index_problem']}")
        resume = row["resume"]
        if resume:
            print(f"  interrupted: {resume['mode']} sync started "
                  f"{output.ago(now - resume['started'])} ago stopped after "
                  f"{resume['documents']} documents; the next sync resumes from its checkpoint")
        for line in _pass_lines(row, now):
            print(f"  {line}")
        if last and last["error"]:
            print(f"  last error: {output.text(last['error'])}")
        skip = row["last_skipped"]
        if skip and (last is None or skip["at"] >= last["started"]):
            print(f"  last skipped: {skip['mode']} {output.ago(now - skip['at'])} ago: "
                  f"{output.text(skip['reason'])}")
        _print_jobs_status(row, now)
    return 1 if _status_problems(problems) or failing else 0


def _leak_audit_status(rt: Runtime, problems: list[str]) -> dict[str, Any] | None:
    """The last leak audit (`clearance eval --leaks` or its schedule); a leak is a problem."""
    from apps.evaluation import LAST_AUDIT_KEY

    last: dict[str, Any] | None = rt.store.get_state(LAST_AUDIT_KEY)
    if last and last.get("leaks"):
        problems.append(f"the last leak audit found {len(last['leaks'])} document(s) shown to "
                        "a person the source no longer allows (clearance eval --leaks)")
    return last


def _print_leak_audit(audit: dict[str, Any], now: float) -> None:
    when = output.ago(max(0.0, now - audit["started"]))
    if audit["status"] == "failed":
        print(output.text(f"leak audit: FAILED {when} ago ({audit['trigger']}): {audit['error']}"))
        return
    leaks = audit["leaks"]
    print(f"leak audit: {when} ago ({audit['trigger']}): {audit['questions']} questions as "
          f"{audit['people']} people, {len(leaks)} leaks")
    for leak in leaks[:10]:
        print(output.text(f"  LEAK {leak['user']} {leak['doc_id']}: {leak['reason']}"))
    if len(leaks) > 10:
        print(f"  ... and {len(leaks) - 10} more")


def _status_problems(problems: list[str]) -> int:
    for line in problems:
        print(output.text(f"clearance: {line}"), file=sys.stderr)
    return 1 if problems else 0


def _pass_lines(row: dict[str, Any], now: float) -> list[str]:
    """Identity age and each pass's durable cursor (status text)."""
    ident = row["identities"]
    lines = ["identities: " + ("no good snapshot yet" if ident is None else
                               f"replaced {output.ago(ident['age_seconds'])} ago "
                               f"({ident['memberships']} memberships, {ident['aliases']} "
                               "aliases)")]
    for kind, cur in row["cursors"].items():
        if cur is None:
            continue
        state = "in progress" if cur["in_progress"] else "complete"
        at = cur["committed_at"]
        when = "" if at is None else f", committed {output.ago(max(0.0, now - at))} ago"
        resume = cur["cursor"] if cur["in_progress"] else cur["next"]
        shown = "" if resume is None else f", cursor {resume[:60]!a}"
        lines.append(f"{kind} pass: {state} ({cur['pages']} pages{when}{shown})")
        if cur["expired_at"] is not None:
            lines.append(f"{kind} pass: cursor rejected {output.ago(now - cur['expired_at'])} "
                         "ago, re-enumerated")
    return lines


def cmd_worker(rt: Runtime, args: argparse.Namespace) -> int:
    import os
    import socket

    from indexer.jobs import tasks
    from indexer.jobs.app import install_log_redaction
    from indexer.jobs.lock import deployment_queue

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    rt.connectors()  # a config mistake stops here, not inside every task
    app = rt.jobs
    settings = rt.settings
    tasks.serve(lambda: Runtime(settings))
    _configure_logging(True)
    install_log_redaction(settings)
    logging.getLogger("clearance").propagate = False  # Celery's root handler would repeat it
    name = args.name or f"clearance-{os.getpid()}@{socket.gethostname()}"
    concurrency = 1 if args.pool == "solo" else args.concurrency
    app.worker_main(["worker", f"--pool={args.pool}", f"--concurrency={concurrency}",
                     f"--queues={deployment_queue(settings)}", f"--hostname={name}",
                     f"--loglevel={args.loglevel}", "--without-gossip", "--without-mingle"])
    return 0


def cmd_beat(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.app import install_log_redaction

    rt.connectors()
    app = rt.jobs
    install_log_redaction(rt.settings)
    rt.settings.home.mkdir(parents=True, exist_ok=True)
    app.Beat(schedule=str(rt.settings.home / "beat-schedule"), loglevel=args.loglevel).run()
    return 0


def cmd_reindex(rt: Runtime, args: argparse.Namespace) -> int:
    from indexer.jobs.records import record_merged
    from indexer.locks import cli_holder, holding_all, mode_name, sync_lock
    from indexer.store.opensearch import reindex

    holder = cli_holder("reindex")
    connectors = {c.name: c for c in rt.connectors()} if rt.settings.file.connectors else {}
    runs = {"full": "full_sync", "incremental": "incremental_sync",
            "permissions": "permission_sync", "groups": "group_sync", "prune": "prune"}

    def run_merged(held: Held, trigger: Trigger) -> None:
        # A trigger that met the reindex runs here, on the new index, before the lock is let go.
        name = held.connector
        if trigger.mode not in runs or name not in connectors:
            return
        print(f"running the {mode_name(trigger.mode)} of {name!r} merged into the reindex "
              f"(requested by {trigger.requested_by})", file=sys.stderr)
        report = None
        try:
            pipeline = rt.pipeline(lambda report: held.ensure_held())
            report = getattr(pipeline, runs[trigger.mode])(connectors[name])
        finally:
            record_merged(rt.store, name, trigger, "reindex", holder, report)

    # No sync may write while the index is copied: hold every connector's SyncLock (the Redis
    # lease with a broker, so a worker's sync on another host waits too).
    with holding_all(sync_lock(rt.settings), list(connectors), "reindex", holder, run_merged):
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


def cmd_web(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.web.server import run

    return run(rt, args)


def cmd_slack(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.slack.app import run_socket_mode

    run_socket_mode(rt, rt.settings)
    return 0


def cmd_audit(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.cli.audit import run

    return run(rt.audit, args)


def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.demo import run_demo

    return run_demo(rt.settings.home, json_output=args.json)


# they create no index
READ_ONLY = frozenset({"search", "ask", "explain", "status", "web", "audit", "eval"})
COMMANDS = {"sync": cmd_sync, "search": cmd_search, "ask": cmd_ask, "explain": cmd_explain,
            "status": cmd_status, "demo": cmd_demo, "worker": cmd_worker, "beat": cmd_beat,
            "reindex": cmd_reindex, "emulate": cmd_emulate, "web": cmd_web}
COMMANDS["slack"] = cmd_slack
COMMANDS["audit"] = cmd_audit


def cmd_eval(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.cli.evaluation import cmd_eval as run

    return run(rt, args)


COMMANDS["eval"] = cmd_eval


def main(argv: Sequence[str] | None = None) -> int:
    import os

    umask = make_private_by_default()
    try:
        return _main(argv)
    finally:
        os.umask(umask)  # an in-process caller (tests, an embedding app) gets its own back


def _main(argv: Sequence[str] | None) -> int:
    verbose = False
    try:
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        _check_text(args)
        _configure_logging(args.verbose)
        if args.command == "demo":
            settings = load_settings(args.home, None)
        else:
            settings = load_settings(args.home, args.config)
        _private_home(settings.home)
        runtime = Runtime(settings, read_only=args.command in READ_ONLY)
        return COMMANDS[args.command](runtime, args)
    except ClearanceError as exc:
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except Exception as exc:  # a bug, not a user mistake: still one line, details with --verbose
        if verbose:
            logging.getLogger("clearance").exception("unexpected error")
        _error(f"unexpected error ({type(exc).__name__}: {exc}); rerun with --verbose")
        return 1


def _private_home(home: Path) -> None:
    """The state folder is its owner's only; what others could read is tightened, once, aloud."""
    warning = tighten_home(home)
    if warning:
        _error(f"warning: {warning}")


def _error(message: str) -> None:
    print(f"clearance: {output.text(message)}", file=sys.stderr, flush=True)


def _quiet_stdout() -> None:
    """The reader went away (`| head`): drop what is still buffered instead of a second error."""
    import os
    from contextlib import suppress

    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
