"""MiniLM on ONNX Runtime, from the graph built out of the shipped weights, against the references.

fp32 must be the torch reference (tests/fixtures/minilm_golden.json) to rounding; int8 must stay
close to the numpy reference on the same fixed texts. The build must be deterministic, cached
by the weights' hash, and rebuilt when the cached file is missing or damaged.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ConfigError, EmbedderUnavailable
from indexer.embedding import Embedder, fallback_notice, load_embedder
from indexer.embedding.minilm import MiniLMEmbedder, default_model_dir
from indexer.embedding.onnx import (
    OnnxMiniLMEmbedder,
    Variant,
    build_model,
    cached_model,
    content_key,
    ensure_model,
    model_prefix,
    weights_digest,
)

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_golden.json"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def texts() -> list[str]:
    doc: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return [c["text"] for c in doc["cases"]]


@pytest.fixture(scope="module")
def golden() -> np.ndarray:
    doc: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return np.array([c["vector"] for c in doc["cases"]], dtype=np.float64)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def fp32(cache: Path) -> OnnxMiniLMEmbedder:
    e = OnnxMiniLMEmbedder("fp32", batch_size=4, cache_dir=cache)
    e.load()
    return e


@pytest.fixture(scope="module")
def int8(cache: Path) -> OnnxMiniLMEmbedder:
    e = OnnxMiniLMEmbedder("int8", batch_size=4, cache_dir=cache)
    e.load()
    return e


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out: np.ndarray = np.sum(a * b, axis=1) / norms
    return out


def test_names_and_protocol(cache: Path) -> None:
    e = load_embedder("minilm-onnx-int8", cache_dir=cache)
    assert isinstance(e, OnnxMiniLMEmbedder) and isinstance(e, Embedder)
    assert (e.name, e.dim, e.max_tokens) == ("all-MiniLM-L6-v2-onnx-int8", 384, 256)
    # The stored id reopens the same embedder; the two variants never share a name.
    assert load_embedder(e.name, cache_dir=cache).name == e.name
    assert load_embedder("minilm-onnx-fp32").name == "all-MiniLM-L6-v2-onnx-fp32"
    assert load_embedder("minilm").name == "all-MiniLM-L6-v2"
    with pytest.raises(ConfigError, match="minilm-onnx-int8"):
        load_embedder("minilm-onnx-int4")


def test_fp32_graph_is_the_torch_reference(fp32: OnnxMiniLMEmbedder, texts: list[str],
                                           golden: np.ndarray) -> None:
    got = fp32.embed(texts).astype(np.float64)
    assert got.shape == (len(texts), 384)
    c = cosines(got, golden)
    assert c.min() >= 0.9999, f"case {int(np.argmin(c))}: cosine {c.min():.6f}"
    assert float(np.abs(got - golden).max()) < 1e-4


def test_int8_stays_close_to_numpy_on_real_passages(int8: OnnxMiniLMEmbedder) -> None:
    from bench.embedders import passages

    texts = passages(48)  # ~210-word windows of the bundled man pages, as indexed chunks are
    ref = MiniLMEmbedder(batch_size=8).embed(texts).astype(np.float64)
    c = cosines(int8.embed(texts).astype(np.float64), ref)
    assert c.mean() >= 0.99, f"mean cosine {c.mean():.4f}"
    assert c.min() >= 0.98, f"passage {int(np.argmin(c))}: cosine {c.min():.4f}"


def test_int8_stays_close_to_numpy_on_odd_texts(int8: OnnxMiniLMEmbedder,
                                                texts: list[str]) -> None:
    """The golden cases include one-word and truncated 300-token texts: a little further off."""
    ref = MiniLMEmbedder(batch_size=8).embed(texts).astype(np.float64)
    got = int8.embed(texts).astype(np.float64)
    c = cosines(got, ref)
    assert c.mean() >= 0.98, f"mean cosine {c.mean():.4f}"
    assert c.min() >= 0.96, f"case {int(np.argmin(c))}: cosine {c.min():.4f}"
    # Close, not equal: it is a different (quantised) network.
    assert float(np.abs(got - ref).max()) > 1e-4


def test_tokens_batches_and_order_as_numpy(int8: OnnxMiniLMEmbedder, texts: list[str]) -> None:
    ref = MiniLMEmbedder()
    assert int8.tokenize(texts) == ref.tokenize(texts)
    assert [int8.count_tokens(t) for t in texts] == [ref.count_tokens(t) for t in texts]
    singles = np.stack([int8.embed([t])[0] for t in texts])
    # int8 quantises activations with one scale per batch, so batch company moves a vector a
    # little (fp32 would agree to rounding); the order of the texts must not.
    batched = int8.embed(texts)
    assert cosines(batched, singles).min() > 0.97
    perm = list(reversed(range(len(texts))))
    np.testing.assert_allclose(int8.embed([texts[i] for i in perm]), batched[perm], atol=1e-6)
    assert int8.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        int8.embed("a bare string")


def test_semantic_sanity(int8: OnnxMiniLMEmbedder) -> None:
    q, leave, backup = int8.embed([
        "How many vacation days do employees get?",
        "Full-time staff receive 25 days of paid annual leave per calendar year.",
        "Nightly database backups are written to the object store and kept for 30 days.",
    ])
    assert float(q @ leave) > float(q @ backup) + 0.2


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_build_is_deterministic(tmp_path: Path, cache: Path, fp32: OnnxMiniLMEmbedder,
                                int8: OnnxMiniLMEmbedder, variant: str) -> None:
    model_dir = default_model_dir()
    v: Variant = "int8" if variant == "int8" else "fp32"
    cached = ensure_model(model_dir, cache, v)
    again = tmp_path / "again.onnx"
    key = build_model(model_dir, again, v)
    assert again.read_bytes() == cached.read_bytes()
    assert cached.stem.endswith(key) and key == content_key(again)
    assert [p.name for p in tmp_path.iterdir()] == ["again.onnx"]  # no temp file left behind


def test_cache_is_keyed_by_weights_and_reused(tmp_path: Path, cache: Path,
                                              fp32: OnnxMiniLMEmbedder) -> None:
    model_dir = default_model_dir()
    digest = weights_digest(model_dir)
    path = ensure_model(model_dir, cache, "fp32")
    assert path.name.startswith(model_prefix(digest, "fp32")) and digest[:16] in path.name
    stamp = path.stat().st_mtime_ns
    assert ensure_model(model_dir, cache, "fp32").stat().st_mtime_ns == stamp  # not rebuilt
    assert cached_model(cache, digest, "fp32") == path
    # Other weights, other key: a copy with one byte changed gets its own file.
    other = tmp_path / "other"
    other.mkdir()
    blob = bytearray((model_dir / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (other / "model.safetensors").write_bytes(bytes(blob))
    assert weights_digest(other) != digest
    assert model_prefix(weights_digest(other), "fp32") != model_prefix(digest, "fp32")


def _copy_cache(src: Path, dst: Path, variant: Variant) -> Path:
    dst.mkdir()
    path = ensure_model(default_model_dir(), src, variant)
    (dst / path.name).write_bytes(path.read_bytes())
    return dst / path.name


def test_damaged_cached_model_is_told_by_its_hash_and_rebuilt(
        tmp_path: Path, cache: Path, texts: list[str], int8: OnnxMiniLMEmbedder) -> None:
    want = int8.embed(texts[:3])
    path = _copy_cache(cache, tmp_path / "models", "int8")
    good = path.read_bytes()
    # One flipped bit deep inside a weight: ORT would load it and embed with a wrong weight.
    blob = bytearray(good)
    blob[len(blob) // 2] ^= 0x10
    path.write_bytes(bytes(blob))
    e = OnnxMiniLMEmbedder("int8", batch_size=4, cache_dir=tmp_path / "models")
    np.testing.assert_array_equal(e.embed(texts[:3]), want)
    assert path.read_bytes() == good  # rebuilt under the same name, the same bytes
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]
    # Truncated to garbage, or gone: rebuilt too.
    for damage in (b"not an onnx model", None):
        if damage is None:
            path.unlink()
        else:
            path.write_bytes(damage)
        again = OnnxMiniLMEmbedder("int8", batch_size=4, cache_dir=tmp_path / "models")
        np.testing.assert_array_equal(again.embed(texts[:3]), want)
        assert path.read_bytes() == good


def test_files_of_other_builds_and_temp_files_are_not_used(tmp_path: Path, cache: Path,
                                                           fp32: OnnxMiniLMEmbedder) -> None:
    models = tmp_path / "models"
    path = _copy_cache(cache, models, "fp32")
    stale = models / "minilm-l6-fp32-b0-0123456789abcdef.onnx"  # an older build's name
    stale.write_bytes(b"old")
    half = models / ".minilm-l6-fp32.abc.tmp"  # a build killed midway
    half.write_bytes(path.read_bytes()[:1000])
    assert ensure_model(default_model_dir(), models, "fp32") == path
    assert stale.read_bytes() == b"old" and half.is_file()  # neither read nor removed


BUILD = """
import sys
from pathlib import Path
from indexer.embedding.onnx import OnnxMiniLMEmbedder
e = OnnxMiniLMEmbedder("int8", batch_size=4, cache_dir=Path(sys.argv[1]))
print(repr(e.embed(["two processes build the same graph"]).tobytes()))
"""


def test_two_processes_building_at_once(tmp_path: Path, cache: Path,
                                        int8: OnnxMiniLMEmbedder) -> None:
    """Each builds under its own temporary name and renames onto the same final name; the
    build is deterministic, so both end with the same file and the same vectors."""
    models = tmp_path / "models"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(models)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [err for _, err in outs] == ["", ""]  # no quantiser warning, nothing else either
    assert outs[0][0] == outs[1][0]
    files = list(models.iterdir())
    assert len(files) == 1 and files[0].name == ensure_model(default_model_dir(), cache,
                                                             "int8").name
    assert files[0].read_bytes() == ensure_model(default_model_dir(), cache, "int8").read_bytes()


def test_build_leaves_logging_as_it_was(tmp_path: Path, capfd: pytest.CaptureFixture[str]
                                        ) -> None:
    """ORT's quantiser warns through the root logger, whose first use with no handler would
    install a stderr handler for good (basicConfig): the build prints nothing and leaves the
    root logger, its handlers and filters, and the quantiser's loggers as they were."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []  # a bare CLI process: no handler on the root logger
    try:
        filters, level = root.filters[:], logging.getLogger("onnxruntime.quantization").level
        OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).load()
        assert root.handlers == [] and root.filters == filters
        assert logging.getLogger("onnxruntime.quantization").level == level
        logging.getLogger("clearance.test").warning("still reported after the build")
    finally:
        root.handlers[:] = saved
    out, err = capfd.readouterr()
    assert out == "" and err == "still reported after the build\n"
    assert "pre-processing" not in err and "quantization" not in err


