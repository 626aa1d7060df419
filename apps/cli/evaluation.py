"""`clearance eval QUESTIONS.jsonl [--json] [--compare] [--plot FILE.png] [--leaks]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apps.cli import output
from apps.cli.plot import check_target, write_plot
from apps.evaluation import MODES, leak_audit, load_questions, record, run_eval
from assistant.evaluation import METRICS, Report, aggregate, recall_curve
from assistant.evaluation import load_questions as _load_file
from core.errors import ClearanceError, UsageError

if TYPE_CHECKING:
    from apps.runtime import Runtime

SHORT = {"recall@1": "R@1", "recall@5": "R@5", "recall@10": "R@10", "mrr@10": "MRR@10",
         "ndcg@10": "nDCG@10", "refusal_rate": "refused", "citation_precision": "cite-prec"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl",
                   help='one {"question", "as", "relevant": [doc_id...]} per line')
    p.add_argument("--compare", action="store_true",
                   help="BM25 alone, dense alone and the hybrid default side by side")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="write a recall@k plot")
    p.add_argument("--leaks", action="store_true",
                   help="ask every question as every person named and check each hit and "
                        "citation against the sources' current permissions (exit 1 on a leak)")


def _cell(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def _metric_line(label: str, metrics: dict[str, float | None], n: int) -> str:
    cells = "  ".join(f"{SHORT[k]} {_cell(metrics[k]).strip()}" for k in METRICS)
    return output.text(f"{label} ({n} questions): {cells}")


def _print_report(report: Report) -> None:
    print(_metric_line("overall", aggregate(report.rows), len(report.rows)))
    for name, rows in report.per_connector().items():
        print(_metric_line(f"  {name}", aggregate(rows), len(rows)))
    print()
    print(f"{'line':>5} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'MRR':>6} {'nDCG':>6} "
          f"{'cited':>6} {'refused':>7}  question (as)")
    for row in report.rows:
        m, q = row.metrics, row.question
        check = ""
        if q.answer_contains is not None:
            ok = q.answer_contains.casefold() in row.outcome.answer.casefold()
            check = "  answer ok" if ok else "  ANSWER MISSES the expected text"
        print(output.text(
            f"{q.line:>5} {_cell(m['recall@1'])} {_cell(m['recall@5'])} "
            f"{_cell(m['recall@10'])} {_cell(m['mrr@10'])} {_cell(m['ndcg@10'])} "
            f"{_cell(m['citation_precision'])} {'yes' if row.outcome.refused else 'no':>7}  "
            f"{q.question[:70]} ({q.email}){check}"))


def _print_compare(reports: dict[str, Report]) -> None:
    print(f"{'retrieval':<10} {'scope':<20} " + " ".join(f"{SHORT[k]:>9}" for k in METRICS))
    for mode, report in reports.items():
        scopes = [("overall", report.rows), *report.per_connector().items()]
        for scope, rows in scopes:
            m = aggregate(rows)
            print(output.text(f"{mode:<10} {scope[:20]:<20} "
                              + " ".join(f"{_cell(m[k]):>9}" for k in METRICS)))


def cmd_eval(rt: Runtime, args: argparse.Namespace) -> int:
    if args.leaks and (args.compare or args.plot is not None):
        raise UsageError("--leaks runs the leak audit alone (no --compare or --plot)")
    if args.plot is not None:
        check_target(args.plot)  # before any work: a bad path costs nothing
    started = time.time()
    if args.leaks:
        return _leaks(rt, args, started)
    questions = load_questions(rt, args.questions)
    modes = list(MODES) if args.compare else ["hybrid"]
    reports = {mode: run_eval(rt, questions, mode) for mode in modes}
    if args.plot is not None:
        series: dict[str, list[float]] = (
            {mode: recall_curve(r.rows) for mode, r in reports.items()} if args.compare else
            {"overall": recall_curve(reports["hybrid"].rows),
             **{n: recall_curve(rows) for n, rows in reports["hybrid"].per_connector().items()}})
        write_plot(args.plot, series)
    if args.json:
        data: Any = ({m: r.to_json() for m, r in reports.items()} if args.compare
                     else reports["hybrid"].to_json())
        output.print_json(data)
    elif args.compare:
        _print_compare(reports)
    else:
        _print_report(reports["hybrid"])
    if args.plot is not None and not args.json:
        print(output.text(f"recall@k plot written to {args.plot}"))
    return 0


def _leaks(rt: Runtime, args: argparse.Namespace, started: float) -> int:
    from apps.evaluation import source_views

    questions = _load_file(args.questions)  # a malformed file fails before the sources are read
    try:
        views = source_views(rt)
        questions = load_questions(rt, args.questions, views)
        leaks, counts = leak_audit(rt, questions, views)
    except ClearanceError as exc:
        record(rt, started, None, {}, str(exc))
        raise
    record(rt, started, leaks, counts)
    if args.json:
        output.print_json({"leaks": [leak.to_json() for leak in leaks]})
    elif leaks:
        for leak in leaks:
            print(output.text(f"LEAK {leak.user} {leak.doc_id}: {leak.reason}"))
    else:
        print(f"no leaks: {counts['questions']} questions asked as each of {counts['people']} "
              f"people; {counts['hits']} hits and {counts['citations']} citations all readable "
              "at the source now")
    return 1 if leaks else 0
