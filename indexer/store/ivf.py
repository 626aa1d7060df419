"""An inverted-file (IVF) layout for the embedded store's dense search over a large index.

A broad caller's exact scan reads every vector (147 MB at 100k x 384). Here the rows are
clustered by spherical k-means, trained deterministically on a sample, and the store keeps
its matrix sorted by cluster so each cluster's rows are one contiguous slice. A query scores
the centroids, then only the rows of the `nprobe` nearest clusters, exactly in float32, with
the caller's ACL mask applied inside each slice: the scores returned are exact, and a true
top-k row is missed only if it lives in a cluster outside the probe (bench/peers.py reports
recall@10 against the exact scan for several `nprobe` on synthetic vectors, bench/ivf_recall.py
on real embeddings; the store uses this layout only when `[store] dense_search = "ivf"`).

Writes never retrain on their own: a training is kept across matrix generations, and when the
store reloads its vectors each row keeps the cluster it was trained into (recognised by chunk
id and a fingerprint of its vector, so a reused id with a new vector counts as new), while new
rows go to their nearest centroid. Only when more than `RETRAIN_SHARE` of the rows are new or
gone since the training is it redone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MIN_ROWS = 50_000  # below this the exact scan is fast enough; small indexes stay exact
RETRAIN_SHARE = 0.2  # retrain once this share of rows is new or deleted since training
# Clusters probed per query: ~7.6 % of the rows at 100k. Recall@10 is 1.000 on bench/peers.py's
# synthetic clusters but ~0.91 on real MiniLM embeddings (bench/ivf_recall.py), which is why
# the IVF is opt-in (`[store] dense_search = "ivf"`, `ivf_nprobe`).
NPROBE = 24
SAMPLE_PER_LIST = 40  # k-means training rows per cluster
SEED_PER_LIST = 8  # farthest-first seeds are picked among this many rows per cluster
ITERATIONS = 8


@dataclass(frozen=True)
class Training:
    """Centroids and the cluster of every row they were trained on."""

    centroids: npt.NDArray[np.float32]  # (lists, dim), unit rows
    chunk_ids: npt.NDArray[np.int64]  # ascending
    fingerprints: npt.NDArray[np.float32]  # (rows, 2): first two components of each vector
    lists: npt.NDArray[np.int32]


@dataclass(frozen=True)
class Layout:
    """One matrix generation's arrangement: `order[i]` is the chunk-id-sorted row placed at i;
    cluster c's rows are `offsets[c]:offsets[c + 1]`."""

    centroids: npt.NDArray[np.float32]
    order: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    changed: int  # rows new or deleted since the training


def list_count(rows: int) -> int:
    return int(min(4096, max(8, round(np.sqrt(rows)))))


def _nearest(matrix: npt.NDArray[np.float32], centroids: npt.NDArray[np.float32],
             block: int = 8192) -> npt.NDArray[np.int32]:
    out = np.empty(len(matrix), dtype=np.int32)
    for start in range(0, len(matrix), block):
        out[start:start + block] = np.argmax(matrix[start:start + block] @ centroids.T, axis=1)
    return out


def train(matrix: npt.NDArray[np.float32], chunk_ids: npt.NDArray[np.int64],
          lists: int | None = None, seed: int = 0) -> Training:
    """Spherical k-means on a seeded sample; the same rows give the same clusters."""
    training = train_accepted(matrix, chunk_ids, lambda *_: True, lists, seed)
    assert training is not None
    return training


Accept = Callable[[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.float32]],
                  bool]


def train_accepted(matrix: npt.NDArray[np.float32], chunk_ids: npt.NDArray[np.int64],
                   accept: Accept, lists: int | None = None, seed: int = 0,
                   spread: bool = False) -> Training | None:
    """`train`, but `accept(sample, picked, centroids)` sees the clustering of the sample (the
    rows `picked` marks) before every row is assigned to it, and can refuse it (None).
    `spread`: farthest-first seeds (_farthest) instead of random rows."""
    n = len(matrix)
    k = min(lists or list_count(n), n)
    rng = np.random.default_rng(seed)
    picked = np.zeros(n, dtype=bool)
    picked[rng.choice(n, size=min(n, SAMPLE_PER_LIST * k), replace=False)] = True
    sample = matrix[picked]
    centroids = _kmeans(sample, k, rng, spread)
    if not accept(sample, picked, centroids):
        return None
    return Training(centroids, chunk_ids.copy(), _fingerprint(matrix), _nearest(matrix, centroids))


def without_small(training: Training, matrix: npt.NDArray[np.float32], least: int) -> Training:
    """`training` with every list of fewer than `least` rows dropped and its rows moved to
    their nearest remaining centroid (farthest-first seeds include outliers, whose lists stay
    tiny: 20 lists of 202 rows at bench/peers.py's 100k)."""
    counts = np.bincount(training.lists, minlength=len(training.centroids))
    kept = np.flatnonzero(counts >= least)
    if len(kept) == len(counts) or not len(kept):
        return training
    lists = np.searchsorted(kept, training.lists).astype(np.int32)  # kept lists renumbered
    moved = np.flatnonzero(counts[training.lists] < least)
    centroids = np.ascontiguousarray(training.centroids[kept])
    lists[moved] = _nearest(matrix[moved], centroids)
    return Training(centroids, training.chunk_ids, training.fingerprints, lists)


