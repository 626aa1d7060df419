"""The first pass of the embedded store's dense search for broad callers over a large matrix.

Scoring every vector in float32 is memory-bound: at 100k chunks x 384 dimensions the matrix is
147 MB and one query reads all of it. This pass reads 4 % of that. Each row is projected onto
the matrix's own top `DIMS` principal directions (uncentred: the eigenvectors of XᵀX, so
q·x ≈ (Pᵀq)·(Pᵀx) with no mean term) and stored as 4-bit codes with one scale per `BLOCK`
values (onnxruntime's `MatMulNBits`, com.microsoft, int8 arithmetic: `accuracy_level` 4).
One onnxruntime call projects the query, scores every row, adds the caller's bias (0 for a
readable row, -inf for any other, so an unreadable row is never a candidate) and reads, from a
strided sample of the rows (one in `step`, about `QUANTILE_ROWS` of them), the score about
`count` readable rows reach; numpy keeps the rows at or above it (a `TopK` over every row cost
as much as the product itself: 237 µs of 609 at 100k, against ~40 µs for the sample and the
cut). The candidate count is an estimate, not a promise: what the store relies on is the
`bound` every readable row left out scores below. The store then rescores the candidates
exactly in float32, so the order it returns is the exact order of the candidates. A true
top-k row is missed only if the projection and the rounding move it below the bound; how many
candidates that takes grows with the rows (at 1M synthetic rows a reader of 81 % needed up to
2,287 where 300 sufficed at 100k), so the store starts from a share of the caller's rows and
asks for more until `enough` says the rescored set is wide enough.

Measured (bench/ivf_recall.py, 32,557 real passages of five labelled sets, 1,772 questions):
recall@10 against the exact scan 0.9997 / 0.9999 for a caller reading every passage / 40 %
with the store's rule (at least 300 to start, widened by `enough`; a fixed ~200: 0.9977; the
int8 copy of every dimension this replaced: 0.9999; FAISS HNSW, ef 256 / 512 / 1024: 0.9925 /
0.9981 / 0.9993). The codes take 68 bytes a row (6.8 MB at 100k, against 2 x 38 MB for that
int8 copy); speed in bench/RESULTS.md (bench/peers.py). Built per matrix generation, only
above `MIN_ROWS` rows, and never required: any failure leaves the float32 scan in charge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

MIN_ROWS = 50_000  # below this the float32 product is fast enough and the build not worth it
DIMS = 128  # principal directions kept (all of them for a smaller embedding)
BLOCK = 128  # values per 4-bit scale (one scale per row at 128 directions)
SAMPLE = 65_536  # rows the principal directions are computed from
CHUNK = 16_384  # rows projected and quantised at a time (bounds the build's extra memory)
MARGIN = 4.0  # standard deviations of the pass's error the rescored set must clear (enough)
GROWTH = 4  # a rescored set too narrow: this many times as many candidates next round
SCAN = 16  # past 1/SCAN of the readable rows, the exact product over all of them is cheaper
QUANTILE_ROWS = 8192  # rows sampled (strided) for the score about `count` readable rows reach
CAP = 4  # the sample's estimate let in more than CAP x count rows: only the best of them kept

Vector = npt.NDArray[np.float32]


def basis(matrix: Vector, dims: int, rng: np.random.Generator | None = None) -> Vector:
    """The top `dims` eigenvectors of XᵀX (columns, float32), from up to SAMPLE rows."""
    rows, dim = matrix.shape
    if dims >= dim:
        return np.eye(dim, dtype=np.float32)
    sample = matrix
    if rows > SAMPLE:
        pick = (rng or np.random.default_rng(0)).choice(rows, SAMPLE, replace=False)
        sample = matrix[np.sort(pick)]
    gram = sample.T.astype(np.float64) @ sample.astype(np.float64)
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :dims], dtype=np.float32)


def quantise(projected: Vector, block: int) -> tuple[npt.NDArray[np.uint8], Vector]:
    """4-bit symmetric codes (zero point 8, two per byte, low nibble first) and one scale per
    block of `block` values, in MatMulNBits' layout: [rows, blocks, block / 2] and
    [rows * blocks]. The width must be a multiple of `block`."""
    rows, width = projected.shape
    blocks = projected.reshape(rows, width // block, block)
    scale = np.abs(blocks).max(axis=2) / 7.0
    scale[scale == 0] = 1.0  # an all-zero block: codes 8 (zero) whatever the scale
    codes = (np.clip(np.rint(blocks / scale[:, :, None]), -8, 7) + 8).astype(np.uint8)
    packed = codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)
    return np.ascontiguousarray(packed, dtype=np.uint8), scale.astype(np.float32).reshape(-1)


@dataclass
class Candidates:
    """Rows (ascending) whose bias is 0 and whose approximate score reached the pass's cut,
    their approximate scores, and `bound`: every readable row not among them scores at most
    this in the pass (-inf: none was left out)."""
    rows: npt.NDArray[np.int64]
    approx: Vector
    bound: float


class FirstPass:
    """`candidates(q, bias, count)`: about the best `count` rows by the approximate score
    among those whose bias is 0 (`Candidates`)."""

    def __init__(self, matrix: Vector, dims: int = DIMS, block: int = BLOCK) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from onnx import TensorProto, helper, numpy_helper

        rows, dim = matrix.shape
        self.rows = rows
        self.step = max(1, rows // QUANTILE_ROWS)
        self.sampled = -(-rows // self.step)  # rows in the strided sample
        proj = basis(matrix, dims)
        width = -(-proj.shape[1] // block) * block  # padded with zero directions to blocks
        if width != proj.shape[1]:
            proj = np.hstack([proj, np.zeros((dim, width - proj.shape[1]), np.float32)])
        packed = np.empty((rows, width // block, block // 2), dtype=np.uint8)
        scales = np.empty(rows * (width // block), dtype=np.float32)
        per_row = width // block
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            codes, scale = quantise(matrix[start:stop] @ proj, block)
            packed[start:stop] = codes
            scales[start * per_row:stop * per_row] = scale
        nodes = [
            helper.make_node("MatMul", ["A", "P"], ["Ap"]),
            helper.make_node("MatMulNBits", ["Ap", "B", "S"], ["Y"], domain="com.microsoft",
                             K=width, N=rows, bits=4, block_size=block, accuracy_level=4),
            helper.make_node("Add", ["Y", "bias"], ["Yb"]),
            helper.make_node("Slice", ["Yb", "zero", "end", "one", "step"], ["Ys"]),
            helper.make_node("TopK", ["Ys", "count"], ["Vs", "Is"], axis=1),
            helper.make_node("ReduceMin", ["Vs"], ["cut"], keepdims=0),
        ]
        graph = helper.make_graph(
            nodes, "firstpass",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, dim]),
             helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1, rows]),
             helper.make_tensor_value_info("count", TensorProto.INT64, [1])],
            [helper.make_tensor_value_info("Yb", TensorProto.FLOAT, [1, rows]),
             helper.make_tensor_value_info("cut", TensorProto.FLOAT, [])],
            [numpy_helper.from_array(proj, "P"), numpy_helper.from_array(packed, "B"),
             numpy_helper.from_array(scales, "S"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([rows], np.int64), "end"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([self.step], np.int64), "step")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        # One thread: the web server runs one store per request thread (apps/runtime.py).
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(model.SerializeToString(), options,
                                                  providers=["CPUExecutionProvider"])

    def candidates(self, vector: Vector, bias: Vector, count: int) -> Candidates | None:
        """About the best `count` rows with bias 0 (the sample's estimate: fewer or more, at
        most CAP x count) and the bound on the rest; None if onnxruntime failed (logged)."""
        count = max(1, min(count, self.rows))
        # the count-th best of all rows is about the (count x sampled / rows)-th of the sample
        keep = min(self.sampled, -(-count * self.sampled // self.rows))
        try:
            scores, cut = self._session.run(None, {
                "A": np.asarray(vector, dtype=np.float32)[None, :],
                "bias": bias[None, :], "count": np.array([keep], dtype=np.int64)})
        except _errors() as exc:
            log.warning("dense search: first pass failed (%s); scanning in float32",
                        type(exc).__name__)
            return None
        scores, bound = scores[0], float(cut)
        if np.isfinite(bound):
            rows = np.flatnonzero(scores >= bound)
        else:  # the sample ran out of readable rows before `keep`: every readable row passes
            rows, bound = np.flatnonzero(np.isfinite(scores)), -np.inf
        approx = scores[rows]
        if len(rows) > CAP * count:  # an estimate far off (a sample unlike the rows): the best
            order = np.argpartition(-approx, CAP * count)
            bound = float(approx[order[CAP * count]])
            kept = np.sort(order[:CAP * count])
            rows, approx = rows[kept], approx[kept]
        return Candidates(rows.astype(np.int64), approx.astype(np.float32), bound)


@dataclass
class Found:
    """What `search` found: candidate rows and their exact scores, or (rows None) the word to
    score every readable row exactly instead; `asked`: candidates asked in the last round."""
    rows: npt.NDArray[np.int64] | None
    scores: Vector | None
    asked: int
    rounds: int


def search(first: FirstPass, matrix: Vector, vector: Vector, bias: Vector, take: int,
           start: int, readable: int, others: Vector | None = None) -> Found | None:
    """The best of `first`'s candidates for `vector` (rows with bias 0), rescored against
    `matrix`, starting from about `start` candidates and GROWTH times more each round until
    `enough` holds, every one of the `readable` rows came back, or the next round would pass
    1/SCAN of them (Found with rows None: scan those instead). `others`: exact scores of
    readable rows outside the pass. None: the pass failed (logged)."""
    wanted, rounds = max(1, start), 0
    while True:
        got = first.candidates(vector, bias, wanted)
        rounds += 1
        if got is None:
            return None
        exact = matrix[got.rows] @ vector
        if (got.bound == -np.inf or len(got.rows) >= readable
                or enough(exact, got.approx, got.bound, take, others)):
            return Found(got.rows, exact, wanted, rounds)
        wanted *= GROWTH
        if wanted * SCAN >= readable:
            return Found(None, None, wanted, rounds)


def enough(exact: Vector, approx: Vector, bound: float, take: int,
           others: Vector | None = None) -> bool:
    """Whether candidates, rescored, hold the true best `take` with confidence.

    `approx` are the candidates' first-pass scores, `exact` their float32 scores, `bound` the
    most a readable row left out scored in the pass, `others` exact scores of rows outside the
    pass (appended since it was built). A row left out belongs in the top `take` only if its
    error (exact minus approximate) reaches the gap between the take-th exact score and
    `bound`. The candidates' own errors measure the pass's error here (it depends on the
    matrix and the query, not on the index's size); the gap must be MARGIN standard
    deviations above their mean. Only the true top rows can be missed, a handful, so a wide
    margin is cheap: at 1M synthetic rows every candidate set that passed held the whole true
    top 10, and every one that missed a row scored below 3.2 (bench/RESULTS.md, session 13)."""
    scores = exact if others is None or not len(others) else np.concatenate([exact, others])
    if len(scores) < take or not len(approx):
        return False
    kth = float(np.partition(scores, len(scores) - take)[len(scores) - take])
    error = exact.astype(np.float64) - approx
    return kth - bound - float(error.mean()) >= MARGIN * float(error.std())


def _errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises (its own classes derive from Exception, not RuntimeError)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state  # type: ignore[import-untyped]
    except ImportError:
        return (ImportError, MemoryError, ValueError)
    return (ImportError, MemoryError, ValueError, RuntimeError, state.Fail,
            state.InvalidArgument, state.RuntimeException, state.NotImplemented,
            state.InvalidGraph)


def build(matrix: Vector) -> FirstPass | None:
    """The first pass over `matrix`, or None (too small, onnxruntime missing or failing)."""
    if matrix.ndim != 2 or matrix.shape[0] < MIN_ROWS:
        return None
    try:
        return FirstPass(matrix)
    except _errors() as exc:
        log.warning("dense search: first pass unavailable (%s); scanning in float32",
                    type(exc).__name__)
        return None
