"""What the OpenSearch store writes and asks: index definitions, ACL fields, query bodies.

Pure functions from domain values to request bodies, so that tests/unit/test_opensearch_golden.py
can pin them and a change that would drop the ACL filter fails with a readable diff.

The ACL filter is built by `acl_query` alone and every search carries it: inside the `knn`
clause's `filter` (efficient pre-filtering, so k-NN returns the k best *readable* chunks) and in
the BM25 query's `bool.filter`. Never a `post_filter`, which would filter after the top k and
return fewer hits than asked for (and leak through timing).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from core import principals as P
from core.acl import Acl, AclFilter
from indexer.store.base import LEXICAL_WEIGHTS

Body = dict[str, Any]

# A gate slot that an ACL does not use holds a principal every caller holds (scoped, like every
# stored principal, to the document's connector).
GATE_FILLER = P.EVERYONE
HIT_FIELDS = ["chunk_id", "doc_id", "ordinal", "title", "headings", "body", "url"]
MAX_QUERY_TERMS = 64
FIELDS = [name if weight == 1.0 else f"{name}^{weight:g}" for name, weight in LEXICAL_WEIGHTS]
_WORD = re.compile(r"\w+", re.UNICODE)


@cache
def _definitions() -> dict[str, Any]:
    text = resources.files("indexer.store").joinpath("opensearch_mappings.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def index_definition(name: str) -> Body:
    """A fresh copy of the committed settings + mappings of index `name` (chunks, identities,
    state)."""
    return copy.deepcopy(_definitions()[name])


def chunks_index_body(dimension: int, alias: str | None) -> Body:
    body = index_definition("chunks")
    body["mappings"]["properties"]["embedding"]["dimension"] = dimension
    if alias is not None:
        body["aliases"] = {alias: {}}
    return body


@cache
def gate_fields() -> tuple[str, ...]:
    """`acl_gate_0..N-1`, as many as the committed mapping declares (the gate limit)."""
    props = _definitions()["chunks"]["mappings"]["properties"]
    fields = tuple(f"acl_gate_{i}" for i in range(len(props)) if f"acl_gate_{i}" in props)
    if not fields or len(fields) != sum(1 for k in props if k.startswith("acl_gate_")):
        raise ValueError("opensearch_mappings.json: acl_gate_<i> fields must be numbered 0..N-1")
    return fields


def acl_fields(acl: Acl, connector: str) -> Body:
    """The ACL of one of `connector`'s documents as index fields, its principals scoped by the
    connector (core.principals.scope); fails closed for an ACL no one may read or with too many
    gates.

    A fail-closed document gets `acl_nobody: true` *and* empty gates, so either clause of the
    filter alone keeps it out of every result.
    """
    gates = gate_fields()
    if acl.nobody_reason is not None or len(acl.gates) > len(gates):
        return {**{g: [] for g in gates}, "acl_deny": [], "acl_nobody": True}
    scoped_gates, scoped_deny = acl.scoped(connector)
    filler = P.scope(connector, GATE_FILLER)
    fields: Body = {}
    for i, name in enumerate(gates):
        fields[name] = sorted(scoped_gates[i]) if i < len(scoped_gates) else [filler]
    fields["acl_deny"] = sorted(scoped_deny)
    fields["acl_nobody"] = False
    return fields


def too_many_gates(acl: Acl) -> bool:
    return acl.nobody_reason is None and len(acl.gates) > len(gate_fields())


def acl_query(acl: AclFilter) -> Body:
    """The one ACL filter: every gate met by a principal the caller holds for that document's
    connector, no deny, not nobody."""
    held = sorted(acl.terms())
    return {
        "bool": {
            "filter": [{"terms": {gate: held}} for gate in gate_fields()],
            "must_not": [
                {"terms": {"acl_deny": held}},
                {"term": {"acl_nobody": True}},
            ],
        }
    }


def query_text(question: str) -> str | None:
    """The question's distinct words (at most 64); the index analyzer drops stop words."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(question)))
    return " ".join(words[:MAX_QUERY_TERMS]) or None