def _kmeans(sample: npt.NDArray[np.float32], k: int, rng: np.random.Generator,
            spread: bool = False) -> npt.NDArray[np.float32]:
    if spread:
        centroids = _farthest(sample, k, rng)
    else:
        centroids = sample[rng.choice(len(sample), size=k, replace=False)].copy()
    for _ in range(ITERATIONS):
        assigned = _nearest(sample, centroids)
        sums = _sums(sample, assigned, k)
        empty = np.flatnonzero(np.bincount(assigned, minlength=k) == 0)
        sums[empty] = sample[rng.choice(len(sample), size=len(empty), replace=False)]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.where(norms == 0, 1, norms)).astype(np.float32)
    return centroids


def _sums(rows: npt.NDArray[np.float32], lists: npt.NDArray[np.int32],
          k: int) -> npt.NDArray[np.float32]:
    """Per list, the sum of its rows (np.add.at took a second a round at 40k x 384)."""
    order = np.argsort(lists, kind="stable")
    counts = np.bincount(lists, minlength=k)
    sums = np.zeros((k, rows.shape[1]), dtype=np.float32)
    present = np.flatnonzero(counts)
    if len(present):
        starts = np.concatenate([[0], np.cumsum(counts)])[present]
        sums[present] = np.add.reduceat(rows[order], starts, axis=0)
    return sums


def _farthest(sample: npt.NDArray[np.float32], k: int,
              rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Farthest-first seeds for unit rows: after a random first row, each next seed is the row
    least similar to every seed chosen so far, so a tight cluster gets a seed before any
    cluster gets a second one (k-means++ leaves about a fifth of bench/peers.py's 256 clusters
    without a seed of their own at 316 lists: in 384 dimensions a row of another cluster is
    only 1.5x as far as one of its own)."""
    if len(sample) > SEED_PER_LIST * k:  # a subsample small enough to stay in cache
        sample = sample[np.sort(rng.choice(len(sample), SEED_PER_LIST * k, replace=False))]
    chosen = [int(rng.integers(len(sample)))]
    nearest = sample @ sample[chosen[0]]
    for _ in range(1, k):
        pick = int(np.argmin(nearest))
        chosen.append(pick)
        np.maximum(nearest, sample @ sample[pick], out=nearest)
    return sample[chosen].copy()


def _fingerprint(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(matrix[:, :2], dtype=np.float32).copy()


def arrange(training: Training, matrix: npt.NDArray[np.float32],
            chunk_ids: npt.NDArray[np.int64]) -> Layout:
    """Clusters for the current rows (`chunk_ids` ascending): trained rows keep theirs, new
    or rewritten rows go to their nearest centroid."""
    lists = np.empty(len(chunk_ids), dtype=np.int32)
    at = np.searchsorted(training.chunk_ids, chunk_ids)
    at_ok = np.minimum(at, max(len(training.chunk_ids) - 1, 0))
    known = ((at < len(training.chunk_ids)) & (training.chunk_ids[at_ok] == chunk_ids)
             & np.all(training.fingerprints[at_ok] == _fingerprint(matrix), axis=1))
    lists[known] = training.lists[at_ok[known]]
    fresh = np.flatnonzero(~known)
    if len(fresh):
        lists[fresh] = _nearest(matrix[fresh], training.centroids)
    kept = int(known.sum())
    order = np.argsort(lists, kind="stable").astype(np.int64)
    counts = np.bincount(lists, minlength=len(training.centroids))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    changed = (len(chunk_ids) - kept) + (len(training.chunk_ids) - kept)
    return Layout(training.centroids, order, offsets, changed)


def stale(layout: Layout, rows: int) -> bool:
    return layout.changed > RETRAIN_SHARE * max(rows, 1)


def search(layout: Layout, matrix: npt.NDArray[np.float32], readable: npt.NDArray[np.bool_],
           vector: npt.NDArray[np.float32], nprobe: int,
           take: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]] | None:
    """Rows (in the arranged matrix) and exact scores of the best readable rows among the
    `nprobe` clusters nearest `vector` and the unclustered tail past them, or None when fewer
    than `take` readable rows were probed or the layout does not fit the matrix (the caller
    scans exactly instead)."""
    indexed = int(layout.offsets[-1])
    if indexed > len(matrix) or len(readable) != len(matrix):
        return None
    near = layout.centroids @ vector
    probe = min(nprobe, len(near))
    chosen = np.argpartition(-near, probe - 1)[:probe]
    found_rows: list[npt.NDArray[np.int64]] = []
    found_scores: list[npt.NDArray[np.float32]] = []
    for c in chosen:
        start, end = int(layout.offsets[c]), int(layout.offsets[c + 1])
        if start == end:
            continue
        keep = np.flatnonzero(readable[start:end])
        if len(keep) == 0:
            continue
        scores = matrix[start:end] @ vector
        found_rows.append(keep + start)
        found_scores.append(scores[keep])
    if indexed < len(matrix):  # rows written since the layout: scanned exactly
        keep = np.flatnonzero(readable[indexed:])
        found_rows.append(keep + indexed)
        found_scores.append(matrix[indexed:][keep] @ vector)
    if sum(len(r) for r in found_rows) < take:
        return None
    rows, scores = np.concatenate(found_rows), np.concatenate(found_scores)
    top = np.argpartition(-scores, take - 1)[:take]
    return rows[top], scores[top]
