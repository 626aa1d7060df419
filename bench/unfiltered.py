"""The benchmark's unfiltered baseline: the store's own queries without the ACL clause.

The product has no way to search without an ACL filter (`SqliteStore.lexical/dense` require
an `AclFilter` and always apply it). The baseline that bench/retrieval.py compares against is
therefore not a mode of the store: it is this module, which lives in bench/ (not an installed
package, never imported by the product), opens the index file with its own read-only
connection and runs the same BM25 statement and dense scan minus the filter. Whatever changes
in the store's statements must be mirrored here for the ratio to stay meaningful.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from indexer.store.base import LEXICAL_WEIGHTS, ChunkHit
from indexer.store.sqlite import fts_query, query_terms

WEIGHTS = ", ".join(f"{w!r}" for _, w in LEXICAL_WEIGHTS)


class UnfilteredBaseline:
    """Read-only BM25 and dense search over an index file, with no ACL at all (bench only)."""

    def __init__(self, path: Path,
                 match: Callable[[list[str]], str | None] = fts_query) -> None:
        self._match = match  # the store's own FTS5 query (its common-term rule): the same query
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        rows = self._db.execute("SELECT chunk_id, vector FROM chunks ORDER BY chunk_id").fetchall()
        self._chunk_ids = np.array([r[0] for r in rows], dtype=np.int64)
        self._matrix = (np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
                        if rows else np.zeros((0, 0), dtype=np.float32))

    def close(self) -> None:
        self._db.close()

    def lexical(self, query: str, limit: int) -> list[ChunkHit]:
        match = self._match(query_terms(query))
        if match is None:
            return []
        rows = self._db.execute(
            f"SELECT c.chunk_id, -bm25(chunks_fts, {WEIGHTS}) AS score "
            "FROM chunks_fts JOIN chunks c ON c.chunk_id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH :match ORDER BY score DESC LIMIT :limit",
            {"match": match, "limit": limit}).fetchall()
        return self._hits([(int(r[0]), float(r[1])) for r in rows])

    def dense(self, vector: npt.NDArray[np.float32], limit: int) -> list[ChunkHit]:
        if len(self._chunk_ids) == 0:
            return []
        scores = self._matrix @ np.asarray(vector, dtype=np.float32)
        take = min(limit, len(scores))
        top = np.argpartition(-scores, take - 1)[:take]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self._hits([(int(self._chunk_ids[i]), float(scores[i])) for i in top])

    def _hits(self, scored: list[tuple[int, float]]) -> list[ChunkHit]:
        import json

        rows = self._db.execute(
            "SELECT c.chunk_id, c.doc_id, c.ordinal, c.text, c.headings, d.title, d.url "
            "FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            "WHERE c.chunk_id IN (SELECT value FROM json_each(?))",
            (json.dumps([c for c, _ in scored]),)).fetchall()
        by_id = {int(r[0]): r for r in rows}
        return [ChunkHit(c, r[1], int(r[2]), s, r[3], r[5], r[6],
                         tuple(h for h in r[4].split("\x1f") if h))
                for c, s in scored if (r := by_id.get(c)) is not None]
