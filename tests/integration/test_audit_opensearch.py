"""The OpenSearch audit index against osmem-server (an in-memory OpenSearch-compatible server):
created on first write with its mapping, append-only writes (op_type=create: an id is never
written twice), reads filtered by user and time and paged past one page, a document that is not
a record reported and skipped; and `clearance audit` with `[audit] backend = "opensearch"`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch
from osmem_server import OsmemError, OsmemServer

from assistant import audit_opensearch
from assistant.audit import AuditLog, AuditRecord, Skipped
from assistant.audit_opensearch import OpenSearchAudit
from core.errors import StoreError
from indexer.store.opensearch_client import Backoff, Cluster
from tests.conftest import write_tree
from tests.e2e.test_cli import Cli, one_error_line, write_config
from tests.support import unavailable

pytestmark = pytest.mark.integration
INDEX = "clearance-audit"


@pytest.fixture(scope="module")
def osmem() -> Iterator[OsmemServer]:
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except OsmemError as exc:
        unavailable(f"osmem-server could not start here: {exc}")
    yield server
    server.close()


@pytest.fixture
def url(osmem: OsmemServer) -> Iterator[str]:
    with osmem.clone() as clone:
        yield clone.url


def client(url: str) -> OpenSearch:
    return OpenSearch(hosts=[url], max_retries=0)


def log_for(url: str, **kw: Any) -> AuditLog:
    cluster = Cluster(client(url), Backoff(attempts=2, base=0.0, cap=0.0), lambda _: None)
    return AuditLog(None, backend=OpenSearchAudit(cluster, INDEX, **kw), principals="hash")


def record(email: str, at: float, question: str = "q") -> AuditRecord:
    return AuditRecord(at=at, email=email, principals=[f"user:{email}", "everyone"],
                       question=question, hits=["docs:a.md"], citations=["docs:a.md"],
                       refused=False, latency_ms=2.5, provider="bedrock", input_tokens=10,
                       output_tokens=3, conversation="c1",
                       cited=[{"doc_id": "docs:a.md", "version": "v1", "acl_hash": "h1"}])


def test_records_are_written_once_each_and_read_back_by_user_and_time(url: str) -> None:
    log = log_for(url)
    log.write(record("ada@x.org", 100.0, "old"))
    log.write(record("bob@x.org", 200.0, "bob's"))
    log.write(record("ADA@x.org", 300.0, "new"))
    mapping = client(url).indices.get_mapping(index=INDEX)[INDEX]["mappings"]
    assert mapping["properties"]["email_folded"]["type"] == "keyword"
    read = list(log.records("ada@x.org", 150.0))
    assert [r["question"] for r in read if isinstance(r, dict)] == ["new"]
    [new] = read
    assert isinstance(new, dict)
    assert new["cited"] == [{"doc_id": "docs:a.md", "version": "v1", "acl_hash": "h1"}]
    assert new["principals"] == [] and len(new["principals_hash"]) == 64
    assert "email_folded" not in new and "record_id" not in new
    # The denied side: another person's record never comes back for --user.
    assert [r["question"] for r in log.records("bob@x.org") if isinstance(r, dict)] == ["bob's"]


def test_an_id_is_never_written_twice(url: str) -> None:
    log = log_for(url, new_id=lambda: "fixed")
    log.write(record("ada@x.org", 1.0, "first"))
    with pytest.raises(StoreError, match="audit write failed"):
        log.write(record("mallory@x.org", 2.0, "overwrite"))
    [kept] = list(log.records())
    assert isinstance(kept, dict) and kept["question"] == "first"


def test_reads_page_past_one_page(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_opensearch, "PAGE", 3)
    log = log_for(url)
    for i in range(8):
        log.write(record("ada@x.org", float(i % 4), f"q{i}"))  # equal times: record_id breaks
    got = [r["question"] for r in log.records("ada@x.org") if isinstance(r, dict)]
    assert sorted(got) == [f"q{i}" for i in range(8)] and len(set(got)) == 8


def test_a_document_that_is_not_a_record_is_reported_and_skipped(url: str) -> None:
    log = log_for(url)
    log.write(record("ada@x.org", 5.0, "good"))
    client(url).index(index=INDEX, id="junk", body={"at": 6.0, "email_folded": "ada@x.org",
                                                   "record_id": "junk"}, refresh=True)
    items = list(log.records("ada@x.org"))
    assert [i["question"] for i in items if isinstance(i, dict)] == ["good"]
    assert [i for i in items if isinstance(i, Skipped)] == [
        Skipped("document junk", "not an audit record (no 'email')")]


def test_nothing_audited_yet_reads_as_no_records(url: str) -> None:
    assert list(log_for(url).records("ada@x.org")) == []


def test_the_cli_writes_and_reads_the_opensearch_audit_index(url: str, tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["domain:x.org"]},
        "a.md": "# Canteen\n\nThe canteen opens at noon every weekday.\n"})
    config = write_config(tmp_path / "clearance.toml", (
        f'[audit]\nbackend = "opensearch"\nprincipals = "hash"\n\n'
        f'[store]\nurl = "{url}"\n\n'
        f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'))
    cli = Cli(tmp_path / "home", config, tmp_path)
    cli.ok("sync")
    cli.ok("ask", "When does the canteen open?", "--as", "ada@x.org")
    cli.ok("search", "canteen", "--as", "bob@x.org")
    assert not (tmp_path / "home" / "audit.jsonl").exists()
    out = cli.json("audit", "--user", "ada@x.org", "--since", "1h")
    [rec] = out["records"]
    assert rec["action"] == "ask" and rec["citations"] == ["docs:a.md"]
    assert rec["principals"] == [] and rec["cited"][0]["doc_id"] == "docs:a.md"
    assert out["skipped"] == []
    r = cli("audit", "--since", "last tuesday")
    assert "--since 'last tuesday'" in one_error_line(r, 2)


def test_the_cli_says_when_the_audit_index_cannot_be_reached(tmp_path: Path) -> None:
    config = write_config(tmp_path / "clearance.toml", (
        '[audit]\nbackend = "opensearch"\n\n[store]\nurl = "http://127.0.0.1:9"\n'))
    r = Cli(tmp_path / "home", config, tmp_path)("audit", "--user", "ada@x.org")
    line = one_error_line(r, 1)
    assert "audit" in line and "Traceback" not in r.stderr
    no_url = write_config(tmp_path / "no-url.toml", '[audit]\nbackend = "opensearch"\n')
    r = Cli(tmp_path / "home", no_url, tmp_path)("audit")
    assert "set [store] url" in one_error_line(r, 2)
    assert r.stdout == ""


def test_an_answer_whose_audit_cannot_be_written_is_not_given(tmp_path: Path) -> None:
    docs = write_tree(tmp_path / "docs", {
        ".access.json": {"read": ["domain:x.org"]},
        "a.md": "# Canteen\n\nThe canteen opens at noon every weekday.\n"})
    body = f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n'
    plain = write_config(tmp_path / "plain.toml", body)
    Cli(tmp_path / "home", plain, tmp_path).ok("sync")
    config = write_config(tmp_path / "clearance.toml", (
        '[audit]\nbackend = "opensearch"\n\n[store]\nurl = "http://127.0.0.1:9"\n\n' + body))
    r = Cli(tmp_path / "home", config, tmp_path)("ask", "When does the canteen open?", "--as",
                                                 "ada@x.org", "--json")
    assert "audit index lookup failed" in one_error_line(r, 1)
    assert r.stdout == "" and "noon" not in r.stderr
