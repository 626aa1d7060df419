"""The embedded store: one SQLite file with FTS5 (BM25), vectors and ACL tables.

ACLs are shared rows (`acls`, `acl_gates`, `acl_deny`); chunks point at one. The caller's
principals select the admitted ACL ids in SQL (every gate met, no deny), and both retrievers
apply that set *before* ranking: FTS5 joins it in the same statement, the dense scan masks
rows before taking the top k. Vectors are cached in memory; after a write (the store's
generation counters moved) the cache appends new rows, masks deleted ones and re-reads ACL ids
rather than reloading every vector. Dense search is exact by default: over a large matrix whose rows
pass the tests of indexer/store/bounded.py (tight, isotropic clusters) a broad caller reads
only the clusters whose bound can still beat the k-th score found; otherwise a 4-bit first
pass over the principal components keeps candidates that are rescored in float32;
`dense_search="ivf"` arranges a large index by IVF cluster (indexer/store/ivf.py) so a broad
caller's query reads only the nearest clusters, at a recall cost on real embeddings
(bench/ivf_recall.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.acl import Acl, AclFilter
from core.errors import StoreError
from core.models import Alias, Chunk, Document, Membership
from indexer.embedding.minilm import single_threaded_blas
from indexer.store import bounded, firstpass, ivf, postings
from indexer.store.base import (
    LEXICAL_WEIGHTS,
    ChunkHit,
    ConnectorStats,
    DocState,
    StoredDocument,
    acl_key_of,
    connector_of,
    stored_acl,
    stored_acl_key,
)

TOKENIZE = "porter unicode61 remove_diacritics 2"  # FTS5's; indexer/store/postings.py reuses it
FTS_COLUMNS = ("title", "headings", "body")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS acls (
    acl_id INTEGER PRIMARY KEY, acl_key TEXT NOT NULL UNIQUE,
    n_gates INTEGER NOT NULL, nobody_reason TEXT);
CREATE TABLE IF NOT EXISTS acl_gates (acl_id INTEGER NOT NULL, gate INTEGER NOT NULL,
    principal TEXT NOT NULL, PRIMARY KEY (principal, acl_id, gate)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS acl_deny (acl_id INTEGER NOT NULL, principal TEXT NOT NULL,
    PRIMARY KEY (principal, acl_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY, connector TEXT NOT NULL, title TEXT NOT NULL, url TEXT NOT NULL,
    updated TEXT, content_hash TEXT NOT NULL, acl_id INTEGER NOT NULL REFERENCES acls,
    embedder TEXT NOT NULL, seen_run TEXT, acl_confirmed_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS documents_connector ON documents (connector, seen_run);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL REFERENCES documents ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, headings TEXT NOT NULL, text TEXT NOT NULL,
    acl_id INTEGER NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id);
CREATE INDEX IF NOT EXISTS chunks_acl ON chunks (acl_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, headings, body, tokenize = '""" + TOKENIZE + """');
CREATE TABLE IF NOT EXISTS memberships (source TEXT NOT NULL, grp TEXT NOT NULL,
    member TEXT NOT NULL, PRIMARY KEY (member, grp, source)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aliases (source TEXT NOT NULL, alias TEXT NOT NULL,
    primary_email TEXT NOT NULL, PRIMARY KEY (alias, primary_email, source)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_primary ON aliases (primary_email);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# The admitted ACL ids for a principal set (bound as a JSON array): every gate met, no deny.
ADMITTED_ACLS = """
SELECT g.acl_id FROM acl_gates g JOIN acls a ON a.acl_id = g.acl_id
WHERE a.nobody_reason IS NULL AND g.principal IN (SELECT value FROM json_each(:principals))
GROUP BY g.acl_id HAVING COUNT(DISTINCT g.gate) = MAX(a.n_gates)
EXCEPT
SELECT d.acl_id FROM acl_deny d WHERE d.principal IN (SELECT value FROM json_each(:principals))
"""

_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset((
    "a about above after again against all am an and any are as at be because been before "
    "being below between both but by can could did do does doing down during each few for "
    "from further had has have having he her here hers herself him himself his how i if in "
    "into is it its itself just me more most my myself no nor not now of off on once only or "
    "other our ours ourselves out over own same she should so some such than that the their "
    "theirs them themselves then there these they this those through to too under until up "
    "very was we were what when where which while who whom why will with would you your yours "
    "yourself yourselves get got may might must shall tell us"
).split()
)


# BM25 scores every passage that matches any term; a term in more than COMMON_FRACTION of the
# passages (and at least COMMON_MIN of them) costs most of the query (p95 3.1x at 100k passages,
# bench/lexical_common.py). When the question has rarer terms, only passages matching one of
# those are scored, with every term counted ("score": the FTS5 query `(rare...) AND (all...)`,
# 1.02x the p95 of dropping the common terms); dropping them outright ("drop") lost recall on
# every labelled set (bench/quality/bm25.py, bench/RESULTS.md). Up to COMMON_MIN passages
# nothing is cut.
COMMON_FRACTION = 0.05
COMMON_MIN = 2000
COMMON_TERMS: Literal["drop", "score"] = "score"
# "postings": BM25 scored in numpy over FTS5's own postings (indexer/store/postings.py, the
# same scores); "fts5": FTS5's bm25() in SQL, the reference, and the fallback whenever the
# postings cannot answer a question exactly.
LEXICAL_ENGINE: Literal["postings", "fts5"] = "postings"

# Dense search scores only the caller's rows when they are under 1/SPARSE_SCAN of the index
# (bench/peers.py: at 100k chunks a caller who reads 3 % is answered from 3 % of the vectors);
# above that, one product over the whole matrix is cheaper than gathering the rows first.
SPARSE_SCAN = 4
READABLE_CACHE = 64  # callers whose readable rows are kept per matrix generation
# Narrow callers' rows kept as contiguous copies, up to this many bytes in all or an eighth of
# the matrix, whichever is larger (each copy at most a quarter of it): one sequential read
# instead of a gather and a read per query. At 1M x 384 a caller reading 3 % needs 46 MB.
GATHER_BUDGET = 64 << 20
GATHER_SHARE = 8
# After the first pass, at least RESCORE_MIN candidates, RESCORE_FACTOR a result asked for and
# one in RESCORE_SHARE of the caller's rows are rescored exactly, more while the rescored set
# looks too narrow (firstpass.search). Recall@10 against the exact scan on 32,557 real
# passages: 0.9979 at 200, 0.9990 at 300; at 1M synthetic rows a reader of 81 % needed up to
# 2,287 candidates (0.28 % of its rows) where 300 had sufficed at 100k.
RESCORE_FACTOR = 10
RESCORE_MIN = 300
RESCORE_SHARE = 128
BIAS_CACHE = 8  # callers whose first-pass bias (0 readable, -inf not) is kept per generation
# Rows appended or deleted since the last full load, as a share of the rows, past which the
# next query reloads (re-clusters, rebuilds the first pass) instead of patching the cache.
REFRESH_SHARE = ivf.RETRAIN_SHARE
DenseSearch = Literal["exact", "ivf"]
IVF_OFF = 1 << 62  # ivf_min_rows when the IVF is off: no index is that large


def query_terms(text: str, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """The content words of a natural-language question, in order, without repeats."""
    words = [w.lower() for w in _WORD.findall(text)]
    terms = list(dict.fromkeys(w for w in words if w not in stopwords and len(w) > 1))
    return (terms or list(dict.fromkeys(w for w in words if w)))[:64]


def fts_query(terms: list[str]) -> str | None:
    """An FTS5 OR-query of quoted terms."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms) or None