def lexical_body(text: str, acl: AclFilter, limit: int) -> Body:
    # The same field weights as the SQLite store's bm25() (indexer.store.base.LEXICAL_WEIGHTS).
    return {
        "size": limit,
        "_source": HIT_FIELDS,
        "query": {
            "bool": {
                "must": [{
                    "multi_match": {
                        "query": text,
                        "fields": FIELDS,
                        "type": "most_fields",
                    }
                }],
                "filter": [acl_query(acl)],
            }
        },
    }


def _count(clause: Body) -> Body:
    return {"size": 0, "track_total_hits": True,
            "query": {"bool": {"filter": [{"term": {"kind": "chunk"}}, clause]}}}


def ceiling_searches(text: str) -> list[Body]:
    """The `_msearch` lines behind `ceiling`: per lexical field, how many chunks have it, then
    per word of `text` (query_text's) how many chunks' field matches it (its document
    frequency). Counts only: no hit, no text, no ACL needed (the statistics are the index's)."""
    lines: list[Body] = []
    for name, _ in LEXICAL_WEIGHTS:
        lines += [{}, _count({"exists": {"field": name}})]
        for word in text.split():
            lines += [{}, _count({"match": {name: word}})]
    return lines


def ceiling(text: str, responses: list[Body]) -> float | None:
    """The highest score lexical_body's query can give a chunk: Lucene's BM25 term saturates
    at boost * idf (no k1 + 1 since Lucene 8), idf = ln(1 + (N - df + 0.5) / (df + 0.5)) per
    field, N the chunks holding the field; summed over fields (most_fields) and words (a word
    no chunk holds adds nothing). None when a count is missing. Statistics are per index here
    and per shard in Lucene's scores, so across shards it bounds them only approximately."""
    words = text.split()
    if len(responses) != len(LEXICAL_WEIGHTS) * (len(words) + 1):
        return None
    counts: list[int] = []
    for r in responses:
        total = r.get("hits", {}).get("total") if isinstance(r, dict) else None
        value = total.get("value") if isinstance(total, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        counts.append(value)
    out, at = 0.0, 0
    for _, boost in LEXICAL_WEIGHTS:
        n, at = counts[at], at + 1
        for _ in words:
            df, at = counts[at], at + 1
            if df > 0:
                out += boost * math.log(1.0 + (max(n, df) - df + 0.5) / (df + 0.5))
    return out


def dense_body(vector: npt.NDArray[np.float32], acl: AclFilter, limit: int) -> Body:
    return {
        "size": limit,
        "_source": HIT_FIELDS,
        "query": {
            "knn": {
                "embedding": {
                    "vector": vector_json(vector),
                    "k": limit,
                    "filter": acl_query(acl),
                }
            }
        },
    }


def cosine_from_score(score: float) -> float:
    """Lucene's cosinesimil score is (1 + cos) / 2; the store reports cos like SQLite does."""
    return 2.0 * score - 1.0


def vector_json(vector: npt.NDArray[np.float32]) -> list[float]:
    """The shortest decimal that reads back as the same float32: lossless, and about half the
    JSON (and `_source`) of printing each value as a double."""
    return [float(str(x)) for x in np.asarray(vector, dtype=np.float32)]


# -- ids ------------------------------------------------------------------------------------
def chunk_id(doc_id: str, ordinal: int) -> int:
    """A stable 63-bit id per (document, ordinal): re-indexing a document overwrites in place."""
    digest = hashlib.sha256(f"{doc_id}\x00{ordinal}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def chunk_doc_id(doc_id: str, ordinal: int) -> str:
    return f"c-{chunk_id(doc_id, ordinal)}"


def record_doc_id(doc_id: str) -> str:
    """The `_id` of a document's record (hashed: source ids can exceed `_id`'s 512 bytes)."""
    return "d-" + hashlib.sha256(doc_id.encode()).hexdigest()[:40]


def identity_doc_id(source: str, kind: str, left: str, right: str) -> str:
    key = "\x00".join((source, kind, left, right))
    return "i-" + hashlib.sha256(key.encode()).hexdigest()[:40]
