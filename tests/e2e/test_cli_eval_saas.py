"""The leak audit against SaaS sources through their emulators (real HTTP, the real client
libraries): a person removed from a group, or a sharing grant revoked, at SharePoint and at
Confluence and not yet synced, is a leak for that person only, until the pass that would pick
it up runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.cli.main import main
from emulators.base import EmulatorServer
from emulators.graph import GraphEmulator
from emulators.graph.generate import CLIENT_ID, CLIENT_SECRET, TENANT_ID, example_tenant

pytestmark = pytest.mark.e2e

BOB, DANA = "bob@contoso.example", "dana@contoso.example"
HANDBOOK = "sp:d-hr:i-hb"


@pytest.fixture
def graph() -> Iterator[EmulatorServer]:
    with EmulatorServer(GraphEmulator(copy.deepcopy(example_tenant()))) as srv:
        yield srv


class Run:
    def __init__(self, tmp: Path, config: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp, self.capsys = tmp, capsys
        (tmp / "c.toml").write_text(config, encoding="utf-8")

    def __call__(self, command: str, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.tmp / "home"), command, "--config",
                     str(self.tmp / "c.toml"), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def leaks(self, questions: Path) -> tuple[int, list[dict[str, str]]]:
        code, out, err = self("eval", str(questions), "--leaks", "--json")
        assert code in (0, 1), err
        found: list[dict[str, str]] = json.loads(out)["leaks"]
        return code, found


def _questions(tmp: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sharepoint_group_removal_and_revoked_grant(tmp_path: Path, graph: EmulatorServer,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    monkeypatch.setenv("SP_SECRET", CLIENT_SECRET)
    run = Run(tmp_path, f"""
[[connectors]]
name = "sp"
kind = "sharepoint"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_env = "SP_SECRET"
sites = ["site-hr"]
authority_host = "{graph.base_url}"
graph_url = "{graph.base_url}/v1.0"
ca_bundle = "{graph.ca_bundle}"
""", capsys)
    assert run("sync")[0] == 0
    questions = _questions(tmp_path, [
        {"question": "handbook zephyrmarker", "as": BOB, "relevant": [HANDBOOK]},
        {"question": "handbook zephyrmarker", "as": DANA, "relevant": [HANDBOOK]}])
    assert run.leaks(questions) == (0, [])

    tenant = graph.emulator.tenant
    with graph.emulator.lock:  # bob leaves Operations, the group the HR library is shared with
        ops = next(g for g in tenant["groups"] if g["id"] == "g-ops")
        ops["members"].remove("u-bob")
    code, leaks = run.leaks(questions)
    assert code == 1 and [(x["user"], x["doc_id"]) for x in leaks] == [(BOB, HANDBOOK)]
    assert "groups at the source changed" in leaks[0]["reason"]  # dana, still granted: no leak
    assert run("sync", "--mode", "permissions")[0] == 0  # SharePoint refreshes groups with it
    assert run.leaks(questions) == (0, [])
    code, out, _ = run("search", "handbook zephyrmarker", "--as", BOB, "--json")
    assert code == 0 and json.loads(out)["hits"] == []  # the denied side, after the sync

    with graph.emulator.lock:  # dana's direct grant on the library is revoked
        hr = next(s for s in tenant["sites"] if s["id"] == "site-hr")
        root = hr["drives"][0]["items"][0]
        root["permissions"] = [p for p in root["permissions"]
                               if p.get("grantedToV2", {}).get("user", {}).get("id") != "u-dana"]
    code, leaks = run.leaks(questions)
    assert code == 1 and [(x["user"], x["doc_id"]) for x in leaks] == [(DANA, HANDBOOK)]
    assert "older ACL" in leaks[0]["reason"]


ANN, CBOB = "ann@acme.example", "bob@acme.example"


@pytest.fixture
def confluence() -> Iterator[EmulatorServer]:
    from emulators.confluence import ConfluenceEmulator

    tenant = json.loads((Path(__file__).parents[2] / "emulators" / "tenants" / "confluence.json")
                        .read_text(encoding="utf-8"))
    with EmulatorServer(ConfluenceEmulator(tenant), tls=False) as srv:
        yield srv


def test_confluence_group_removal_is_a_leak_until_the_permission_sync(
        tmp_path: Path, confluence: EmulatorServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    monkeypatch.setenv("WIKI_TOKEN", "demo-api-token")
    run = Run(tmp_path, f"""
[[connectors]]
name = "wiki"
kind = "confluence"
url = "{confluence.base_url}/wiki"
username = "admin@acme.example"
token_env = "WIKI_TOKEN"
spaces = ["ENG", "PUB"]
""", capsys)
    assert run("sync")[0] == 0
    questions = _questions(tmp_path, [
        {"question": "engineering home welcome start here", "as": ANN,
         "relevant": ["wiki:1001"]},
        {"question": "we are hiring join us", "as": CBOB, "relevant": ["wiki:2001"]}])
    assert run.leaks(questions) == (0, [])

    with confluence.emulator.lock:  # bob leaves "staff", the group that reads the ENG space
        staff = next(g for g in confluence.emulator.tenant["groups"] if g["id"] == "g-staff")
        staff["members"].remove("acc-bob")
    code, leaks = run.leaks(questions)
    assert code == 1 and {x["user"] for x in leaks} == {CBOB}  # never ann, still in staff
    assert "wiki:1001" in {x["doc_id"] for x in leaks}
    assert not any(x["doc_id"] == "wiki:2001" for x in leaks)  # the public space stays public
    assert run("sync", "--mode", "permissions")[0] == 0
    assert run.leaks(questions) == (0, [])


def test_an_audit_that_cannot_reach_the_source_fails_and_says_so(
        tmp_path: Path, graph: EmulatorServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    monkeypatch.setenv("SP_SECRET", CLIENT_SECRET)
    run = Run(tmp_path, f"""
[[connectors]]
name = "sp"
kind = "sharepoint"
tenant_id = "{TENANT_ID}"
client_id = "{CLIENT_ID}"
client_secret_env = "SP_SECRET"
sites = ["site-hr"]
authority_host = "{graph.base_url}"
graph_url = "{graph.base_url}/v1.0"
ca_bundle = "{graph.ca_bundle}"
""", capsys)
    assert run("sync")[0] == 0
    questions = _questions(tmp_path, [
        {"question": "handbook zephyrmarker", "as": BOB, "relevant": [HANDBOOK]}])
    wrong = "wrong-secret-0815"
    monkeypatch.setenv("SP_SECRET", wrong)
    code, out, err = run("eval", str(questions), "--leaks", "--json")
    assert code == 1 and out == ""  # no {"leaks": []}: an audit that did not run proves nothing
    assert err.count("\n") == 1 and wrong not in err and CLIENT_SECRET not in err
    code, out, _ = run("status")
    assert "leak audit: FAILED" in out and wrong not in out
    code, out, _ = run("status", "--json")
    audit = json.loads(out)["leak_audit"]
    assert audit["status"] == "failed" and audit["leaks"] == [] and wrong not in out
