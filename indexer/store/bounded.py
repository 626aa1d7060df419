"""Cluster-bounded dense search: on an index whose vectors form tight clusters, a broad
caller's best rows are found by reading only the clusters that could hold them.

Rows are arranged by IVF cluster (indexer/store/ivf.py). For a row x of cluster j with unit
centroid c, write x = a·c + r with r ⟂ c, and split r along the cluster's main residual
direction u (u ⟂ c, its top principal direction): r = b·u + r⊥. For a query q with s = q·c,
t = q·u and q⊥ the rest of q,

    q·x = a·s + b·t + q⊥·r⊥,

where the first two terms are bounded exactly per cluster by the least and largest a and b of
its rows. For the third, |q⊥·r⊥| <= |q⊥|·|r⊥| holds always but is loose in high dimensions;
when the rest of a cluster's residuals is isotropic (no direction preferred), q⊥·r⊥ over its
rows has standard deviation |q⊥|·σ with σ² = mean |r⊥|² / (dim - 2), and no row reaches
|q⊥|·σ·Z for a large Z. A cluster's bound is the sum, with min(|r⊥|max, Z·σ) for the third
term; clusters are read best bound first until the next bound is below the k-th best exact
score found so far, every row read scored exactly in float32.

The third term is a statistical claim about the index, so it is checked, never assumed:
- each cluster's rest is tested for isotropy: its top principal variance must stay within
  ANISOTROPY times the Marchenko-Pastur edge σ²(1 + sqrt((dim - 2) / n))² that n isotropic
  rows reach by chance; a cluster that fails, or has fewer than MIN_LIST rows, and every row
  whose residual is longer than OUTLIER times its cluster's median, is `loose`: scored
  exactly by every query. More than 1/LOOSE_SHARE of the rows loose: the path is off;
- before any of that, `accept` (given to ivf.train_accepted) scores test queries (rows outside
  the training sample) against the sample and refuses the clustering when any row's
  |q'·r| / (|q'|·σ) exceeds GATE (isotropic residuals stay near 5 over that many pairs; real
  MiniLM passages reach 12-21, so on real text this path is off and the first pass answers);
- at query time every row read is checked the same way (CHECK); a query that finds a row past
  it is answered by the first pass instead, and so is one that would read more than
  1/READ_SHARE of the rows.
What this costs and finds: bench/RESULTS.md (session 16), bench/peers.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from indexer.store import ivf

MIN_ROWS = 50_000  # smaller indexes are not clustered for this (the float32 scan is fast there)
Z = 8.0  # standard deviations of a residual's projection allowed for in a cluster's bound
GATE = 6.0  # the self-test's largest projection, in those deviations, for the path to be used
CHECK = 6.5  # a query finding a row past this many deviations falls back to the first pass
MIN_LIST = 24  # rows of smaller clusters are loose: every query scores them
OUTLIER = 1.25  # a row whose |r| passes this many times its cluster's median |r| is loose
ANISOTROPY = 1.5  # a cluster's rest past this many times the isotropic edge is loose
POWER_STEPS = 12  # power-iteration steps for a cluster's top residual directions
LOOSE_SHARE = 32  # more than 1/LOOSE_SHARE of the rows loose: the path is not used
SAMPLE_LIST = 8  # the self-test's sample (ivf.SAMPLE_PER_LIST rows a cluster): smaller is loose
TEST_QUERIES = 32  # rows outside the training sample used as the self-test's queries
READ_SHARE = 8  # a query that would read more than 1/READ_SHARE of the rows falls back

Vector = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Bounds:
    """Per cluster of a layout: `axes` its centroid and main residual direction stacked
    ((2 x lists, dim): centroids first), the least and largest a and b of its typical rows,
    the rest's bound min(|r⊥|max, Z·σ) and σ (0: a loose cluster). Per arranged row: a, b and
    whether it is typical; `loose` the other rows, scored exactly by every query from their
    contiguous copy `loose_rows` (at 100k, 200 rows gathered cold took 114 µs, copied 45)."""
    axes: Vector
    low: Vector
    high: Vector
    side_low: Vector
    side_high: Vector
    reach: Vector
    sigma: Vector
    along: Vector
    beside: Vector
    typical: npt.NDArray[np.bool_]
    loose: Rows
    loose_rows: Vector


def _medians(values: npt.NDArray[np.float64], lists: Rows, k: int) -> npt.NDArray[np.float64]:
    counts = np.bincount(lists, minlength=k)
    if not len(values):
        return np.zeros(k)
    order = np.lexsort((values, lists))
    starts = np.concatenate([[0], np.cumsum(counts)])[:-1]
    picked = values[order[np.minimum(starts + counts // 2, len(order) - 1)]]
    return np.where(counts > 0, picked, 0.0)


def _typical(rows: Vector, lists: Rows, centroids: Vector, least: int = MIN_LIST
             ) -> tuple[Vector, npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """a per row, |r|² per row, and whether the row is typical by size (its list has `least`
    rows, its |r| at most OUTLIER times the list's median)."""
    k = len(centroids)
    along = np.einsum("ij,ij->i", rows, centroids[lists]).astype(np.float32)
    resid2 = np.maximum(np.einsum("ij,ij->i", rows, rows) - along.astype(np.float64) ** 2, 0)
    counts = np.bincount(lists, minlength=k)
    median2 = _medians(resid2, lists, k)
    typical = (counts[lists] >= least) & (resid2 <= OUTLIER ** 2 * median2[lists])
    return along, resid2, typical


def _power(block: Vector, rng: np.random.Generator) -> tuple[Vector, float]:
    """The top right singular direction of `block` (power iteration) and the variance
    along it, mean (block·u)²."""
    u = np.asarray(rng.standard_normal(block.shape[1]), dtype=np.float32)
    for _ in range(POWER_STEPS):
        w = block.T @ (block @ u)
        norm = float(np.linalg.norm(w))
        if norm == 0:
            break
        u = (w / norm).astype(np.float32)
    u = (u / max(float(np.linalg.norm(u)), 1e-30)).astype(np.float32)
    return u, float(np.mean((block @ u) ** 2))


def accept(matrix: Vector, sample: Vector, picked: npt.NDArray[np.bool_],
           centroids: Vector, seed: int = 0) -> bool:
    """Whether the sample's residuals look isotropic enough for the statistical bound: the
    largest |q'·r| / (|q'|·σ) over TEST_QUERIES rows outside the sample and every typical
    sample row stays under GATE (σ here over the whole residual, a cheaper test than the
    one `bounds` makes of every cluster)."""
    outside = np.flatnonzero(~picked)
    if len(outside) == 0 or len(sample) < MIN_LIST:
        return False
    rng = np.random.default_rng(seed + 1)
    queries = matrix[np.sort(rng.choice(outside, min(TEST_QUERIES, len(outside)),
                                        replace=False))]
    k, dim = centroids.shape
    lists = np.argmax(sample @ centroids.T, axis=1).astype(np.int64)
    along, resid2, use = _typical(sample, lists, centroids, SAMPLE_LIST)
    if int(use.sum()) * LOOSE_SHARE < len(sample) * (LOOSE_SHARE - 1):
        return False  # more than 1/LOOSE_SHARE of the rows would be loose
    mean2 = (np.bincount(lists[use], weights=resid2[use], minlength=k)
             / np.maximum(np.bincount(lists[use], minlength=k), 1))
    sigma = np.sqrt(mean2 / max(dim - 1, 1))
    rows, lists, along = sample[use], lists[use], along[use]
    for q in queries:
        s = centroids @ q
        spread = np.sqrt(np.maximum(float(q @ q) - s * s, 0)) * sigma
        z = (rows @ q - along * s[lists]) / np.maximum(spread[lists], 1e-30)
        if float(np.abs(z).max()) > GATE:
            return False
    return True


def bounds(layout: ivf.Layout, matrix: Vector, seed: int = 0) -> Bounds | None:
    """The bounds of `layout`'s clusters over the rows it arranged (rows past it are the tail,
    scanned exactly), or None when more than 1/LOOSE_SHARE of them would be loose."""
    indexed = int(layout.offsets[-1])
    centroids = layout.centroids
    k, dim = centroids.shape
    rows = matrix[:indexed]
    lists = np.repeat(np.arange(k), np.diff(layout.offsets)).astype(np.int64)
    along, resid2, typical = _typical(rows, lists, centroids)
    rng = np.random.default_rng(seed)
    sides = np.zeros((k, dim), dtype=np.float32)
    beside = np.zeros(indexed, dtype=np.float32)
    low, high = np.zeros(k, np.float32), np.zeros(k, np.float32)
    side_low, side_high = np.zeros(k, np.float32), np.zeros(k, np.float32)
    reach, sigma = np.zeros(k, np.float32), np.zeros(k, np.float32)
    for c in range(k):
        start, end = int(layout.offsets[c]), int(layout.offsets[c + 1])
        keep = np.flatnonzero(typical[start:end]) + start
        if len(keep) < MIN_LIST:
            typical[start:end] = False
            continue
        resid = rows[keep] - along[keep, None] * centroids[c]
        u, _ = _power(resid, rng)
        u -= (u @ centroids[c]) * centroids[c]  # r ⟂ c, so u is too, but for rounding
        u /= max(float(np.linalg.norm(u)), 1e-30)
        b = resid @ u
        rest = resid - b[:, None] * u
        _, top = _power(rest, rng)
        rest2 = np.maximum(resid2[keep] - b.astype(np.float64) ** 2, 0)
        var = float(rest2.mean()) / max(dim - 2, 1)
        edge = var * (1 + np.sqrt(max(dim - 2, 1) / len(keep))) ** 2
        if top > ANISOTROPY * edge:
            typical[start:end] = False
            continue
        sides[c], beside[keep] = u, b
        low[c], high[c] = along[keep].min(), along[keep].max()
        side_low[c], side_high[c] = b.min(), b.max()
        sigma[c] = np.sqrt(var)
        reach[c] = min(float(np.sqrt(rest2.max())), Z * float(sigma[c]))
    loose = np.flatnonzero(~typical).astype(np.int64)
    if len(loose) * LOOSE_SHARE > indexed:
        return None
    axes = np.ascontiguousarray(np.vstack([centroids, sides]), dtype=np.float32)
    return Bounds(axes, low, high, side_low, side_high, reach, sigma, along, beside,
                  typical, loose, np.ascontiguousarray(rows[loose], dtype=np.float32))


def search(layout: ivf.Layout, held: Bounds, matrix: Vector, readable: npt.NDArray[np.bool_],
           vector: Vector, take: int) -> tuple[Rows, Vector] | None:
    """Rows and exact scores holding the best `take` readable rows (the clusters that could
    hold one, the loose rows and the tail written since the layout), or None: the layout does
    not fit, a row read broke the residual model, or the bound would read too many rows (the
    caller uses its other paths)."""
    indexed = int(layout.offsets[-1])
    if (indexed > len(matrix) or len(readable) != len(matrix) or len(held.along) != indexed
            or take < 1):
        return None
    k = len(layout.centroids)
    st = held.axes @ vector
    s, t = st[:k], st[k:]
    rest = np.sqrt(np.maximum(float(vector @ vector) - s * s - t * t, 0))
    bound = (np.maximum(held.low * s, held.high * s)
             + np.maximum(held.side_low * t, held.side_high * t) + rest * held.reach)
    bound[held.sigma == 0] = -np.inf  # empty or loose clusters: their rows are in `loose`
    found_rows: list[Rows] = []
    found_scores: list[Vector] = []
    best = np.full(take, -np.inf, dtype=np.float32)  # the best `take` scores so far, unordered

    def keep(rows: Rows, scores: Vector) -> None:
        nonlocal best
        found_rows.append(rows)
        found_scores.append(scores)
        merged = np.concatenate([best, scores])
        best = merged[np.argpartition(-merged, take - 1)[:take]]

    # the loose rows and the rows written since the layout: scanned exactly
    if len(held.loose):
        mine = readable[held.loose]
        if mine.any():
            keep(held.loose[mine], (held.loose_rows @ vector)[mine])
    if indexed < len(matrix):
        tail = np.flatnonzero(readable[indexed:]) + indexed
        if len(tail):
            keep(tail.astype(np.int64), matrix[tail] @ vector)
    budget = max(len(matrix) // READ_SHARE, 1)
    spent = len(held.loose) + len(matrix) - indexed
    for c in np.argsort(-bound, kind="stable"):
        if bound[c] == -np.inf or bound[c] < best.min():
            break
        start, end = int(layout.offsets[c]), int(layout.offsets[c + 1])
        spent += end - start
        if spent > budget:
            return None
        rows = np.flatnonzero(readable[start:end] & held.typical[start:end]) + start
        if not len(rows):
            continue
        scores = matrix[rows] @ vector
        if rest[c] > 0:
            left = scores - held.along[rows] * s[c] - held.beside[rows] * t[c]
            if float(np.abs(left).max()) > CHECK * rest[c] * float(held.sigma[c]):
                return None
        keep(rows.astype(np.int64), scores)
    if sum(len(r) for r in found_rows) < take:
        return None
    return np.concatenate(found_rows), np.concatenate(found_scores)
