"""`clearance demo`: sync the bundled Acme tenant, then ask the same questions as two people."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from core.errors import UsageError
from core.settings import CONFIG_NAME, load_settings

TENANT = Path(__file__).resolve().parent / "acme"
PEOPLE = Path(__file__).resolve().parent / "acme_people.json"
MARKER = "# written by `clearance demo`"


def write_demo_config(home: Path) -> Path:
    """$HOME/clearance.toml pointing at the bundled tenant, unless the user has their own."""
    path = home / CONFIG_NAME
    if path.exists() and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise UsageError(f"{path} exists and was not written by the demo; "
                         "run the demo with another --home")
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"{MARKER}; edit freely, but remove this line to keep the demo from rewriting it\n"
        f'[[connectors]]\nname = "acme"\nkind = "files"\nroot = {json.dumps(str(TENANT))}\n',
        encoding="utf-8")
    return path


def run_demo(home: Path, json_output: bool = False) -> int:
    from apps.cli import output
    from apps.runtime import Runtime
    from indexer.locks import connector_lock

    config = write_demo_config(home)
    rt = Runtime(load_settings(home, config))
    script = json.loads(PEOPLE.read_text(encoding="utf-8"))
    say = (lambda *a: None) if json_output else print
    say(f"Clearance demo: syncing the Acme sample tenant ({TENANT}) into {home}")
    progress = output.TerminalProgress()
    reports = []
    for connector in rt.connectors():
        with connector_lock(home, connector.name):
            reports.append(rt.pipeline(progress).full_sync(connector))
        progress.done()
    for report in reports:
        say(output.summary(report))
    transcript = []
    for item in script["demo"]:
        for email in item["people"]:
            answer = rt.assistant.ask(item["question"], rt.identity(email))
            transcript.append({"question": item["question"], "as": email, **answer.to_json()})
            say(f"\n=== {item['question']}\n--- asked by {email}")
            if not json_output:
                output.print_answer(answer)
        if item.get("why"):
            say(f"\n(why they differ: {item['why']})")
    if json_output:
        output.print_json({"syncs": [r.to_json() for r in reports], "answers": transcript})
    else:
        say(f"\nTry it yourself:\n  clearance --home {home} search \"expense approval limits\" "
            f"--as alice.chen@acme.example\n  clearance --home {home} explain "
            f"acme:hr/salary-bands-2026.md --as alice.chen@acme.example")
    sys.stdout.flush()
    return 0
