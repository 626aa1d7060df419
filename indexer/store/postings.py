"""BM25 for the embedded store, scored in numpy from FTS5's own postings.

FTS5's `bm25()` scores every passage that one of the query's terms matches, one row at a
time through the auxiliary-function API: at 100k passages of ~150 words a six-word question
matches tens of thousands of them and the query costs 25 ms at p50 and 185 ms at p95
(bench/RESULTS.md). Here the same score is computed over whole posting lists at once.

Nothing about the text is re-implemented: the postings are read from FTS5 through an
`fts5vocab` table of kind `instance` (one row per term occurrence, with its column), the
question's words are tokenised by FTS5 itself (an in-memory FTS5 table with the index's
tokenize option), and each passage's length is FTS5's own per-column size record. The score
is FTS5's (ext/fts5/fts5_aux.c, fts5Bm25Function), term by term in the query's phrase order:

    idf(t)   = ln((N - n(t) + 0.5) / (n(t) + 0.5)), or 1e-6 where that is <= 0
    f(t, d)  = sum over t's occurrences in d of the occurrence column's weight
    score(d) = sum over phrases t of idf(t) * f(t, d) * (k1 + 1)
                                      / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))

with N the passages in the index, n(t) those containing t, |d| the passage's tokens over
every column, avgdl their mean, k1 = 1.2 and b = 0.75. tests/integration/test_postings.py
holds the result to FTS5's on random corpora.

State is per generation of the store (its `vector_gen` and `acl_gen` counters, which every
writer, in any process, bumps): passage lengths and ACL ids per chunk are loaded once, then
brought forward when the vectors' generation moves (chunk ids only grow, so rows past the
newest are appended with their size records and rows gone are masked: N and avgdl are over
the live rows, as FTS5 keeps them) until a fifth of the rows changed, when it reloads; ACL
ids alone are re-read when only ACLs changed; a term's postings load on the first question
of a generation that needs them. Anything this code cannot reproduce exactly (a word FTS5
splits into several tokens, a size record it cannot decode) returns None and the store asks
FTS5 instead.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

K1, B = 1.2, 0.75
TERM_BUDGET = 4_000_000  # postings entries kept in memory (~48 MB); least recently used go
STEM_CACHE = 50_000  # words whose tokens are remembered

Ids = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


class Tokenizer:
    """FTS5's tokenizer applied to query words: an in-memory FTS5 table with the index's own
    tokenize option, read back through fts5vocab (so stemming, case folding and diacritics are
    exactly the index's)."""

    def __init__(self, tokenize: str) -> None:
        self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        quoted = "'" + tokenize.replace("'", "''") + "'"
        self._db.execute(f"CREATE VIRTUAL TABLE q USING fts5(x, tokenize = {quoted})")
        self._db.execute("CREATE VIRTUAL TABLE qv USING fts5vocab(q, instance)")
        self._cache: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def tokens(self, words: Sequence[str]) -> list[tuple[str, ...]]:
        with self._lock:
            missing = list(dict.fromkeys(w for w in words if w not in self._cache))
            if missing:
                self._db.execute("BEGIN")
                try:
                    self._db.executemany("INSERT INTO q(rowid, x) VALUES (?, ?)",
                                         list(enumerate(missing, start=1)))
                    found: dict[int, list[tuple[int, str]]] = {}
                    for doc, term, offset in self._db.execute(
                            "SELECT doc, term, offset FROM qv"):
                        found.setdefault(int(doc), []).append((int(offset), str(term)))
                finally:
                    self._db.execute("ROLLBACK")
                if len(self._cache) + len(missing) > STEM_CACHE:
                    self._cache.clear()
                for i, word in enumerate(missing, start=1):
                    self._cache[word] = tuple(t for _, t in sorted(found.get(i, [])))
            return [self._cache[w] for w in words]


def _ints(text: str | None) -> Ids:
    return (np.fromstring(text, dtype=np.int64, sep=",") if text
            else np.zeros(0, dtype=np.int64))


def decode_sizes(raw: npt.NDArray[np.uint8], lengths: Ids, columns: int) -> Ids | None:
    """Each row's token count over every column, from FTS5's `docsize` records (one SQLite
    varint per column, `lengths` bytes each, concatenated in `raw`); None if any record is
    not exactly `columns` varints."""
    if len(lengths) == 0:
        return np.zeros(0, dtype=np.int64)
    if (lengths <= 0).any() or int(lengths.sum()) != len(raw):
        return None
    ends = (raw & 0x80) == 0  # the last byte of each varint has its high bit clear
    blob_end = np.cumsum(lengths) - 1
    if not ends[blob_end].all():
        return None
    per_blob = np.add.reduceat(ends.astype(np.int64), np.concatenate([[0], blob_end[:-1] + 1]))
    if (per_blob != columns).any():
        return None
    varint = np.concatenate([[0], np.cumsum(ends)[:-1]])  # which varint each byte belongs to
    last = np.flatnonzero(ends)
    shift = 7 * (last[varint] - np.arange(len(raw)))
    if shift.max(initial=0) > 42:  # over 2^49 tokens in a column: not a real size record
        return None
    parts = ((raw & 0x7F).astype(np.int64) << shift).astype(np.float64)  # exact below 2^53
    values = np.bincount(varint, weights=parts, minlength=len(last)).astype(np.int64)
    sums: Ids = values.reshape(-1, columns).sum(axis=1)
    return sums


@dataclass
class Postings:
    """One generation of the index: rows in chunk-id order, their lengths and ACL ids, and
    the postings of the terms asked so far (row numbers ascending, weighted frequencies)."""

    vector_gen: int
    acl_gen: int
    chunk_ids: Ids  # every row loaded or appended since, live or not, ascending
    lengths: Floats
    acl_ids: Ids  # -1 for a row gone
    avgdl: float  # over the live rows
    live: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    base: int = 0  # rows at the last full load
    terms: OrderedDict[tuple[str, tuple[float, ...]], tuple[Ids, Floats]] = field(
        default_factory=OrderedDict)
    entries: int = 0

    @property
    def rows(self) -> int:
        """N of the BM25 formula: the live rows."""
        return int(np.count_nonzero(self.live))


REFRESH_SHARE = 0.2  # rows appended or gone since the last load, past which it reloads


def _sizes(db: Any, columns: int, after: int) -> tuple[Ids, Ids] | None:
    """(row ids, token counts) of FTS5's size records for rows past `after`, each column one
    comma list parsed in C (a Python tuple per row cost 380 ms at 100k rows, this ~50 ms)."""
    ids, sizes, hexed = db.execute(
        "SELECT group_concat(id), group_concat(length(sz)), group_concat(hex(sz), '') "
        "FROM (SELECT id, sz FROM chunks_fts_docsize WHERE id > ? ORDER BY id)",
        (after,)).fetchone()
    chunk_ids = _ints(ids)
    raw = np.frombuffer(bytes.fromhex(hexed or ""), dtype=np.uint8)
    lengths = decode_sizes(raw, _ints(sizes), columns)
    if lengths is None or len(lengths) != len(chunk_ids):
        return None
    return chunk_ids, lengths


def _avgdl(lengths: Floats, live: npt.NDArray[np.bool_]) -> float:
    n = int(np.count_nonzero(live))
    return float(lengths[live].sum()) / n if n else 0.0


def load(db: Any, vector_gen: int, acl_gen: int, columns: int,
         acls: tuple[Ids, Ids]) -> Postings | None:
    """Lengths and ACL ids of every row (None if FTS5's rows and the chunks disagree);
    `acls` is chunk_acls() read at or after this generation."""
    found = _sizes(db, columns, -1)
    if found is None:
        return None
    chunk_ids, lengths = found
    acl = acl_array(chunk_ids, acls)
    if acl is None:
        return None
    live = np.ones(len(chunk_ids), dtype=bool)
    floats = lengths.astype(np.float64)
    return Postings(vector_gen, acl_gen, chunk_ids, floats, acl, _avgdl(floats, live), live,
                    len(chunk_ids))


@dataclass(frozen=True)
class Carried:
    """What a cache of rows (chunk ids, only growing) becomes after writes: `fresh` ids past
    its newest, `live` over its rows then the fresh ones, `acl_ids` aligned with `live` (-1
    for a row gone), `changed` rows appended or gone since its last full load."""

    fresh: Ids
    live: npt.NDArray[np.bool_]
    acl_ids: Ids
    changed: int


def carry_forward(acls: tuple[Ids, Ids], known: Ids, known_live: npt.NDArray[np.bool_],
                  base: int) -> Carried | None:
    """`known` rows (any order) brought to `acls` (chunk_acls(): every chunk now), or None
    when they do not fit (an id at or below the newest known one appeared, a row gone came
    back, or either side is empty): the caller reloads. The dense cache and the postings
    state both keep rows this way."""
    ids_now, acl_now = acls
    if len(ids_now) == 0 or len(known) == 0:
        return None
    fresh = ids_now[ids_now > int(known.max())]
    at = np.minimum(np.searchsorted(ids_now, known), len(ids_now) - 1)
    live = (ids_now[at] == known) & known_live
    if len(ids_now) - len(fresh) != int(live.sum()):
        return None
    acl = np.concatenate([np.where(live, acl_now[at], -1),
                          acl_now[len(ids_now) - len(fresh):]])
    live = np.concatenate([live, np.ones(len(fresh), dtype=bool)])
    changed = (len(live) - base) + int((~live[:base]).sum())
    return Carried(fresh, live, acl, changed)


def refresh(db: Any, state: Postings, vector_gen: int, acl_gen: int, columns: int,
            acls: tuple[Ids, Ids]) -> Postings | None:
    """`state` brought to the current rows without reading every size record again: rows
    past its newest id appended, rows gone masked, every ACL id re-read; the term postings
    are dropped (they reload on first use). None when the rows do not fit that picture (an
    id at or below the newest appeared) or too many changed since the load: reload."""
    carried = carry_forward(acls, state.chunk_ids, state.live, state.base)
    if carried is None or carried.changed > REFRESH_SHARE * max(int(carried.live.sum()), 1):
        return None
    found = _sizes(db, columns, int(state.chunk_ids[-1]))
    if found is None or not np.array_equal(found[0], carried.fresh):
        return None  # FTS5's rows and the chunks disagree: a clean load decides
    chunk_ids = np.concatenate([state.chunk_ids, carried.fresh])
    lengths = np.concatenate([state.lengths, found[1].astype(np.float64)])
    return Postings(vector_gen, acl_gen, chunk_ids, lengths, carried.acl_ids,
                    _avgdl(lengths, carried.live), carried.live, state.base)


def live_acl_array(state: Postings, acls: tuple[Ids, Ids]) -> Ids | None:
    """The ACL id of each of `state`'s rows after an ACL-only change (-1 for rows gone);
    None if the rows themselves changed."""
    found, acl = acls
    alive = state.chunk_ids[state.live]
    if len(found) != len(alive) or not np.array_equal(found, alive):
        return None
    out = np.full(len(state.chunk_ids), -1, dtype=np.int64)
    out[state.live] = acl
    return out


def chunk_acls(db: Any) -> tuple[Ids, Ids]:
    """Every chunk's id and ACL id, in chunk-id order, read from the covering index on acl_id
    (the table scan would read every vector and text) as two comma lists parsed in C (a
    Python tuple per row cost ~10x as much at 100k rows). The dense cache's refresh and the
    postings both use it."""
    ids, acls = db.execute("SELECT group_concat(chunk_id), group_concat(acl_id) "
                           "FROM chunks INDEXED BY chunks_acl").fetchone()
    found, acl = _ints(ids), _ints(acls)
    order = np.argsort(found, kind="stable")
    return found[order], acl[order]


def acl_array(chunk_ids: Ids, acls: tuple[Ids, Ids]) -> Ids | None:
    """The ACL id of each row, aligned with `chunk_ids` (None if the chunks differ)."""
    found, acl = acls
    if len(found) != len(chunk_ids) or not np.array_equal(found, chunk_ids):
        return None
    return acl


def term_postings(db: Any, state: Postings, term: str,
                  weights: Sequence[float], columns: Sequence[str]) -> tuple[Ids, Floats] | None:
    """The rows containing `term` and its column-weighted frequency in each (cached)."""
    key = (term, tuple(float(w) for w in weights))
    hit = state.terms.get(key)
    if hit is not None:
        state.terms.move_to_end(key)
        return hit
    # One row back (two comma lists, parsed in C): fetching a tuple per occurrence cost
    # three times as much for a term in half the passages. Occurrences come in (doc, column,
    # offset) order, so the weights are summed in the order FTS5's bm25() sums them.
    case = " ".join(f"WHEN ? THEN {i}" for i in range(len(columns)))
    row = db.execute(
        f"SELECT group_concat(doc), group_concat(CASE col {case} ELSE -1 END) "
        "FROM temp.chunks_fts_instances WHERE term = ?", (*columns, term)).fetchone()
    docs: Ids = np.zeros(0, dtype=np.int64)
    freq: Floats = np.zeros(0, dtype=np.float64)
    if row is not None and row[0] is not None:
        every, cols = _ints(row[0]), _ints(row[1])
        if len(every) != len(cols) or (cols < 0).any():
            return None
        docs, inverse = np.unique(every, return_inverse=True)
        freq = np.bincount(inverse, weights=np.asarray(weights, dtype=np.float64)[cols],
                           minlength=len(docs)).astype(np.float64)
    where = np.searchsorted(state.chunk_ids, docs)
    if len(docs) and (where.max() >= len(state.chunk_ids) or
                      not np.array_equal(state.chunk_ids[where], docs)
                      or not state.live[where].all()):
        return None  # a row FTS5 has and the loaded state does not: written since
    entry = (where.astype(np.int64), freq)
    state.terms[key] = entry
    state.entries += len(docs)
    while state.entries > TERM_BUDGET and len(state.terms) > 1:
        _, (old, _f) = state.terms.popitem(last=False)
        state.entries -= len(old)
    return entry


def idf(n_rows: int, n_hit: int) -> float:
    value = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return value if value > 0.0 else 1e-6


def score(state: Postings, phrases: Sequence[tuple[Ids, Floats]],
          candidates: Ids, admitted: npt.NDArray[np.bool_],
          limit: int) -> list[tuple[int, float]]:
    """The best `limit` (chunk id, score) among candidate rows the caller may read."""
    if len(candidates) == 0 or limit <= 0:
        return []
    acl = state.acl_ids[candidates]
    readable = np.zeros(len(candidates), dtype=bool)
    inside = acl < len(admitted)
    readable[inside] = admitted[acl[inside]]
    candidates = candidates[readable]
    if len(candidates) == 0:
        return []
    norm = K1 * (1.0 - B + B * state.lengths[candidates] / state.avgdl)
    total = np.zeros(len(candidates), dtype=np.float64)
    for rows, freq in phrases:
        at = np.searchsorted(candidates, rows)
        ok = at < len(candidates)
        ok[ok] = candidates[at[ok]] == rows[ok]
        f = np.zeros(len(candidates), dtype=np.float64)
        f[at[ok]] = freq[ok]
        w = idf(state.rows, len(rows))
        total += w * ((f * (K1 + 1.0)) / (f + norm))
    take = min(limit, len(candidates))
    # FTS5 returns equal scores in rowid order, the cut included: every row above the k-th
    # score, then the lowest rowids among those equal to it (candidates are in rowid order)
    kth = total[np.argpartition(-total, take - 1)[take - 1]]
    above = np.flatnonzero(total > kth)
    tied = np.flatnonzero(total == kth)[:take - len(above)]
    top = np.concatenate([above, tied])
    top = top[np.lexsort((candidates[top], -total[top]))]
    return [(int(state.chunk_ids[candidates[i]]), float(total[i])) for i in top]
