"""`clearance [--home DIR] COMMAND [--config FILE] [--json] ...`

Exit codes: 0 ok, 2 usage/config error, 1 runtime failure; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from apps.cli import output
from apps.runtime import Runtime
from auth.identity import explain
from core.errors import ClearanceError, UnknownDocument, UsageError
from core.settings import load_settings
from indexer.locks import connector_lock
from indexer.sync import SyncReport, last_run_key


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
    p.add_argument("--mode", choices=["full", "permissions", "groups"], default="full",
                   help="full (content + ACLs), permissions (ACLs only) or groups")
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
    command("demo", "sync the bundled Acme tenant and show answers differ by who asks")
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


def cmd_sync(rt: Runtime, args: argparse.Namespace) -> int:
    reports: list[SyncReport] = []
    failed = False
    for connector in rt.connectors(args.connector):
        progress = output.TerminalProgress()
        pipeline = rt.pipeline(progress)
        run = {"full": pipeline.full_sync, "permissions": pipeline.permission_sync,
               "groups": pipeline.group_sync}[args.mode]
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
    if args.json:
        output.print_json({"syncs": [r.to_json() for r in reports]})
    else:
        for r in reports:
            print(output.summary(r))
            for err in r.errors[:10]:
                print(f"  skipped {err}")
            if r.error_count > 10:
                print(f"  ... and {r.error_count - 10} more")
    return 1 if failed else 0


def cmd_search(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    k = args.k if args.k is not None else rt.settings.file.retrieval.k
    if k < 1:
        raise UsageError("--k must be at least 1")
    from retriever.filters import acl_filter

    questions = _questions(args)
    for q in questions if questions is not None else [args.query]:
        hits = rt.retriever.search(q, acl_filter(identity), k)
        if args.json:
            output.print_json(output.hits_json(hits))
        else:
            if questions is not None:
                print(f"# {q}")
            output.print_hits(hits)
    return 0


def cmd_ask(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    questions = _questions(args)
    for q in questions if questions is not None else [args.query]:
        answer = rt.assistant.ask(q, identity)
        if args.json:
            output.print_json(answer.to_json())
        else:
            if questions is not None:
                print(f"# {q}")
            output.print_answer(answer)
    return 0


def cmd_explain(rt: Runtime, args: argparse.Namespace) -> int:
    identity = rt.identity(args.as_email)
    doc = rt.store.document(args.doc_id)
    if doc is None:
        raise UnknownDocument(f"no document {args.doc_id!r} in the index")
    decision = explain(doc.acl, identity)
    if args.json:
        output.print_json({"doc_id": doc.doc_id, "email": identity.email, **decision.to_json()})
    else:
        print(f"{doc.doc_id} ({doc.title}) for {identity.email}:")
        print("\n".join(decision.lines()))
    return 0


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    now = time.time()
    rows = []
    for cfg in rt.settings.file.connectors:
        stats = rt.store.stats(cfg.name)
        runs = {m: rt.store.get_state(last_run_key(cfg.name, m))
                for m in ("full", "permissions", "groups")}
        last = max((r for r in runs.values() if r), key=lambda r: r["started"], default=None)
        freshness = now - stats.oldest_acl_confirmed_at if stats.oldest_acl_confirmed_at else None
        rows.append({
            "connector": cfg.name, "kind": cfg.kind,
            "last_run": None if last is None else {
                "mode": last["mode"], "started": last["started"], "status": last["status"],
                "duration": last["duration"], "errors": last["error_count"],
                "error": last["error"]},
            "documents": stats.documents, "chunks": stats.chunks,
            "readable_by_nobody": stats.readable_by_nobody,
            "permission_freshness_seconds": None if freshness is None else round(freshness, 1),
            "next_run": None, "schedule": cfg.schedule,
        })
    if args.json:
        output.print_json({"connectors": rows})
        return 0
    if not rows:
        print("No connectors configured.")
    for row in rows:
        last = row["last_run"]
        when = "never" if last is None else (
            f"{output.ago(now - last['started'])} ago ({last['mode']}, {last['status']}, "
            f"{last['duration']:.1f}s, {last['errors']} errors)")
        fresh = row["permission_freshness_seconds"]
        print(f"{row['connector']} ({row['kind']}): last sync {when}")
        print(f"  {row['documents']} documents, {row['chunks']} chunks, "
              f"{row['readable_by_nobody']} readable by nobody")
        print(f"  permission freshness: oldest ACL confirmed "
              f"{'n/a' if fresh is None else output.ago(fresh) + ' ago'}")
        if last and last["error"]:
            print(f"  last error: {last['error']}")
    return 0


def cmd_demo(rt: Runtime, args: argparse.Namespace) -> int:
    from apps.demo import run_demo

    return run_demo(rt.settings.home, json_output=args.json)


COMMANDS = {"sync": cmd_sync, "search": cmd_search, "ask": cmd_ask, "explain": cmd_explain,
            "status": cmd_status, "demo": cmd_demo}


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
