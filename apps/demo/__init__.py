"""`clearance demo`: sync the bundled Acme tenant (a files folder, plus a Confluence site, a
SharePoint site and a Google shared drive served by local emulators: apps/demo/sources.py), then
ask the same questions as two people and explain the differences with `explain`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.demo.sources import SOURCES, DemoSource, Running, connector_toml, serve, toml_string
from apps.runtime import Runtime
from assistant.citations import Answer
from auth.identity import Decision, explain
from core.errors import UsageError
from core.settings import CONFIG_NAME, load_settings

TENANT = Path(__file__).resolve().parent / "acme"
PEOPLE = Path(__file__).resolve().parent / "acme_people.json"
MARKER = "# written by `clearance demo`"


def write_demo_config(home: Path, running: Sequence[Running] = ()) -> Path:
    """$HOME/clearance.toml pointing at the bundled tenant and at this run's emulated sources,
    unless the user has their own. Secrets only as the names of the variables that hold them."""
    path = home / CONFIG_NAME
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise UsageError(f"{path} exists and was not written by the demo; "
                         "run the demo with another --home")
    home.mkdir(parents=True, exist_ok=True)
    text = (f"{MARKER}; edit freely, but remove this line to keep the demo from rewriting it\n"
            f'[[connectors]]\nname = "acme"\nkind = "files"\nroot = {toml_string(str(TENANT))}\n')
    if running:
        text += ("\n# The connectors below read emulators that run only while `clearance demo` "
                 "does,\n# with a fresh secret each run (set in the demo's own environment): "
                 "outside the demo\n# they do not sync; what they indexed stays searchable.\n")
    for r in running:
        text += "\n" + connector_toml(r.source.name, r.source.kind, r.options())
    path.write_text(text, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Access:
    """Whether one person may read one cited document, in the product's own explain words."""

    email: str
    decision: Decision

    def line(self) -> str:
        lines = self.decision.lines()
        return f"{self.email}: " + "; ".join(x.strip() for x in lines)


@dataclass(frozen=True)
class Difference:
    """A document cited to some of the people, with each person's access to it."""

    question: str
    doc_id: str
    title: str
    cited_to: tuple[str, ...]
    access: tuple[Access, ...]

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "doc_id": self.doc_id, "title": self.title,
                "cited_to": list(self.cited_to),
                "access": {a.email: a.decision.to_json() for a in self.access}}


def explain_differences(rt: Runtime, question: str,
                        answers: dict[str, Answer]) -> list[Difference]:
    """For every document cited to anyone, who of the people may read it and by which gate,
    from the stored ACL and each person's resolved identity (what `clearance explain` says)."""
    cited: dict[str, list[str]] = {}
    for email, answer in answers.items():
        for c in answer.citations:
            cited.setdefault(c.doc_id, [])
            if email not in cited[c.doc_id]:
                cited[c.doc_id].append(email)
    out = []
    for doc_id, emails in cited.items():
        doc = rt.store.document(doc_id)
        if doc is None:
            continue
        access = tuple(Access(email, explain(doc.acl, rt.identity(email).at(doc.connector)))
                       for email in answers)
        out.append(Difference(question, doc_id, doc.title, tuple(emails), access))
    return out


def _show(differences: list[Difference]) -> None:
    from apps.cli import output

    print("\nWhy the answers differ (clearance explain, for each cited document):")
    for d in differences:
        print(output.text(f"  {d.doc_id} ({d.title}), cited to {', '.join(d.cited_to)}:"))
        for a in d.access:
            print("    " + output.text(a.line()))


def run_demo(home: Path, json_output: bool = False,
             sources: Sequence[DemoSource] = SOURCES) -> int:
    from apps.cli import output
    from indexer.jobs.runner import run_exclusive
    from indexer.locks import cli_holder, sync_lock
    from indexer.sync import _checkpoint_key as checkpoint_key

    script = json.loads(PEOPLE.read_text(encoding="utf-8"))
    say = (lambda *a: None) if json_output else print
    say(f"Clearance demo: syncing the Acme sample tenant ({TENANT}) into {home}")
    progress = output.TerminalProgress()
    reports = []
    with serve(home, sources) as running:
        for r in running:
            say(f"  and {r.source.title}, served by a local emulator at {r.served.base_url}")
        config = write_demo_config(home, running)
        rt = Runtime(load_settings(home, config))
        lock = sync_lock(rt.settings)  # the demo's own home: the file lock (no broker configured)
        emulated = {r.source.name for r in running}
        for connector in rt.connectors():
            if connector.name in emulated:
                # Its emulator restarted (another port, a new secret): a checkpoint left by an
                # interrupted run points at the old one. Start over; unchanged documents are
                # not re-embedded, so nothing is lost.
                rt.store.delete_state(checkpoint_key(connector.name, "full"))
            reports += run_exclusive(lock, rt.store, rt.pipeline, connector, "full",
                                     cli_holder("demo"), progress=progress).reports
            progress.done()
    for report in reports:
        say(output.summary(report))
    transcript: list[dict[str, Any]] = []
    explanations: list[dict[str, Any]] = []
    for item in script["demo"]:
        answers: dict[str, Answer] = {}
        for email in item["people"]:
            answer = answers[email] = rt.assistant.ask(item["question"], rt.identity(email))
            transcript.append({"question": item["question"], "as": email, **answer.to_json()})
            say(f"\n=== {item['question']}\n--- asked by {email}")
            if not json_output:
                output.print_answer(answer)
        differences = explain_differences(rt, item["question"], answers)
        explanations.extend(d.to_json() for d in differences)
        if not json_output:
            _show(differences)
    if json_output:
        output.print_json({"syncs": [r.to_json() for r in reports], "answers": transcript,
                           "explanations": explanations})
    else:
        say(f"\nTry it yourself:\n  clearance --home {home} search \"expense approval limits\" "
            f"--as alice.chen@acme.example\n  clearance --home {home} explain "
            f"acme:hr/salary-bands-2026.md --as alice.chen@acme.example\n  clearance --home {home} "
            f"explain confluence:2011 --as alice.chen@acme.example")
    sys.stdout.flush()
    return 0
