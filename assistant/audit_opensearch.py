"""The production audit log: an append-only OpenSearch index (`[audit] backend = "opensearch"`).

It uses the `[store]` connection (URL, basic auth or SigV4, CA bundle) through the store's
client and retry policy (indexer.store.opensearch_client). Each record is one document written
with `op_type=create` under a fresh random id, so a write can never replace or change an
earlier record; give the writing role `index` on this index and neither `delete` nor `update`
(the deploy notes' role), and age it out with an ISM policy. The mapping is `dynamic: false`:
fields a later version adds are kept in `_source` without changing the mapping or failing the
write. `email_folded` (ASCII lower case) and `at` (epoch seconds) are what `clearance audit
--user --since` filters on; reads page with `search_after` on (`at`, `record_id`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from opensearchpy.exceptions import RequestError

from assistant.audit import Skipped, check_record
from core.errors import StoreError
from core.principals import fold
from indexer.store.opensearch_client import Cluster

PAGE = 500
MAPPING: dict[str, Any] = {
    "settings": {"index": {"number_of_shards": 1, "refresh_interval": "1s"}},
    "mappings": {
        "dynamic": False,
        "properties": {
            "record_id": {"type": "keyword"},
            "at": {"type": "double"},
            "action": {"type": "keyword"},
            "email": {"type": "keyword"},
            "email_folded": {"type": "keyword"},
            "principals": {"type": "keyword"},
            "principals_hash": {"type": "keyword"},
            "question": {"type": "text"},
            "conversation": {"type": "keyword"},
            "hits": {"type": "keyword"},
            "citations": {"type": "keyword"},
            "cited": {"properties": {"doc_id": {"type": "keyword"},
                                     "version": {"type": "keyword"},
                                     "acl_hash": {"type": "keyword"}}},
            "guardrails": {"properties": {"stage": {"type": "keyword"},
                                          "action": {"type": "keyword"},
                                          "rule": {"type": "keyword"}}},
            "refused": {"type": "boolean"},
            "provider": {"type": "keyword"},
            "input_tokens": {"type": "long"},
            "output_tokens": {"type": "long"},
            "stop_reason": {"type": "keyword"},
            "latency_ms": {"type": "double"},
            "doc_id": {"type": "keyword"},
            "allowed": {"type": "boolean"},
        },
    },
}
# Fields only the index needs: dropped when a record is read back.
INDEX_ONLY = ("record_id", "email_folded")


def search_body(email: str | None, since: float | None,
                after: list[Any] | None = None) -> dict[str, Any]:
    filters: list[dict[str, Any]] = []
    if email is not None:
        filters.append({"term": {"email_folded": fold(email)}})
    if since is not None:
        filters.append({"range": {"at": {"gte": since}}})
    body: dict[str, Any] = {"size": PAGE, "query": {"bool": {"filter": filters}},
                            "sort": [{"at": "asc"}, {"record_id": "asc"}]}
    if after is not None:
        body["search_after"] = after
    return body


class OpenSearchAudit:
    def __init__(self, cluster: Cluster, index: str, *,
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.cluster = cluster
        self.index = index
        self._new_id = new_id
        self._ready = False

    def _ensure_index(self) -> None:
        if self._ready:
            return
        client = self.cluster.client
        if not self.cluster.call("audit index lookup",
                                 partial(client.indices.exists, index=self.index)):
            try:
                self.cluster.call("audit index creation", partial(
                    client.indices.create, index=self.index, body=MAPPING), retry=False)
            except StoreError as exc:
                # Another writer made it first: fine. Anything else stands.
                if not isinstance(exc.__cause__, RequestError) or \
                        "already_exists" not in str(exc.__cause__.error):
                    raise
        self._ready = True

    def append(self, record: dict[str, Any]) -> None:
        self._ensure_index()
        record_id = self._new_id()
        body = {**record, "record_id": record_id, "email_folded": fold(str(record["email"]))}
        self.cluster.call("audit write", partial(
            self.cluster.client.index, index=self.index, id=record_id, body=body,
            op_type="create"))

    def read(self, email: str | None, since: float | None
             ) -> Iterator[dict[str, Any] | Skipped]:
        client = self.cluster.client
        if not self.cluster.call("audit index lookup",
                                 partial(client.indices.exists, index=self.index)):
            return  # nothing was ever audited here
        self.cluster.call("audit refresh", partial(client.indices.refresh, index=self.index))
        after: list[Any] | None = None
        while True:
            page = self.cluster.call("audit search", partial(
                client.search, index=self.index, body=search_body(email, since, after)))
            hits = (page.get("hits") or {}).get("hits") or []
            for hit in hits:
                source = hit.get("_source")
                why = check_record(source)
                if why is not None:
                    yield Skipped(f"document {hit.get('_id')}", f"not an audit record ({why})")
                    continue
                yield {k: v for k, v in source.items() if k not in INDEX_ONLY}
            if len(hits) < PAGE:
                return
            after = hits[-1].get("sort")
            if not after:
                raise StoreError("OpenSearch audit search gave no sort values to page on")
