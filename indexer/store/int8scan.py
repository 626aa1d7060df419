"""An int8 first pass for the embedded store's dense search over a large matrix.

Scoring every vector is memory-bound: at 100k chunks x 384 dimensions the float32 matrix is
147 MB and one query reads all of it. A copy quantised to int8 per row (scale = the row's
largest magnitude / 127) is a quarter of that; onnxruntime's `DynamicQuantizeMatMul`
(com.microsoft) multiplies the query by it with MLAS's int8 kernels, the weights prepacked
once when the session is made. The store then rescores the best candidates exactly in float32,
so the order it returns is the exact order of those candidates; a true top-k row is missed only
if int8 rounding moves it below `candidates` others, which per-row scaling keeps far below the
score gaps of real embeddings (bench/peers.py reports recall@10 against the exact scan).

Measured at 100k x 384 (bench/peers.py, one run): the int8 product is ~4x faster than numpy's
float32 one. Built per matrix generation (the session holds its own packed copy), only above
`MIN_ROWS` rows, and never required: any failure leaves the float32 scan in charge.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

MIN_ROWS = 50_000  # below this the float32 product is fast enough and the build not worth it


class Int8Scan:
    """`scores(q)`: approximate `matrix @ q` for every row, from an int8 copy."""

    def __init__(self, matrix: npt.NDArray[np.float32]) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from onnx import TensorProto, helper, numpy_helper

        rows, dim = matrix.shape
        scale = (np.abs(matrix).max(axis=1) / 127.0).astype(np.float32)
        scale[scale == 0] = 1.0
        quantised = np.clip(np.rint(matrix / scale[:, None]), -127, 127).astype(np.int8)
        weights = [numpy_helper.from_array(np.ascontiguousarray(quantised.T), "B"),
                   numpy_helper.from_array(scale, "S"),
                   numpy_helper.from_array(np.zeros(rows, dtype=np.int8), "Z")]
        node = helper.make_node("DynamicQuantizeMatMul", ["A", "B", "S", "Z"], ["Y"],
                                domain="com.microsoft")
        graph = helper.make_graph(
            [node], "int8scan", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, dim])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, rows])], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        # One thread: the web server runs one store per request thread (apps/runtime.py).
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(model.SerializeToString(), options,
                                                  providers=["CPUExecutionProvider"])

    def scores(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """Approximate scores of every row, or None if onnxruntime failed (logged)."""
        try:
            out = self._session.run(None, {"A": np.asarray(vector, dtype=np.float32)[None, :]})
        except _errors() as exc:
            log.warning("dense search: int8 first pass failed (%s); scanning in float32",
                        type(exc).__name__)
            return None
        return np.asarray(out[0][0], dtype=np.float32)


def _errors() -> tuple[type[BaseException], ...]:
    """What onnxruntime raises (its own classes derive from Exception, not RuntimeError)."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state  # type: ignore[import-untyped]
    except ImportError:
        return (ImportError, MemoryError, ValueError)
    return (ImportError, MemoryError, ValueError, RuntimeError, state.Fail,
            state.InvalidArgument, state.RuntimeException, state.NotImplemented,
            state.InvalidGraph)


def build(matrix: npt.NDArray[np.float32]) -> Int8Scan | None:
    """The int8 scan of `matrix`, or None (too small, onnxruntime missing or failing)."""
    if matrix.ndim != 2 or matrix.shape[0] < MIN_ROWS:
        return None
    try:
        return Int8Scan(matrix)
    except _errors() as exc:
        log.warning("dense search: int8 first pass unavailable (%s); scanning in float32",
                    type(exc).__name__)
        return None