ROOM = 8  # the dense matrix's buffer keeps 1/ROOM more rows free for appends
LOAD_BATCH = 4096  # rows read from SQLite at a time into the dense matrix


def _vectors(blobs: list[bytes], dim: int) -> npt.NDArray[np.float32]:
    """Float32 rows from their blobs (one join: 100k small vstack inputs cost more)."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


def _roomy(rows: int, dim: int) -> npt.NDArray[np.float32]:
    """A buffer an eighth larger than `rows`, so the writes that follow a load append in place
    (_appended): allocating a new 150 MB buffer on the first write after a load stalled
    ~400 ms on page faults here, against ~15 ms for the same copy in a fresh process."""
    return np.empty((rows + rows // ROOM + 1, dim), dtype=np.float32)


def _permuted(matrix: npt.NDArray[np.float32],
              order: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    """`matrix[order]`, in a buffer with room (_roomy), so a layout's arrangement keeps the
    appends after a load in place."""
    out = _roomy(len(order), matrix.shape[1])[:len(order)]
    np.take(matrix, order, axis=0, out=out)
    return out


def _appended(matrix: npt.NDArray[np.float32],
              rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`matrix` with `rows` below it. The matrix is a view of a buffer with room to grow
    (_vectors' `room`), so a write appends in place instead of copying every vector; rows
    already there never change, so older views of it stay valid."""
    n, extra = len(matrix), len(rows)
    base = matrix.base if isinstance(matrix.base, np.ndarray) else None
    if (base is not None and base.ndim == 2 and base.shape[1] == matrix.shape[1]
            and matrix.flags.c_contiguous and base.flags.c_contiguous
            and matrix.__array_interface__["data"][0] == base.__array_interface__["data"][0]
            and n + extra <= len(base)):
        base[n:n + extra] = rows
        return base[:n + extra]
    grown = np.empty((n + extra + (n + extra) // ROOM, matrix.shape[1]), dtype=np.float32)
    grown[:n] = matrix
    grown[n:n + extra] = rows
    return grown[:n + extra]


class _DenseCache:
    def __init__(self) -> None:
        self.dim = -1
        self.vector_gen = -1
        self.acl_gen = -1
        self.chunk_ids = np.zeros(0, dtype=np.int64)
        self.acl_ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        # caller's principal terms -> readable row numbers, for this generation of the matrix
        self.readable: dict[frozenset[str], npt.NDArray[np.int64]] = {}
        self.first: firstpass.FirstPass | None = None  # made on the first broad query
        self.first_tried = False
        self.first_rows = 0  # the first pass covers rows [0, first_rows); later ones are float32
        # caller -> (its readable rows, their first-pass bias over rows [0, first_rows))
        self.biases: dict[frozenset[str],
                          tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}
        self.base = 0  # rows at the last full load: rows past it were appended since
        # Rows arranged by IVF cluster (indexer/store/ivf.py); None: rows in chunk-id order
        self.layout: ivf.Layout | None = None
        # With dense_search "exact": the layout's cluster bounds (indexer/store/bounded.py),
        # set only when the index's own rows passed its tests; None: no cluster path
        self.bounds: bounded.Bounds | None = None
        self.masks: dict[frozenset[str], npt.NDArray[np.bool_]] = {}  # same keys as readable
        self.live = np.zeros(0, dtype=bool)  # False: a row deleted since the last load
        # narrow callers' readable rows copied out contiguously (within the gather budget)
        # caller -> (the readable rows it was copied from, the copy): reused only for that
        # very array, so a refresh that forgot to clear it could not serve stale rows
        self.gathered: dict[frozenset[str],
                            tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]] = {}


class _Shared:
    """One process's dense cache of one index file (per IVF setting), shared by every store
    handle on that file: the web server opens one handle per serving thread, and four copies
    of the matrix (and of the int8 copy it had then) cost ~0.7 GB at 100k chunks. `lock` is
    held for a whole dense query (the cache is brought to the asking connection's generation,
    then scored)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dense = _DenseCache()
        # The IVF layout's training outlives matrix generations (retrained only when stale).
        self.training: ivf.Training | None = None
        # dense_search "exact": rows at the last refusal of the cluster bounds (-1: none); a
        # reload of about as many rows does not train and test again
        self.refused_rows = -1


_SHARED: weakref.WeakValueDictionary[tuple[str, int], _Shared] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


log = logging.getLogger(__name__)

PRIVATE = 0o600  # the index holds every chunk's text: its owner's only


def _describe_error(path: Path, exc: BaseException) -> str:
    """One line for a failed SQLite call, saying what the operator can do about it."""
    msg = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and any(
            m in msg for m in ("malformed", "not a database", "corrupt")):
        return (f"the index {path} is damaged ({msg}); move it away and run `clearance sync` "
                "to rebuild it")
    if "readonly" in msg or "read-only" in msg:
        return f"the index {path} cannot be written ({msg})"
    if "full" in msg:
        return f"the index {path} is full ({msg}); free disk space and retry"
    if "unable to open" in msg:
        return f"cannot open the index {path} ({msg})"
    if isinstance(exc, OverflowError):
        return f"a number is out of the index's range ({msg})"
    if isinstance(exc, UnicodeError):
        return "a text value is not valid UTF-8 (undecodable bytes)"
    return f"index {path}: {msg}"


# Library errors a store call may raise; every one leaves the store as a StoreError.
_SQLITE_ERRORS = (sqlite3.Error, OverflowError, UnicodeError)


def _check_size(path: Path) -> None:
    """A file shorter than its header says was truncated: refuse it before any query reads
    part of it (SQLite would answer from the pages that are left)."""
    try:
        with path.open("rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open the index {path} ({exc.strerror})") from exc
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        if size:
            raise StoreError(f"the index {path} is damaged (file is not a database); move it "
                             "away and run `clearance sync` to rebuild it")
        return
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The header's page count is valid only when it was written with the change counter.
    valid = header[24:28] == header[92:96]
    # A non-empty WAL may hold a checkpoint cut short by a crash: SQLite replays it on open.
    wal = Path(f"{path}-wal")
    pending = wal.exists() and wal.stat().st_size > 0
    if valid and not pending and size < pages * page_size:
        raise StoreError(f"the index {path} is damaged (truncated: {size} of "
                         f"{pages * page_size} bytes); move it away and run `clearance sync` "
                         "to rebuild it")


def _open(path: Path) -> sqlite3.Connection:
    """Open (or create) the index file private to its owner, with the schema in place."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the index folder {path.parent} "
                         f"({exc.strerror})") from exc
    _check_size(path)
    old = os.umask(0o077)  # the file and its -wal/-shm are created 0600
    try:
        db = sqlite3.connect(os.fsencode(path), timeout=60.0, isolation_level=None,
                             check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(SCHEMA)
            db.execute("SELECT COUNT(*) FROM meta").fetchone()
        except BaseException:
            db.close()
            raise
    except _SQLITE_ERRORS as exc:
        raise StoreError(_describe_error(path, exc)) from exc
    finally:
        os.umask(old)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        _make_private(name)
    return db


def _make_private(path: Path) -> None:
    try:
        if path.stat().st_mode & 0o077:
            os.chmod(path, PRIVATE)
    except OSError:
        pass  # not there (no WAL yet), or not ours: the home folder's check reports it


def _require_filter(acl: object) -> None:
    """There is no query without the caller's ACL filter: anything else fails closed."""
    if not isinstance(acl, AclFilter):
        raise StoreError(f"a search needs the caller's ACL filter, got {type(acl).__name__}")


class _Cursor:
    """A cursor whose fetches translate library errors (rows are read lazily)."""

    def __init__(self, cursor: sqlite3.Cursor, path: Path) -> None:
        self._cursor = cursor
        self._path = path

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except _SQLITE_ERRORS as exc:
            raise StoreError(_describe_error(self._path, exc)) from exc

    def fetchmany(self, size: int) -> list[Any]:
        try:
            return self._cursor.fetchmany(size)
        except _SQLITE_ERRORS as exc:
            raise StoreError(_describe_error(self._path, exc)) from exc

    def fetchall(self) -> list[Any]:
        try:
            return self._cursor.fetchall()
        except _SQLITE_ERRORS as exc:
            raise StoreError(_describe_error(self._path, exc)) from exc

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class _Connection:
    """The store's boundary: every sqlite3 error leaves it as a StoreError."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        try:
            return _Cursor(self._db.execute(sql, params), self._path)
        except _SQLITE_ERRORS as exc:
            raise StoreError(_describe_error(self._path, exc)) from exc

    def executemany(self, sql: str, rows: Iterable[Any]) -> _Cursor:
        try:
            return _Cursor(self._db.executemany(sql, rows), self._path)
        except _SQLITE_ERRORS as exc:
            raise StoreError(_describe_error(self._path, exc)) from exc

    def close(self) -> None:
        with suppress(sqlite3.Error):  # closing a damaged file: nothing left to protect
            self._db.close()


class SqliteStore:
    """Chunk, identity and state store in one SQLite file."""

    def __init__(self, path: Path, *, dense_search: DenseSearch = "exact",
                 nprobe: int = ivf.NPROBE) -> None:
        if dense_search not in ("exact", "ivf") or nprobe < 1:
            raise ValueError(f"dense_search {dense_search!r}, nprobe {nprobe}")
        self.path = path
        self._db = _Connection(_open(path), path)
        self._lock = threading.RLock()
        self._depth = 0
        self._holders: dict[int, _Shared] = {}  # the shared dense caches this handle used
        # `ivf_min_rows` and `nprobe` are the knobs bench/peers.py and the tests turn. The IVF
        # is off unless asked for: on real embeddings its default probe finds ~0.91 of the
        # exact top 10 (bench/ivf_recall.py; 1.000 on peers.py's synthetic clusters).
        self.ivf_min_rows = ivf.MIN_ROWS if dense_search == "ivf" else IVF_OFF
        # With the IVF off, an index this large is tested for tight clusters at each full
        # load (bounded.py): searched by cluster bounds when they hold, by the first pass else.
        self.bounded_min_rows = bounded.MIN_ROWS
        self.nprobe = nprobe
        self._admitted: dict[tuple[frozenset[str], int, int], list[int]] = {}
        self._df: dict[str, int] = {}  # term -> passages matching it (capped), per generation
        self._df_gen = -1
        self._passages = 0
        # The lexical query's knobs (bench/quality/bm25.py measures alternatives).
        self.lexical_weights = tuple(w for _, w in LEXICAL_WEIGHTS)
        self.common_fraction = COMMON_FRACTION
        self.common_min = COMMON_MIN
        self.stopwords = STOPWORDS
        self.common_terms: Literal["drop", "score"] = COMMON_TERMS
        self.lexical_engine: Literal["postings", "fts5"] = LEXICAL_ENGINE
        self._postings: postings.Postings | None = None
        self._acls_memo: tuple[tuple[int, int], tuple[postings.Ids, postings.Ids]] | None = None
        self._tokenizer: postings.Tokenizer | None = None
        self._vocab_ready = False  # the temp fts5vocab table over chunks_fts, per connection

    def close(self) -> None:
        self._db.close()

    def _shared(self) -> _Shared:
        """The dense cache every handle on this file with this IVF setting shares (kept alive
        by the handles that use it; the last one gone, it goes)."""
        key = self.ivf_min_rows
        held = self._holders.get(key)
        if held is None:
            with _SHARED_LOCK:
                where = (os.path.realpath(self.path), key)
                held = _SHARED.get(where)
                if held is None:
                    held = _SHARED[where] = _Shared()
            self._holders[key] = held
        return held

    @property
    def _dense(self) -> _DenseCache:
        return self._shared().dense

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        with self._lock:
            if self._depth == 0:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("COMMIT")

    def _bump(self, *keys: str) -> None:
        for key in keys:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES (?, 1) "
                "ON CONFLICT(key) DO UPDATE SET value = value + 1", (key,))

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # -- ACL rows --------------------------------------------------------------------------
    # ACL rows are per connector: `acl_key` is "<connector>|<Acl.key()>" and the gate and deny
    # rows hold principals scoped by the connector (core.principals.scope), so a caller's
    # per-connector principals (AclFilter.terms) match only that connector's documents. Rows
    # written before scoping match no caller (fail closed) and differ from every current key,
    # so the next permission or full sync rewrites them without re-embedding.
    def _acl_id(self, acl: Acl, connector: str) -> int:
        key = stored_acl_key(connector, acl)
        row = self._db.execute("SELECT acl_id FROM acls WHERE acl_key = ?", (key,)).fetchone()
        if row:
            return int(row[0])
        cur = self._db.execute(
            "INSERT INTO acls(acl_key, n_gates, nobody_reason) VALUES (?, ?, ?)",
            (key, len(acl.gates), acl.nobody_reason))
        acl_id = int(cur.lastrowid or 0)
        if acl.nobody_reason is None:
            gates, deny = acl.scoped(connector)
            self._db.executemany(
                "INSERT OR IGNORE INTO acl_gates(acl_id, gate, principal) VALUES (?, ?, ?)",
                [(acl_id, n, p) for n, gate in enumerate(gates) for p in gate])
            self._db.executemany(
                "INSERT OR IGNORE INTO acl_deny(acl_id, principal) VALUES (?, ?)",
                [(acl_id, p) for p in deny])
        return acl_id

    def admitted_acl_ids(self, acl: AclFilter) -> list[int]:
        """ACL ids the caller passes, from the ACL tables; memoised until the next write."""
        key = (acl.terms(), self._meta("vector_gen"), self._meta("acl_gen"))
        cached = self._admitted.get(key)
        if cached is None:
            principals = json.dumps(sorted(acl.terms()))
            rows = self._db.execute(ADMITTED_ACLS, {"principals": principals}).fetchall()
            cached = sorted(int(r[0]) for r in rows)
            if len(self._admitted) > 256:
                self._admitted.clear()
            self._admitted[key] = cached
        return cached

    # -- writes ----------------------------------------------------------------------------
    def document_states(self, doc_ids: Sequence[str]) -> dict[str, DocState]:
        out: dict[str, DocState] = {}
        for start in range(0, len(doc_ids), 500):
            part = list(doc_ids[start:start + 500])
            rows = self._db.execute(
                "SELECT d.doc_id, d.content_hash, a.acl_key, d.embedder FROM documents d "
                "JOIN acls a ON a.acl_id = d.acl_id WHERE d.doc_id IN "
                "(SELECT value FROM json_each(?))", (json.dumps(part),)).fetchall()
            out.update({r[0]: DocState(r[1], acl_key_of(r[0], r[2]), r[3]) for r in rows})
        return out

    def upsert(self, doc: Document, chunks: Sequence[Chunk],
               vectors: npt.NDArray[np.float32], embedder: str, run_id: str) -> None:
        if len(chunks) != len(vectors):
            raise StoreError(f"{doc.doc_id}: {len(chunks)} chunks but {len(vectors)} vectors")
        with self.batch():
            # The document's old chunks, by rowid (a new document has none: one indexed read
            # instead of two json_each deletes).
            old = [(r[0],) for r in self._db.execute(
                "SELECT chunk_id FROM chunks WHERE doc_id = ?", (doc.doc_id,))]
            if old:
                self._db.executemany("DELETE FROM chunks_fts WHERE rowid = ?", old)
                self._db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc.doc_id,))
            acl_id = self._acl_id(doc.acl, doc.connector)
            self._db.execute(
                "INSERT INTO documents(doc_id, connector, title, url, updated, content_hash, "
                "acl_id, embedder, seen_run, acl_confirmed_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(doc_id) DO UPDATE SET connector=excluded.connector, "
                "title=excluded.title, url=excluded.url, updated=excluded.updated, "
                "content_hash=excluded.content_hash, acl_id=excluded.acl_id, "
                "embedder=excluded.embedder, seen_run=excluded.seen_run, "
                "acl_confirmed_at=excluded.acl_confirmed_at",
                (doc.doc_id, doc.connector, doc.title, doc.url,
                 doc.updated.isoformat() if doc.updated else None, doc.content_hash, acl_id,
                 embedder, run_id, time.time()))
            if chunks:
                # Two executemany calls instead of two statements per chunk. The document's old
                # chunks are gone, so its new rows are the ones under its id, and their
                # chunk_ids (rowids) follow insertion order: the FTS rows pair up with them.
                blobs = np.ascontiguousarray(vectors, dtype=np.float32)
                # Chunk ids only grow (never a deleted one's again), so the dense cache can take
                # rows past the newest id it holds as the new ones (_refresh).
                first = max(self._meta("next_chunk_id"), int(self._db.execute(
                    "SELECT COALESCE(MAX(chunk_id), 0) + 1 FROM chunks").fetchone()[0]))
                self._db.executemany(
                    "INSERT INTO chunks(chunk_id, doc_id, ordinal, headings, text, acl_id, vector) "
                    "VALUES (?,?,?,?,?,?,?)",
                    [(first + i, doc.doc_id, chunk.ordinal, "\x1f".join(chunk.headings),
                      chunk.text, acl_id, blobs[i].tobytes()) for i, chunk in enumerate(chunks)])
                self._db.execute(
                    "INSERT INTO meta(key, value) VALUES ('next_chunk_id', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (first + len(chunks),))
                ids = [r[0] for r in self._db.execute(
                    "SELECT chunk_id FROM chunks WHERE doc_id = ? ORDER BY chunk_id",
                    (doc.doc_id,))]
                if len(ids) != len(chunks):
                    raise StoreError(f"{doc.doc_id}: wrote {len(chunks)} chunks, found {len(ids)}")
                self._db.executemany(
                    "INSERT INTO chunks_fts(rowid, title, headings, body) VALUES (?,?,?,?)",
                    [(chunk_id, doc.title, " ".join(chunk.headings), chunk.text)
                     for chunk_id, chunk in zip(ids, chunks, strict=True)])
            self._bump("vector_gen")

    def update_acl(self, doc_id: str, acl: Acl, run_id: str | None) -> bool:
        with self.batch():
            acl_id = self._acl_id(acl, connector_of(doc_id))
            cur = self._db.execute(
                "UPDATE documents SET acl_id = ?, acl_confirmed_at = ?, "
                "seen_run = COALESCE(?, seen_run) WHERE doc_id = ?",
                (acl_id, time.time(), run_id, doc_id))
            if cur.rowcount == 0:
                return False
            self._db.execute("UPDATE chunks SET acl_id = ? WHERE doc_id = ?", (acl_id, doc_id))
            self._bump("acl_gen")
            return True

    def mark_seen(self, doc_ids: Sequence[str], run_id: str | None) -> None:
        with self.batch():
            self._db.execute(
                "UPDATE documents SET seen_run = COALESCE(?, seen_run), acl_confirmed_at = ? "
                "WHERE doc_id IN (SELECT value FROM json_each(?))",
                (run_id, time.time(), json.dumps(list(doc_ids))))

    def delete_unseen(self, connector: str, run_id: str) -> list[str]:
        with self.batch():
            gone = [r[0] for r in self._db.execute(
                "SELECT doc_id FROM documents WHERE connector = ? "
                "AND (seen_run IS NULL OR seen_run != ?) ORDER BY doc_id",
                (connector, run_id))]
            self.delete(gone)
        return gone

    def doc_ids(self, connector: str) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT doc_id FROM documents WHERE connector = ? ORDER BY doc_id", (connector,))]

    def connector_names(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT connector FROM documents ORDER BY connector")]

    def delete(self, doc_ids: Sequence[str]) -> None:
        if not doc_ids:
            return
        with self.batch():
            self._delete_chunks(doc_ids)
            self._db.execute(
                "DELETE FROM documents WHERE doc_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(doc_ids)),))
            self._bump("vector_gen")

    def _delete_chunks(self, doc_ids: Sequence[str]) -> None:
        ids = json.dumps(list(doc_ids))
        self._db.execute(
            "DELETE FROM chunks_fts WHERE rowid IN (SELECT chunk_id FROM chunks WHERE doc_id IN "
            "(SELECT value FROM json_each(?)))", (ids,))
        self._db.execute("DELETE FROM chunks WHERE doc_id IN (SELECT value FROM json_each(?))",
                         (ids,))

    # -- queries ---------------------------------------------------------------------------
    def _selective(self, terms: list[str]) -> list[str]:
        """The terms worth scoring (see COMMON_FRACTION); never empties a query."""
        gen = self._meta("vector_gen")
        if self._df_gen != gen:
            self._df, self._df_gen = {}, gen
            self._passages = self.chunk_count()
        def passages_with(term: str, cap: int) -> int:  # counted up to cap, per generation
            if term not in self._df:
                self._df[term] = int(self._db.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? "
                    "LIMIT ?)", (fts_query([term]), cap)).fetchone()[0])
            return self._df[term]

        return self._rare(terms, self._passages, passages_with)

    def _rare(self, terms: list[str], passages: int,
              passages_with: Callable[[str, int], int]) -> list[str]:
        """The COMMON_FRACTION rule, for the FTS5 path and the postings alike: the terms in
        fewer than the cap's passages, or every term when none is (or nothing is cut)."""
        cap = max(self.common_min, int(passages * self.common_fraction))
        if passages <= cap or len(terms) < 2:
            return terms
        return [t for t in terms if passages_with(t, cap) < cap] or terms

    def _match(self, terms: list[str]) -> str | None:
        """The FTS5 query: the selective terms, and with common_terms = "score" the common ones
        too, counted only in passages that a selective term already matched."""
        rare = self._selective(terms)
        if self.common_terms == "score" and len(rare) < len(terms):
            return f"({fts_query(rare)}) AND ({fts_query(terms)})"
        return fts_query(rare)

    def _scored(self, rare: list[str], terms: list[str]) -> list[str]:
        """The phrases bm25() sums over for `_match`'s query (a repeated word twice)."""
        return rare + terms if self.common_terms == "score" and len(rare) < len(terms) else rare

    def lexical_ceiling(self, query: str) -> float | None:
        """The highest score `lexical` could give any passage for `query`: per scored phrase
        idf * (k1 + 1), where its bm25 term saturates. From the whole index's statistics, like
        the scores themselves (never shown; the caller only divides by it)."""
        with self._lock:
            terms = query_terms(query, self.stopwords)
            if not terms:
                return 0.0
            if self.lexical_engine == "postings":
                found = self._postings_terms(terms)
                if found is not None:
                    state, lists, _, phrases, _ = found
                    return sum(postings.idf(state.rows, len(lists[p][0])) for p in phrases) * (
                        postings.K1 + 1.0)
            phrases = self._scored(self._selective(terms), terms)
            rows = self.chunk_count()
            hits = {p: int(self._db.execute(
                "SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                (fts_query([p]),)).fetchone()[0]) for p in dict.fromkeys(phrases)}
            return sum(postings.idf(rows, hits[p]) for p in phrases) * (postings.K1 + 1.0)

    def lexical(self, query: str, acl: AclFilter, limit: int) -> list[ChunkHit]:
        _require_filter(acl)
        if limit <= 0:
            return []
        if limit > 2**63 - 1:  # what SQLite's LIMIT takes; the FTS5 path fails the same way
            raise StoreError(f"lexical search: limit {limit} is out of range")
        with self._lock:
            terms = query_terms(query, self.stopwords)
            if self.lexical_engine == "postings" and terms:
                scored = self._lexical_postings(terms, acl, limit)
                if scored is not None:
                    return self._hits(scored)
            match = self._match(terms)
        if match is None:
            return []
        weights = ", ".join(f"{float(w)!r}" for w in self.lexical_weights)
        sql = (
            f"SELECT c.chunk_id, -bm25(chunks_fts, {weights}) AS score "
            "FROM chunks_fts JOIN chunks c ON c.chunk_id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH :match "
            "AND c.acl_id IN (SELECT value FROM json_each(:admitted)) "
            "ORDER BY score DESC LIMIT :limit"
        )
        with self._lock:
            admitted = json.dumps(self.admitted_acl_ids(acl))
            rows = self._db.execute(
                sql, {"admitted": admitted, "match": match, "limit": limit}).fetchall()
            return self._hits([(int(r[0]), float(r[1])) for r in rows])

    def _lexical_postings(self, terms: list[str], acl: AclFilter,
                          limit: int) -> list[tuple[int, float]] | None:
        """The FTS5 query's answer, scored from postings (indexer/store/postings.py); None
        when it cannot be reproduced exactly here and FTS5 must answer."""
        found = self._postings_terms(terms, acl)
        if found is None:
            return None
        state, lists, rare, phrases, admitted = found
        assert admitted is not None
        candidates = np.unique(np.concatenate([lists[t][0] for t in rare]))
        return postings.score(state, [lists[t] for t in phrases], candidates, admitted, limit)

    def _postings_terms(self, terms: list[str], acl: AclFilter | None = None
                        ) -> tuple[postings.Postings, dict[str, tuple[postings.Ids,
                                                                      postings.Floats]],
                                   list[str], list[str], npt.NDArray[np.bool_] | None] | None:
        """The postings state, each stem's postings, the selective stems and the scored
        phrases of `_match`'s query, and with `acl` the mask of the ACL ids it admits; None
        when FTS5 must answer. One read transaction (one snapshot
        of the file, whoever else writes it) covers the generation check, the postings and
        the ACL evaluation."""
        own = self._depth == 0
        if own:
            self._db.execute("BEGIN")
        try:
            state = self._postings_state()
            if state is None or state.avgdl <= 0.0:
                return None
            if self._tokenizer is None:
                self._tokenizer = postings.Tokenizer(TOKENIZE)
            tokens = self._tokenizer.tokens(terms)
            if any(len(t) != 1 for t in tokens):
                return None  # a word FTS5 splits (or drops): its phrase query is FTS5's
            lists: dict[str, tuple[postings.Ids, postings.Floats]] = {}
            for (stem,) in tokens:
                if stem not in lists:
                    found = postings.term_postings(self._db, state, stem,
                                                   self.lexical_weights, FTS_COLUMNS)
                    if found is None:
                        self._postings = None
                        return None
                    lists[stem] = found
            stems = [t[0] for t in tokens]
            # _match's rule, with each term's passage count known exactly from its postings
            rare = self._rare(stems, state.rows, lambda t, _cap: len(lists[t][0]))
            admitted = None
            if acl is not None:
                ids = self.admitted_acl_ids(acl)
                admitted = np.zeros(max(ids, default=0) + 1, dtype=bool)
                admitted[ids] = True
            return state, lists, rare, self._scored(rare, stems), admitted
        finally:
            if own:
                self._db.execute("COMMIT")

    def _chunk_acls(self, vector_gen: int, acl_gen: int) -> tuple[postings.Ids, postings.Ids]:
        """postings.chunk_acls, read once per generation for both the dense refresh and the
        postings (~30 ms at 100k rows each). `vector_gen` / `acl_gen` must have been read
        before this call, so what is kept under them is never older than they say."""
        memo = self._acls_memo
        if memo is not None and memo[0] == (vector_gen, acl_gen):
            return memo[1]
        found = postings.chunk_acls(self._db)
        self._acls_memo = ((vector_gen, acl_gen), found)
        return found

    def _postings_state(self) -> postings.Postings | None:
        vector_gen, acl_gen = self._meta("vector_gen"), self._meta("acl_gen")
        state = self._postings
        if state is None or state.vector_gen != vector_gen:
            if not self._vocab_ready:
                self._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_instances "
                                 "USING fts5vocab(main, chunks_fts, instance)")
                self._vocab_ready = True
            columns, acls = len(FTS_COLUMNS), self._chunk_acls(vector_gen, acl_gen)
            state = ((state is not None and postings.refresh(self._db, state, vector_gen,
                                                             acl_gen, columns, acls))
                     or postings.load(self._db, vector_gen, acl_gen, columns, acls))
        elif state.acl_gen != acl_gen:
            acl_ids = postings.live_acl_array(state, self._chunk_acls(vector_gen, acl_gen))
            if acl_ids is None:
                state = None
            else:
                state.acl_ids, state.acl_gen = acl_ids, acl_gen
        self._postings = state
        return state

    def dense(self, vector: npt.NDArray[np.float32], acl: AclFilter, limit: int) -> list[ChunkHit]:
        _require_filter(acl)
        with self._lock:
            return self._hits(self.dense_ranking(vector, acl, limit))

    def dense_ranking(self, vector: npt.NDArray[np.float32], acl: AclFilter,
                      limit: int) -> list[tuple[int, float]]:
        """`dense` without the passage texts: (chunk id, score), best first (bench/peers.py
        times both to show the text fetch's share)."""
        _require_filter(acl)
        with self._lock, self._shared().lock:
            vector = np.asarray(vector, dtype=np.float32)
            cache = self._dense_matrix(len(vector))
            if len(cache.chunk_ids) == 0 or limit <= 0:
                return []
            rows = self._readable_rows(cache, acl)
            take = min(limit, len(rows))
            if take == 0:
                return []
            # One BLAS thread: a query's product is small and memory-bound, and OpenBLAS's own
            # threading stalls on a busy machine or beside other requests (10x slower, measured).
            with single_threaded_blas():
                probed = self._probe(cache, acl, rows, vector, take)
                if probed is not None:
                    # A broad caller over a large index: only the nearest clusters' rows.
                    rows, scores = probed
                elif len(rows) * SPARSE_SCAN < len(cache.chunk_ids):
                    # A caller who reads a small share: score only their rows (the gather reads
                    # those rows once; the full product would read every vector in the index),
                    # from a contiguous copy kept per caller while it fits the budget.
                    scores = self._gathered(cache, acl, rows) @ vector
                elif (found := self._first_pass(cache, acl, rows, vector, take)) is not None:
                    # A large index and a broad caller: a 4-bit pass over every row's principal
                    # components keeps the best readable candidates, rescored exactly
                    # (indexer/store/firstpass.py).
                    rows, scores = found
                else:
                    scores = (cache.matrix @ vector)[rows]
            top = np.argpartition(-scores, take - 1)[:take]
            top = top[np.argsort(-scores[top], kind="stable")]
            return [(int(cache.chunk_ids[rows[i]]), float(scores[i])) for i in top]

    def _gathered(self, cache: _DenseCache, acl: AclFilter,
                  rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        key = acl.terms()
        held = cache.gathered.get(key)
        if held is not None and held[0] is rows:
            return held[1]
        sub = cache.matrix[rows]
        budget = max(GATHER_BUDGET, cache.matrix.nbytes // GATHER_SHARE)
        if sub.nbytes * 4 <= budget:
            while cache.gathered and (sum(m.nbytes for _, m in cache.gathered.values())
                                      + sub.nbytes > budget):
                cache.gathered.pop(next(iter(cache.gathered)))
            cache.gathered[key] = (rows, sub)
        return sub

    def _probe(self, cache: _DenseCache, acl: AclFilter, rows: npt.NDArray[np.int64],
               vector: npt.NDArray[np.float32],
               take: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        if cache.layout is None or len(rows) * SPARSE_SCAN < len(cache.chunk_ids):
            return None
        key = acl.terms()
        mask = cache.masks.get(key)
        if mask is None:
            mask = np.zeros(len(cache.chunk_ids), dtype=bool)
            mask[rows] = True
            if len(cache.masks) >= READABLE_CACHE:
                cache.masks.pop(next(iter(cache.masks)))
            cache.masks[key] = mask
        if cache.bounds is not None:  # None: a row broke the model, or too wide (first pass)
            return bounded.search(cache.layout, cache.bounds, cache.matrix, mask, vector, take)
        return ivf.search(cache.layout, cache.matrix, mask, vector, self.nprobe, take)

    def _first_pass(self, cache: _DenseCache, acl: AclFilter, rows: npt.NDArray[np.int64],
                    vector: npt.NDArray[np.float32], take: int
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
        """Candidate rows for a broad caller and their exact scores: the first pass's best of
        its readable rows among those the pass covers, as many as firstpass.search needs to
        hold the best `take` (or all of them, scored in float32, when that is cheaper), and
        every readable row appended since. None: no first pass (small matrix, failed), scan
        in float32."""
        # No rebuild check here: _refresh reloads (and drops the pass) before the rows past
        # it reach REFRESH_SHARE of the matrix.
        if not cache.first_tried:
            cache.first_tried = True
            cache.first = firstpass.build(cache.matrix)
            cache.first_rows = len(cache.matrix) if cache.first is not None else 0
        if cache.first is None:
            return None
        covered = cache.first_rows
        key = acl.terms()
        held = cache.biases.get(key)
        if held is not None and held[0] is rows:
            bias = held[1]
        else:
            bias = np.full(covered, -np.inf, dtype=np.float32)
            bias[rows[rows < covered]] = 0.0
            if len(cache.biases) >= BIAS_CACHE:
                cache.biases.pop(next(iter(cache.biases)))
            cache.biases[key] = (rows, bias)
        tail = rows[np.searchsorted(rows, covered):]  # rows ascend (_readable_rows)
        others = cache.matrix[tail] @ vector if len(tail) else None
        readable = len(rows) - len(tail)
        start = max(RESCORE_MIN, RESCORE_FACTOR * take, -(-readable // RESCORE_SHARE))
        found = firstpass.search(cache.first, cache.matrix, vector, bias, take, start,
                                 readable, others)
        if found is None:
            cache.first = None  # failed once: float32 for the rest of this generation
            return None
        if found.rows is None or found.scores is None:  # too wide to be worth it: exact scan
            return rows, (cache.matrix @ vector)[rows]
        if others is None:
            return found.rows, found.scores
        return np.concatenate([found.rows, tail]), np.concatenate([found.scores, others])

    def _readable_rows(self, cache: _DenseCache, acl: AclFilter) -> npt.NDArray[np.int64]:
        """Row numbers of the dense matrix whose ACL the caller passes, ascending; memoised per
        caller until the next write (a person asking again pays for neither the ACL tables
        nor the per-row mask)."""
        key = acl.terms()
        rows = cache.readable.get(key)
        if rows is None:
            # one slot past the largest id: deleted rows carry -1 and land there, never admitted
            admitted = np.zeros(int(cache.acl_ids.max(initial=0)) + 2, dtype=bool)
            ids = [i for i in self.admitted_acl_ids(acl) if 0 <= i < len(admitted) - 1]
            admitted[ids] = True
            rows = np.flatnonzero(admitted[cache.acl_ids] & cache.live).astype(np.int64)
            if len(cache.readable) >= READABLE_CACHE:
                cache.readable.pop(next(iter(cache.readable)))
            cache.readable[key] = rows
        return rows

    def _dense_matrix(self, dim: int) -> _DenseCache:
        """Vectors of the query's dimension (an index being re-embedded by another model
        holds both kinds for a while; only comparable rows are searched)."""
        cache = self._dense
        vector_gen, acl_gen = self._meta("vector_gen"), self._meta("acl_gen")
        changed = vector_gen != cache.vector_gen or acl_gen != cache.acl_gen
        if dim != cache.dim or (changed and not self._refresh(cache, vector_gen, acl_gen)):
            self._load(cache, dim)
        cache.vector_gen, cache.acl_gen = vector_gen, acl_gen
        return cache

    def _load(self, cache: _DenseCache, dim: int) -> None:
        """Every vector of dimension `dim`, arranged by IVF cluster when the index is large."""
        ids, acl_ids, matrix = self._read_vectors(dim)
        cache.chunk_ids, cache.acl_ids, cache.matrix = ids, acl_ids, matrix
        cache.dim = dim
        cache.live = np.ones(len(ids), dtype=bool)
        cache.layout, cache.bounds = None, None
        self._forget(cache)
        self._arrange(cache)
        cache.base = len(cache.chunk_ids)

    def _read_vectors(self, dim: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64],
                                               npt.NDArray[np.float32]]:
        """Chunk ids, ACL ids and vectors of dimension `dim` in chunk-id order, read in batches
        straight into the matrix's buffer (room to grow, _roomy): every blob at once in a
        list, then joined, held three copies of the vectors at the peak and left the freed
        blobs' heap resident (+1.5 GB RSS at 1M x 384)."""
        expected = int(self._db.execute(
            "SELECT COUNT(*) FROM chunks WHERE length(vector) = ?", (dim * 4,)).fetchone()[0])
        buffer = _roomy(expected, dim)
        ids: list[int] = []
        acl_ids: list[int] = []
        cursor = self._db.execute(
            "SELECT chunk_id, acl_id, vector FROM chunks WHERE length(vector) = ? "
            "ORDER BY chunk_id", (dim * 4,))
        while batch := cursor.fetchmany(LOAD_BATCH):
            at = len(ids)
            if at + len(batch) > len(buffer):  # rows written since the count
                grown = np.empty((2 * (at + len(batch)), dim), dtype=np.float32)
                grown[:at] = buffer[:at]
                buffer = grown
            buffer[at:at + len(batch)] = np.frombuffer(
                b"".join(r[2] for r in batch), dtype=np.float32).reshape(len(batch), dim)
            ids.extend(r[0] for r in batch)
            acl_ids.extend(r[1] for r in batch)
        return (np.array(ids, dtype=np.int64), np.array(acl_ids, dtype=np.int64),
                buffer[:len(ids)])

    def _refresh(self, cache: _DenseCache, vector_gen: int, acl_gen: int) -> bool:
        """Bring the cache up to date after writes without reading every vector again: rows
        gone are masked, new rows (chunk ids only grow, `upsert`) are appended past the
        clustered part and scanned exactly, every row's ACL id is re-read. False when the
        rows do not fit that picture or too many changed since the layout (reload)."""
        dim = cache.dim
        # The (acl_id, rowid) index covers this: no vector page is read. It has every
        # dimension's rows; one the cache does not hold fails the checks below (reload).
        carried = postings.carry_forward(self._chunk_acls(vector_gen, acl_gen),
                                         cache.chunk_ids, cache.live, cache.base)
        if carried is None or carried.changed > REFRESH_SHARE * len(carried.live):
            return False  # rows that do not fit, or too many changed: a clean load
        fresh = carried.fresh
        if len(fresh):
            added = self._db.execute(
                "SELECT chunk_id, vector FROM chunks WHERE chunk_id > ? AND length(vector) = ? "
                "ORDER BY chunk_id", (int(cache.chunk_ids.max()), dim * 4)).fetchall()
            if [r[0] for r in added] != fresh.tolist():
                return False
            cache.matrix = _appended(cache.matrix, _vectors([r[1] for r in added], dim))
        cache.chunk_ids = np.concatenate([cache.chunk_ids, fresh])
        cache.acl_ids, cache.live = carried.acl_ids, carried.live
        # Rows only appended and masked: the first pass over the first rows stays valid.
        self._forget(cache, keep_first=True)
        # grown into the IVF: a clean load arranges it
        return cache.layout is not None or len(cache.chunk_ids) < max(self.ivf_min_rows, 1)

    @staticmethod
    def _forget(cache: _DenseCache, keep_first: bool = False) -> None:
        cache.readable, cache.masks, cache.gathered, cache.biases = {}, {}, {}, {}
        if not keep_first or cache.first is None:  # none yet (or it failed): try again
            cache.first, cache.first_tried, cache.first_rows = None, False, 0

    def _arrange(self, cache: _DenseCache) -> None:
        """Sort a large matrix by IVF cluster, reusing the last training unless stale (or,
        with the IVF off, by bounded cluster when the rows pass its tests)."""
        n = len(cache.chunk_ids)
        if self.ivf_min_rows == IVF_OFF:
            if n >= self.bounded_min_rows:
                self._arrange_bounded(cache)
            return
        if n < max(self.ivf_min_rows, 1):
            return
        holder = self._shared()
        training = holder.training
        layout = None
        if training is not None and training.centroids.shape[1] == cache.dim:
            layout = ivf.arrange(training, cache.matrix, cache.chunk_ids)
            if ivf.stale(layout, n):
                layout = None
        if layout is None:
            t0 = time.perf_counter()
            training = holder.training = ivf.train(cache.matrix, cache.chunk_ids)
            log.info("dense search: IVF trained rows=%d lists=%d seconds=%.2f", n,
                     len(training.centroids), time.perf_counter() - t0)
            layout = ivf.arrange(training, cache.matrix, cache.chunk_ids)
        cache.chunk_ids = cache.chunk_ids[layout.order]
        cache.acl_ids = cache.acl_ids[layout.order]
        cache.matrix = _permuted(cache.matrix, layout.order)
        cache.layout = layout

    def _arrange_bounded(self, cache: _DenseCache) -> None:
        """Cluster the rows, test them (bounded.accept on a sample, then bounds() on every
        cluster) and, when they pass, sort the matrix by cluster with its bounds. Trained
        afresh on every full load, so the tests always see the rows being searched; a refusal
        is remembered until the rows change by a fifth (this process only)."""
        n = len(cache.chunk_ids)
        holder = self._shared()
        if holder.refused_rows >= 0 and abs(n - holder.refused_rows) <= REFRESH_SHARE * n:
            return
        t0 = time.perf_counter()
        matrix = cache.matrix
        training = ivf.train_accepted(
            matrix, cache.chunk_ids,
            lambda sample, picked, centroids: bounded.accept(matrix, sample, picked, centroids),
            spread=True)
        held = layout = None
        if training is not None:
            training = ivf.without_small(training, matrix, bounded.MIN_LIST)
            layout = ivf.arrange(training, matrix, cache.chunk_ids)
            matrix = _permuted(matrix, layout.order)
            held = bounded.bounds(layout, matrix)
        if layout is None or held is None:
            holder.refused_rows = n
            log.info("dense search: cluster bounds refused (%s) rows=%d seconds=%.2f",
                     "sample" if training is None else "clusters", n, time.perf_counter() - t0)
            return
        holder.refused_rows = -1
        cache.chunk_ids = cache.chunk_ids[layout.order]
        cache.acl_ids = cache.acl_ids[layout.order]
        cache.matrix = matrix
        cache.layout, cache.bounds = layout, held
        log.info("dense search: cluster bounds rows=%d lists=%d loose=%d seconds=%.2f", n,
                 len(layout.centroids), len(held.loose), time.perf_counter() - t0)

    def _hits(self, scored: list[tuple[int, float]]) -> list[ChunkHit]:
        if not scored:
            return []
        rows = self._db.execute(
            "SELECT c.chunk_id, c.doc_id, c.ordinal, c.text, c.headings, d.title, d.url "
            "FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            "WHERE c.chunk_id IN (SELECT value FROM json_each(?))",
            (json.dumps([c for c, _ in scored]),)).fetchall()
        by_id = {int(r[0]): r for r in rows}
        hits = []
        for chunk_id, score in scored:
            r = by_id.get(chunk_id)
            if r is not None:
                headings = tuple(h for h in r[4].split("\x1f") if h)
                hits.append(ChunkHit(chunk_id, r[1], int(r[2]), score, r[3], r[5], r[6], headings))
        return hits

    def document(self, doc_id: str) -> StoredDocument | None:
        row = self._db.execute(
            "SELECT d.doc_id, d.connector, d.title, d.url, d.content_hash, a.acl_key, d.embedder, "
            "(SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.doc_id), d.updated, "
            "d.acl_confirmed_at FROM documents d JOIN acls a ON a.acl_id = d.acl_id "
            "WHERE d.doc_id = ?", (doc_id,)).fetchone()
        if row is None:
            return None
        return StoredDocument(row[0], row[1], row[2], row[3], row[4],
                              stored_acl(row[0], row[5]), row[6], int(row[7]), row[8],
                              float(row[9]))

    def stats(self, connector: str) -> ConnectorStats:
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(a.nobody_reason IS NOT NULL), 0), "
            "MIN(d.acl_confirmed_at) FROM documents d JOIN acls a ON a.acl_id = d.acl_id "
            "WHERE d.connector = ?", (connector,)).fetchone()
        chunks = self._db.execute(
            "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.doc_id = c.doc_id "
            "WHERE d.connector = ?", (connector,)).fetchone()
        return ConnectorStats(int(row[0]), int(chunks[0]), int(row[1]),
                              float(row[2]) if row[2] is not None else None)

    def snapshot(self) -> dict[str, Any]:
        docs = {}
        for r in self._db.execute(
                "SELECT d.doc_id, d.title, d.url, d.content_hash, a.acl_key, d.embedder "
                "FROM documents d JOIN acls a ON a.acl_id = d.acl_id ORDER BY d.doc_id"):
            docs[r[0]] = {"title": r[1], "url": r[2], "hash": r[3],
                          "acl": acl_key_of(r[0], r[4]), "embedder": r[5],
                          "chunks": []}
        for r in self._db.execute(
                "SELECT doc_id, ordinal, headings, text, vector FROM chunks "
                "ORDER BY doc_id, ordinal"):
            vec = np.frombuffer(r[4], dtype=np.float32)
            docs[r[0]]["chunks"].append(
                {"ordinal": r[1], "headings": r[2], "text": r[3],
                 "vector": [round(float(x), 5) for x in vec]})
        fts = self._db.execute("SELECT COUNT(*) FROM chunks_fts").fetchone()[0]
        return {"documents": docs, "fts_rows": int(fts)}

    def embedder_names(self) -> list[str]:
        """Embedders the indexed documents were embedded with, most used first."""
        rows = self._db.execute("SELECT embedder FROM documents GROUP BY embedder "
                                "ORDER BY COUNT(*) DESC, embedder").fetchall()
        return [r[0] for r in rows]

    def chunk_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    # -- identities ------------------------------------------------------------------------
    def replace_identities(self, source: str, memberships: Iterable[Membership],
                           aliases: Iterable[Alias]) -> None:
        with self.batch():
            self._db.execute("DELETE FROM memberships WHERE source = ?", (source,))
            self._db.execute("DELETE FROM aliases WHERE source = ?", (source,))
            self._db.executemany(
                "INSERT OR IGNORE INTO memberships(source, grp, member) VALUES (?,?,?)",
                [(source, m.group, m.member) for m in memberships])
            self._db.executemany(
                "INSERT OR IGNORE INTO aliases(source, alias, primary_email) VALUES (?,?,?)",
                [(source, a.alias, a.primary) for a in aliases])
            self._bump("identity_gen")

    def groups_of(self, members: Iterable[str], source: str | None = None) -> list[Membership]:
        rows = self._db.execute(
            "SELECT DISTINCT grp, member FROM memberships WHERE member IN "
            "(SELECT value FROM json_each(?)) AND (? IS NULL OR source = ?) ORDER BY grp, member",
            (json.dumps(sorted(set(members))), source, source)).fetchall()
        return [Membership(group=r[0], member=r[1]) for r in rows]

    def aliases_of(self, email: str, source: str | None = None) -> list[Alias]:
        rows = self._db.execute(
            "SELECT DISTINCT alias, primary_email FROM aliases "
            "WHERE (alias = ? OR primary_email = ?) AND (? IS NULL OR source = ?) "
            "ORDER BY alias, primary_email", (email, email, source, source)).fetchall()
        return [Alias(alias=r[0], primary=r[1]) for r in rows]

    def identity_sources(self) -> list[str]:
        return [r[0] for r in self._db.execute(
            "SELECT source FROM memberships UNION SELECT source FROM aliases ORDER BY 1")]


    def identity_version(self) -> int:
        return self._meta("identity_gen")

    # -- sync state ------------------------------------------------------------------------
    def get_state(self, key: str) -> Any | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_state(self, key: str, value: Any) -> None:
        with self.batch():
            self._db.execute(
                "INSERT INTO state(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def delete_state(self, key: str) -> None:
        with self.batch():
            self._db.execute("DELETE FROM state WHERE key = ?", (key,))
