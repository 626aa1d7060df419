"""Golden requests of the OpenSearch audit index, captured at the transport: the mapping it is
created with, the append-only write (`op_type=create`, a fresh id, never an update), and the
user/time search with its paging. A `opensearchpy.Connection` subclass records what the real
client sends and answers like a small cluster; nothing of the audit code is mocked. Regenerate
with `CLEARANCE_UPDATE_GOLDENS=1 pytest tests/unit/test_audit_opensearch_golden.py` after an
intended change, and review the diff."""

from __future__ import annotations

import itertools
import json
from typing import Any
from urllib.parse import unquote

import pytest
from opensearchpy import Connection, OpenSearch

from assistant import audit_opensearch
from assistant.audit import AuditLog, AuditRecord, Skipped
from assistant.audit_opensearch import OpenSearchAudit
from core.errors import StoreError
from indexer.store.opensearch_client import Backoff, Cluster
from tests.unit.test_opensearch_golden import assert_golden

pytestmark = pytest.mark.unit


class Fake:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.exists = False
        self.pages: list[list[dict[str, Any]]] = []
        self.create_error: tuple[int, str] | None = None

    def handle(self, method: str, path: str, params: dict[str, Any],
               body: Any) -> tuple[int, Any]:
        self.requests.append({"method": method, "path": path, "params": params, "body": body})
        if method == "HEAD":
            return (200 if self.exists else 404), None
        if method == "PUT" and path == "/clearance-audit":
            if self.create_error:
                status, kind = self.create_error
                return status, {"error": {"type": kind, "reason": kind}, "status": status}
            self.exists = True
            return 200, {"acknowledged": True}
        if path.endswith("/_refresh"):
            return 200, {"_shards": {}}
        if path.endswith("/_search"):
            hits = self.pages.pop(0) if self.pages else []
            return 200, {"hits": {"total": {"value": len(hits)}, "hits": hits}}
        return 201, {"result": "created", "_id": path.rsplit("/", 1)[-1]}


def connection_for(fake: Fake) -> type[Connection]:
    class Recording(Connection):
        def perform_request(self, method: str, url: str, params: Any = None, body: Any = None,
                            timeout: Any = None, ignore: Any = (), headers: Any = None) -> Any:
            query = {k: v.decode() if isinstance(v, bytes) else v
                     for k, v in (params or {}).items()}
            decoded = json.loads(body) if body else None
            status, payload = fake.handle(method, unquote(url), query, decoded)
            raw = json.dumps(payload) if payload is not None else ""
            if not 200 <= status < 300 and status not in ignore:
                self._raise_error(status, raw, "application/json")
            return status, {"content-type": "application/json"}, raw

    return Recording


def audit_for(fake: Fake) -> AuditLog:
    client = OpenSearch(hosts=[{"host": "golden.invalid", "port": 9200}],
                        connection_class=connection_for(fake), max_retries=0)
    ids = (f"id-{n}" for n in itertools.count(1))
    cluster = Cluster(client, Backoff(attempts=1), lambda _: None)
    return AuditLog(None, backend=OpenSearchAudit(cluster, "clearance-audit",
                                                  new_id=lambda: next(ids)))


RECORD = AuditRecord(at=1767225600.0, email="Ada@Acme.com",
                     principals=["user:ada@acme.com", "group:kb:eng", "everyone"],
                     question="How long is parental leave?", hits=["kb:leave.md", "kb:faq.md"],
                     citations=["kb:leave.md"], refused=False, latency_ms=12.5,
                     provider="openai", input_tokens=420, output_tokens=17,
                     stop_reason="end_turn", conversation="c1",
                     guardrails=[{"stage": "question", "action": "redacted",
                                  "rule": "pii:email"}],
                     cited=[{"doc_id": "kb:leave.md", "version": "sha-v7", "acl_hash": "sha-acl"}])


def test_the_first_write_creates_the_index_then_appends_with_create_only() -> None:
    fake = Fake()
    log = audit_for(fake)
    log.write(RECORD)
    log.write(RECORD)
    assert_golden("audit_write_requests", fake.requests)
    writes = [r for r in fake.requests if "/_doc/" in r["path"]]
    assert [w["params"].get("op_type") for w in writes] == ["create", "create"]
    assert [w["path"] for w in writes] == ["/clearance-audit/_doc/id-1",
                                           "/clearance-audit/_doc/id-2"]
    assert all(w["method"] in ("PUT", "POST") for w in writes)
    # one existence check and one creation for the log's lifetime
    assert [r["method"] for r in fake.requests].count("HEAD") == 1


def test_the_search_filters_by_folded_user_and_time_and_pages(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_opensearch, "PAGE", 2)
    fake = Fake()
    fake.exists = True

    def hit(n: int, source: Any) -> dict[str, Any]:
        return {"_id": f"id-{n}", "_source": source, "sort": [float(n), f"id-{n}"]}

    good = {"at": 1.0, "email": "ada@acme.com", "action": "ask", "record_id": "x",
            "email_folded": "ada@acme.com"}
    fake.pages = [[hit(1, good), hit(2, {"at": 2.0})], [hit(3, good)]]
    items = list(audit_for(fake).records("ADA@acme.com", 1767225600.0))
    assert_golden("audit_search_requests", fake.requests)
    assert items == [{"at": 1.0, "email": "ada@acme.com", "action": "ask"},
                     Skipped("document id-2", "not an audit record (no 'email')"),
                     {"at": 1.0, "email": "ada@acme.com", "action": "ask"}]
    searches = [r["body"] for r in fake.requests if r["path"].endswith("/_search")]
    assert searches[1]["search_after"] == [2.0, "id-2"]


def test_an_index_made_meanwhile_by_another_writer_is_fine_and_other_errors_stand() -> None:
    fake = Fake()
    fake.create_error = (400, "resource_already_exists_exception")
    audit_for(fake).write(RECORD)
    assert any("/_doc/" in r["path"] for r in fake.requests)
    fake = Fake()
    fake.create_error = (403, "security_exception")
    with pytest.raises(StoreError, match="audit index creation failed"):
        audit_for(fake).write(RECORD)
    assert not any("/_doc/" in r["path"] for r in fake.requests)  # no answer it could not audit
