"""The OpenSearch store's own indices for identities and sync state.

<prefix>-identities  group memberships and address aliases, one record per (source, edge),
                     tagged with the generation of the group sync that wrote it.
<prefix>-state       sync checkpoints and reports by key (JSON text, read in real time), and
                     `identity_version`, bumped by compare-and-set after every group sync.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from opensearchpy.exceptions import ConflictError

from core.errors import StoreError
from core.models import Alias, Membership
from indexer.store.opensearch_client import BulkAction, Cluster
from indexer.store.opensearch_query import identity_doc_id

IDENTITY_VERSION_KEY = "clearance:identity_version"
# Connectors that have documents indexed but no group snapshot in a rebuilt identities index.
IDENTITIES_PENDING_KEY = "clearance:identities_pending"
CHECKPOINT_SUFFIX = ":checkpoint"  # indexer.sync's checkpoint keys: sync:<c>:<mode>:checkpoint
STATE_WINDOW = 10_000
TERMS_PAGE = 1000
BULK_ACTIONS = 500


class StateIndex:
    """Sync state by key; GET is real-time, so no refresh is needed after a write."""

    def __init__(self, cluster: Cluster, index: str) -> None:
        self.cluster = cluster
        self.index = index

    def get(self, key: str) -> Any | None:
        """The value, or None (also when the state index itself is gone: nothing recorded)."""
        found = self.cluster.call("state read", partial(
            self.cluster.client.get, index=self.index, id=key, ignore=404))
        return json.loads(found["_source"]["value"]) if found.get("found") else None

    def set(self, key: str, value: Any) -> None:
        self.require()
        body = {"value": json.dumps(value, sort_keys=True)}
        self.cluster.call("state write", partial(
            self.cluster.client.index, index=self.index, id=key, body=body))

    def delete(self, key: str) -> None:
        self.cluster.call("state write", partial(
            self.cluster.client.delete, index=self.index, id=key, ignore=404))

    def require(self) -> None:
        self.cluster.require(self.index)

    def discard_checkpoints(self) -> None:
        """Forget every sync's resume point (their pages' documents are gone with the index)."""
        found = self.cluster.call("state scan", partial(
            self.cluster.client.search, index=self.index,
            body={"size": STATE_WINDOW, "_source": False, "query": {"match_all": {}}}))
        for hit in found["hits"]["hits"]:
            if str(hit["_id"]).endswith(CHECKPOINT_SUFFIX):
                self.delete(str(hit["_id"]))

    def increment(self, key: str) -> None:
        """Compare-and-set on the document, so two concurrent writers never lose a step."""
        self.update(key, lambda value: int(value or 0) + 1)

    def update(self, key: str, change: Callable[[Any | None], Any]) -> None:
        """value := change(value), by compare-and-set: concurrent writers never lose a step."""
        self.require()
        client = self.cluster.client
        for _ in range(20):
            current = self.cluster.call("state read", partial(
                client.get, index=self.index, id=key, ignore=404))
            found = bool(current.get("found"))
            value = json.loads(current["_source"]["value"]) if found else None
            guard: dict[str, Any] = ({"if_seq_no": current["_seq_no"],
                                      "if_primary_term": current["_primary_term"]}
                                     if found else {"op_type": "create"})

            def write(body: dict[str, Any], guard: dict[str, Any]) -> bool:
                try:
                    client.index(index=self.index, id=key, body=body, **guard)
                    return True
                except ConflictError:
                    return False

            body = {"value": json.dumps(change(value), sort_keys=True)}
            if self.cluster.call("state write", partial(write, body, guard)):
                return
        raise StoreError(f"could not update {key}: too many concurrent writers")


class IdentityIndex:
    """Memberships and aliases per source, replaced without a moment where one is missing."""

    def __init__(self, cluster: Cluster, index: str, state: StateIndex) -> None:
        self.cluster = cluster
        self.index = index
        self.state = state

    def replace(self, source: str, memberships: Iterable[Membership],
                aliases: Iterable[Alias]) -> None:
        """Write the new snapshot, then delete the source's older records: a current
        membership (of a deny group, say) is never missing, not even for a moment."""
        self.cluster.require(self.index)
        generation = uuid.uuid4().hex
        actions = [BulkAction("index", self.index,
                              identity_doc_id(source, "membership", m.group, m.member),
                              f"{m.group} <- {m.member}",
                              {"kind": "membership", "source": source, "group": m.group,
                               "member": m.member, "generation": generation})
                   for m in memberships]
        actions += [BulkAction("index", self.index,
                               identity_doc_id(source, "alias", a.alias, a.primary),
                               f"{a.alias} = {a.primary}",
                               {"kind": "alias", "source": source, "alias": a.alias,
                                "primary": a.primary, "generation": generation})
                    for a in aliases]
        failed = self.cluster.send(actions, BULK_ACTIONS)
        if failed:
            first = sorted(failed)[:5]
            raise StoreError(f"OpenSearch could not write {len(failed)} identities of {source} "
                             f"({'; '.join(f'{k}: {failed[k]}' for k in first)}); the previous "
                             "memberships stay in force")
        client = self.cluster.client
        self.cluster.call("refresh", partial(client.indices.refresh, index=self.index))
        older = {"query": {"bool": {"filter": [{"term": {"source": source}}],
                                    "must_not": [{"term": {"generation": generation}}]}}}
        self.cluster.call("identity cleanup", partial(
            client.delete_by_query, index=self.index, body=older, refresh=True,
            conflicts="proceed"))
        if source in self.pending():
            self.state.update(IDENTITIES_PENDING_KEY,
                              lambda pending: sorted(set(pending or ()) - {source}))
        self.state.increment(IDENTITY_VERSION_KEY)


    def mark_pending(self, connectors: Iterable[str]) -> None:
        """Before an identities index is (re)created next to indexed documents: until these
        connectors write their snapshots, every read fails closed."""
        wanted = set(connectors)
        if wanted:
            self.state.update(IDENTITIES_PENDING_KEY,
                              lambda pending: sorted(set(pending or ()) | wanted))

    def pending(self) -> list[str]:
        return sorted(self.state.get(IDENTITIES_PENDING_KEY) or ())

    def pending_message(self, pending: list[str]) -> str:
        return (f"identity store {self.index} was rebuilt and has no group snapshot yet from "
                f"{', '.join(pending)}: every search fails closed until `clearance sync --mode "
                "groups` (or a full sync) of "
                f"{'that connector' if len(pending) == 1 else 'those connectors'} succeeds")

    def _check(self) -> None:
        pending = self.pending()
        if pending:
            raise StoreError(self.pending_message(pending))

    def groups_of(self, members: Iterable[str], source: str | None = None) -> list[Membership]:
        self._check()
        wanted = sorted(set(members))
        found: set[tuple[str, str]] = set()
        for start in range(0, len(wanted), TERMS_PAGE):
            filters: list[dict[str, Any]] = [
                {"term": {"kind": "membership"}},
                {"terms": {"member": wanted[start:start + TERMS_PAGE]}}]
            if source is not None:
                filters.append({"term": {"source": source}})
            for h in self.cluster.scan(self.index, {"bool": {"filter": filters}},
                                       [{"group": "asc"}, {"member": "asc"}, {"source": "asc"}],
                                       ["group", "member"]):
                found.add((h["_source"]["group"], h["_source"]["member"]))
        return [Membership(group=g, member=m) for g, m in sorted(found)]

    def aliases_of(self, email: str, source: str | None = None) -> list[Alias]:
        self._check()
        filters: list[dict[str, Any]] = [{"term": {"kind": "alias"}}]
        if source is not None:
            filters.append({"term": {"source": source}})
        query = {"bool": {"filter": filters,
                          "should": [{"term": {"alias": email}}, {"term": {"primary": email}}],
                          "minimum_should_match": 1}}
        found = {(h["_source"]["alias"], h["_source"]["primary"]) for h in self.cluster.scan(
            self.index, query, [{"alias": "asc"}, {"primary": "asc"}, {"source": "asc"}],
            ["alias", "primary"])}
        return [Alias(alias=a, primary=p) for a, p in sorted(found)]

    def sources(self) -> list[str]:
        """The sources with stored memberships or aliases."""
        self._check()
        body = {"size": 0, "aggs": {"sources": {"terms": {"field": "source", "size": 10_000}}}}
        found = self.cluster.call("identity sources", partial(
            self.cluster.client.search, index=self.index, body=body))
        return sorted(str(b["key"]) for b in found["aggregations"]["sources"]["buckets"])

    def version(self) -> int:
        value = self.state.get(IDENTITY_VERSION_KEY)
        return int(value) if value is not None else 0
