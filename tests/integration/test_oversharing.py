"""The oversharing guard: documents holding sensitive data (PII, credentials) shared with
everyone or a whole domain are flagged at ingest and kept out of answers (still found by search
for their readers); the same data restricted to a group is not flagged; narrowing the sharing at
the source clears the flag; `clearance status` lists the flagged documents."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant import oversharing
from assistant.answer import Assistant
from assistant.audit import AuditLog
from assistant.guardrails import DETECTORS
from assistant.llm.extractive import ExtractiveAnswerer
from auth.identity import resolve
from connectors.files.connector import FilesConnector
from core.acl import Acl
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree
from tests.support import clearance_exe

pytestmark = pytest.mark.integration

ADA, BO = "ada@acme.com", "bo@acme.com"  # ada is in hr, bo is not
TREE: dict[str, Any] = {
    ".access.json": {"read": ["everyone"]},
    ".groups.json": {"hr": [f"user:{ADA}"]},
    "payroll-export.md": ("# Payroll export\n\nThe payroll export for the badger team lists "
                          "Jo Park with SSN 123-45-6789 and the bank account "
                          "DE89 3704 0044 0532 0130 00.\n"),
    "wiki.md": "# Badger team wiki\n\nThe badger team meets on Tuesdays in room four.\n",
    "staff/.access.json": {"read": ["domain:acme.com"]},
    "staff/deploy.md": ("# Badger deploy notes\n\nThe badger deploy uses "
                        "password: Tr0ub4dor&3xyz for the staging box.\n"),
    "hr/.access.json": {"read": ["group:hr"]},
    "hr/badger-salaries.md": ("# Badger salaries\n\nThe badger team payroll contact is "
                              "jo.park@acme.com, SSN 123-45-6789.\n"),
}
PAYROLL, DEPLOY, HR, WIKI = ("docs:payroll-export.md", "docs:staff/deploy.md",
                             "docs:hr/badger-salaries.md", "docs:wiki.md")


def test_sensitive_types_pii_and_credentials() -> None:
    assert oversharing.sensitive_types("SSN 123-45-6789, mail a@b.io") == ["email", "us_ssn"]
    assert oversharing.sensitive_types("key AKIAABCDEFGHIJKLMNOP") == ["aws_access_key"]
    assert oversharing.sensitive_types("-----BEGIN RSA PRIVATE KEY-----") == ["private_key"]
    assert oversharing.sensitive_types("password = hunter22!") == ["password"]
    assert oversharing.sensitive_types("card 4111 1111 1111 1111") == ["credit_card"]
    # near misses: a card number failing Luhn, a date, the word password alone
    assert oversharing.sensitive_types("card 4111 1111 1111 1112, on 2024-05-01, "
                                       "reset your password in the portal") == []


def test_broad_audience_needs_every_gate_broad() -> None:
    assert oversharing.broad_audience(Acl.single(["everyone"])) == "everyone"
    assert oversharing.broad_audience(Acl.single(["domain:acme.com"])) == "domain:acme.com"
    assert oversharing.broad_audience(Acl.single(["group:hr", "everyone"])) == "everyone"
    # a second gate naming a group narrows the audience: not broad
    assert oversharing.broad_audience(Acl.of([["domain:acme.com"], ["group:hr"]])) is None
    assert oversharing.broad_audience(Acl.single(["group:hr"])) is None
    assert oversharing.broad_audience(Acl.nobody("unknown")) is None


def _world(tmp_path: Path) -> tuple[SqliteStore, Path, Assistant, Path]:
    root = write_tree(tmp_path / "docs", TREE)
    store = SqliteStore(tmp_path / "index.sqlite3")
    embedder = HashingEmbedder()
    assert Pipeline(store, embedder).full_sync(FilesConnector("docs", root)).status == "ok"
    audit = tmp_path / "audit.jsonl"
    assistant = Assistant(Retriever(store, embedder, RetrievalParams()),
                          ExtractiveAnswerer(embedder, min_evidence=0.0), audit=AuditLog(audit))
    return store, root, assistant, audit


def test_flagged_at_ingest_kept_out_of_answers_still_in_search(tmp_path: Path) -> None:
    store, _root, assistant, audit = _world(tmp_path)
    flags = {f.doc_id: f for f in oversharing.flagged(store, ["docs"])}
    assert set(flags) == {PAYROLL, DEPLOY}  # the hr document holds PII but is restricted
    assert flags[PAYROLL].types == ("iban", "us_ssn")
    assert flags[PAYROLL].audience == "everyone"
    assert flags[DEPLOY].types == ("password",)
    assert flags[DEPLOY].audience == "domain:acme.com"
    # the state holds types only, never the sensitive text
    raw = json.dumps(store.get_state(oversharing.state_key("docs")))
    assert "123-45-6789" not in raw and "Tr0ub4dor" not in raw

    for email in (ADA, BO):
        identity = resolve(store, email)
        found = {h.doc_id for h in assistant.search("badger payroll deploy", identity, 10)}
        assert {PAYROLL, DEPLOY} <= found  # search still finds them for their readers
        used = {s.doc_id for s in assistant.sources("badger payroll SSN deploy password",
                                                    identity)}
        assert PAYROLL not in used and DEPLOY not in used
        answer = assistant.ask("What is the badger payroll SSN?", identity)
        assert "123-45-6789" not in answer.answer or all(
            c.doc_id == HR for c in answer.citations)
        assert PAYROLL not in {c.doc_id for c in answer.citations}
    # ada reads the group-restricted document with the same PII: it is not flagged, it answers
    ada_used = {s.doc_id for s in assistant.sources("badger salaries payroll contact",
                                                    resolve(store, ADA))}
    assert HR in ada_used
    # bo cannot read the hr document: never a source for him
    assert HR not in {s.doc_id for s in assistant.sources("badger salaries payroll contact",
                                                          resolve(store, BO))}
    asks = [json.loads(line) for line in audit.read_text().splitlines()
            if json.loads(line)["action"] == "ask"]
    assert any({"stage": "answer", "action": "withheld", "rule": "oversharing"}
               in r["guardrails"] for r in asks)

    # allow mode (config oversharing = "allow") answers from them like any other document
    open_assistant = Assistant(assistant.retriever, assistant.provider,
                               exclude_overshared=False)
    assert PAYROLL in {s.doc_id for s in open_assistant.sources(
        "badger payroll export SSN", resolve(store, BO))}
    store.close()


def test_narrowing_the_sharing_or_removing_the_data_clears_the_flag(tmp_path: Path) -> None:
    store, root, _assistant, _audit = _world(tmp_path)
    (root / "payroll-export.md").write_text(
        "# Payroll export\n\nThe payroll export moved to the HR system.\n", encoding="utf-8")
    (root / "staff" / ".access.json").write_text(json.dumps({"read": ["group:hr"]}),
                                                 encoding="utf-8")
    assert Pipeline(store, HashingEmbedder()).full_sync(
        FilesConnector("docs", root)).status == "ok"
    assert oversharing.flagged(store, ["docs"]) == []
    store.close()


def test_a_changed_document_whose_scan_is_stale_stays_flagged(tmp_path: Path) -> None:
    store, _root, _assistant, _audit = _world(tmp_path)
    table = store.get_state(oversharing.state_key("docs"))
    table[PAYROLL]["version"] = "an older content hash"
    store.set_state(oversharing.state_key("docs"), table)
    flag = oversharing.check(store, PAYROLL)
    assert flag is not None and "unscanned_change" in flag.types
    # a malformed state never raises and flags nothing it cannot name
    store.set_state(oversharing.state_key("docs"), ["not", "a", "table"])
    assert oversharing.flagged(store, ["docs"]) == []
    assert oversharing.check(store, PAYROLL) is None
    store.close()


def test_status_lists_overshared_documents_text_and_json(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "docs", TREE)
    config = tmp_path / "tenant.toml"
    config.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n',
                      encoding="utf-8")
    env = {"CLEARANCE_EMBEDDER": "hashing", "PATH": "/usr/bin:/bin"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([clearance_exe(), "--home", str(tmp_path / "home"), *args,
                               "--config", str(config)], capture_output=True, text=True,
                              env=env, timeout=300)

    assert run("sync").returncode == 0
    status = run("status", "--json")
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)["connectors"]
    assert [(o["doc_id"], o["types"], o["shared_with"]) for o in row["overshared"]] == [
        (PAYROLL, ["iban", "us_ssn"], "everyone"), (DEPLOY, ["password"], "domain:acme.com")]
    text = run("status")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if "OVERSHARED" in line]
    assert len(lines) == 2 and PAYROLL in lines[0] and DEPLOY in lines[1]
    assert HR not in text.stdout
    assert "123-45-6789" not in text.stdout + status.stdout


def _plain_sensitive_types(text: str) -> list[str]:
    """The rule without the cheap pre-checks: every detector's pattern scans the text."""
    found = {name for name, d in DETECTORS.items()
             if any(d.valid(m.group()) for m in d.pattern.finditer(text))}
    found |= {name for name, p in oversharing.CREDENTIALS.items() if p.search(text)}
    return sorted(found)


_PIECES = st.sampled_from([
    "123-45-6789", "a@b.io", "AKIAABCDEFGHIJKLMNOP", "ASIAABCDEFGHIJKLMNOP", "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00", "+1 (415) 555-0134", "password = hunter22!", "@", "AKIA",
    "\u0661\u0662\u0663-\u0664\u0665-\u0666\u0667\u0668\u0669",  # Arabic-Indic digits
    "\uff11\uff12\uff13", "the badger team", " ", "\n", "x", "-", "."])


@given(st.lists(_PIECES, max_size=12).map("".join) | st.text(max_size=60))
@settings(max_examples=400, deadline=None)
def test_sensitive_types_pre_checks_change_nothing(text: str) -> None:
    assert oversharing.sensitive_types(text) == _plain_sensitive_types(text)


def test_sensitive_types_without_digits_or_at_sign_scan_nothing_and_find_nothing() -> None:
    assert oversharing.sensitive_types("The badger team meets on Tuesdays.") == []
    assert oversharing.sensitive_types("mail jo@acme.com") == ["email"]