def test_unwritable_cache_fails_closed_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    for variant in ("fp32", "int8"):
        v: Variant = "int8" if variant == "int8" else "fp32"
        with pytest.raises(EmbedderUnavailable, match="cannot write the ONNX model cache") as info:
            OnnxMiniLMEmbedder(v, cache_dir=blocker / "models").embed(["x"])
        assert "\n" not in str(info.value) and "[embedder]" in str(info.value)
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_without_onnxruntime_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails
    with pytest.raises(EmbedderUnavailable, match="'minilm'") as info:
        OnnxMiniLMEmbedder("int8", cache_dir=tmp_path).embed(["hello"])
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_without_onnxruntime_the_config_name_falls_back_to_numpy(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str) -> None:
    assert fallback_notice("minilm-onnx-int8") is None  # installed here: no notice
    monkeypatch.setitem(sys.modules, missing, None)
    e = load_embedder("minilm-onnx-int8", cache_dir=tmp_path)
    # Numpy MiniLM under its own name: an index it builds is never mixed with int8 vectors.
    assert isinstance(e, MiniLMEmbedder) and e.name == "all-MiniLM-L6-v2"
    notice = fallback_notice("minilm-onnx-int8")
    assert notice is not None and "numpy minilm" in notice and "pip install" in notice
    assert fallback_notice("minilm") is None and fallback_notice("static") is None
    assert list(tmp_path.iterdir()) == []


def test_missing_weights_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailable, match="missing"):
        OnnxMiniLMEmbedder("int8", model_dir=tmp_path, cache_dir=tmp_path).embed(["x"])
