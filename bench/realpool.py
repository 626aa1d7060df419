"""A pool of real passage embeddings at peer-bench size (issue 16): the labelled sets'
passages, topped up with every other man page Debian installed here, and the sets' questions.

    python -m bench.realpool --stores DIR [--rows 100000] [--embedder minilm-onnx-int8]

bench/peers.py's synthetic vectors are 256 Gaussian clusters, which a graph index walks
easily (FAISS HNSW reaches recall@10 1.000 there at efSearch 256) and which the first pass's
principal directions compress badly; real embeddings are neither. This pool lets the same
ACL workload run on real vectors (`bench.peers --pool DIR/pool.<embedder>.npz`): the five
sets' passages as `bench.quality.sets --candidates DIR` kept them (manpages-desc only: it
holds the same pages as manpages-name), then man pages outside the sets' four packages,
rendered by the sets' own roff reader and indexed through the product's pipeline (chunker
and embedder) until the pool holds `--rows` passages. The extra index is kept as
DIR/pool-extra.<embedder>.sqlite3 and reused (pages already in it are not embedded again).
Queries: every set's questions, embedded by the same embedder. The man pages are public text
shipped in Debian packages; none of it is Python's documentation.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.quality.extract import PACKAGES, is_alias, is_mdoc, page_files, read_source, render
from bench.quality.roff import to_page
from bench.quality.run import DatasetConnector
from bench.quality.sets import PUBLIC, load_set, store_path
from connectors.base import Capabilities
from core.acl import Acl
from core.models import Document, Section, make_document
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline

SETS = ("faq", "howto", "debfaq", "manpages-desc")  # manpages-name: the same pages again
QUESTION_SETS = ("faq", "howto", "debfaq", "manpages-desc", "manpages-name")
CONNECTOR = "pool"
BATCH = 200  # pages indexed per sync round (the pool stops between rounds)

Matrix = npt.NDArray[np.float32]


class _Batches(DatasetConnector):
    """The sets' connector, but a round lists only its own pages: what it leaves out stays."""

    capabilities = Capabilities(complete_listing=False, identities_each_pass=True)


def pool_path(stores: Path, embedder_name: str) -> Path:
    return stores / f"pool.{embedder_name}.npz"


def vectors_of(store: SqliteStore) -> Matrix:
    blobs = [r[0] for r in store._db.execute("SELECT vector FROM chunks ORDER BY chunk_id")]
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1).copy()


def extra_pages() -> list[str]:
    """English man page files outside the labelled sets' packages (not symlinks), in a fixed
    order; page_document drops the aliases and mdoc pages among them."""
    taken = {p for package in PACKAGES for p in page_files(package)}
    paths = [p for p in sorted(glob.glob("/usr/share/man/man[0-9]/*.gz"))
             if p not in taken and not os.path.islink(p) and os.path.isfile(p)]
    return paths


def doc_id_of(path: str) -> str:
    return f"{CONNECTOR}:{Path(path).name[: -len('.gz')]}"


def page_document(path: str) -> Document | None:
    try:
        source = read_source(path)
    except (OSError, EOFError) as exc:
        print(f"skipped {path}: {type(exc).__name__}", file=sys.stderr)
        return None
    if is_alias(source) or is_mdoc(source):
        return None
    try:
        page = to_page(source)
    except (ValueError, IndexError, KeyError, RecursionError) as exc:
        print(f"skipped {path}: {type(exc).__name__}", file=sys.stderr)
        return None
    text = render(page)
    if len(re.findall(r"\w+", text)) < 20:
        return None
    doc_id = doc_id_of(path)
    name = doc_id.split(":", 1)[1]
    return make_document(doc_id, name, f"man://{name}", [Section(text)], Acl.from_json(PUBLIC))


def build(stores: Path, embedder_name: str, rows: int) -> Path:
    embedder = load_embedder(embedder_name)
    parts: list[Matrix] = []
    for name in SETS:
        kept = store_path(stores, name, embedder_name)
        if not kept.is_file():
            raise SystemExit(f"{kept}: no index kept there (run bench.quality.sets "
                             f"--candidates {stores})")
        store = SqliteStore(kept)
        parts.append(vectors_of(store))
        store.close()
        print(f"{name}: {len(parts[-1]):,} passages", flush=True)
    have = sum(len(p) for p in parts)
    extra = SqliteStore(stores / f"pool-extra.{embedder_name}.sqlite3")
    done = {r[0] for r in extra._db.execute("SELECT doc_id FROM documents")}
    count = extra._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
    pipeline = Pipeline(extra, embedder)
    pending = [p for p in extra_pages() if doc_id_of(p) not in done]
    while have + count < rows and pending:
        batch, pending = pending[:BATCH], pending[BATCH:]
        docs = [d for d in map(page_document, batch) if d is not None]
        if docs:
            pipeline.incremental_sync(_Batches(CONNECTOR, docs))
        count = extra._db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        print(f"extra man pages: {count:,} passages ({len(pending):,} pages left)", flush=True)
    parts.append(vectors_of(extra))
    extra.close()
    passages = np.concatenate([p for p in parts if len(p)])[:rows]
    questions = [np.asarray(embedder.embed([q for q, _, _ in load_set(name)[1]]),
                            dtype=np.float32) for name in QUESTION_SETS]
    out = pool_path(stores, embedder_name)
    np.savez(out, passages=passages, questions=np.concatenate(questions))
    print(f"{out}: {len(passages):,} passages x {passages.shape[1]}, "
          f"{sum(len(q) for q in questions):,} questions")
    return out


def load_pool(path: Path) -> tuple[Matrix, Matrix]:
    """(passages, questions) of a pool file; ValueError if they are not two matrices of one
    width."""
    with np.load(path) as data:
        passages = np.asarray(data["passages"], dtype=np.float32)
        questions = np.asarray(data["questions"], dtype=np.float32)
    if passages.ndim != 2 or questions.ndim != 2 or passages.shape[1] != questions.shape[1]:
        raise ValueError("passages and questions are not matrices of one width")
    return passages, questions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stores", type=Path, required=True,
                    help="the folder bench.quality.sets --candidates kept its indexes in")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--embedder", default="minilm-onnx-int8")
    args = ap.parse_args()
    if args.rows < 1:
        ap.error("--rows must be positive")
    if not args.stores.is_dir():
        ap.error(f"--stores {args.stores}: not a folder")
    build(args.stores, args.embedder, args.rows)


if __name__ == "__main__":
    main()
