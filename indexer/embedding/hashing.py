"""A tiny deterministic embedder for tests: feature hashing of words and character trigrams.

No model and no state: the vector of a text depends on the text alone, identically in every
process (blake2b, not Python's salted `hash()`). Texts that share words, or parts of words
("backup" / "backups"), share buckets, so retrieval tests behave roughly like a real embedder
on lexical overlap, while unrelated texts come out nearly orthogonal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from indexer.embedding import Vectors

_WORD = re.compile(r"\w+", re.UNICODE)
_WORD_WEIGHT = 1.0
_TRIGRAM_WEIGHT = 0.5


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (runs of Unicode word characters)."""
    return _WORD.findall(text.lower())


@lru_cache(maxsize=1 << 16)
def _features(word: str, dim: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Signed buckets of one word: the word itself and the trigrams of "<word>"."""
    padded = f"<{word}>"
    keys = [f"w:{word}"] + [f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    weights = [_WORD_WEIGHT] + [_TRIGRAM_WEIGHT] * (len(keys) - 1)
    buckets: list[int] = []
    signed: list[float] = []
    for key, weight in zip(keys, weights, strict=True):
        h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
        buckets.append(h % dim)
        signed.append(weight if (h >> 63) & 1 == 0 else -weight)
    return tuple(buckets), tuple(signed)


class HashingEmbedder:
    """Feature-hashing embedder; `count_tokens` counts word tokens, and only the first
    `max_tokens` words of a text are embedded, as a model would truncate."""

    max_tokens: int = 256

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError("dim must be at least 8")
        self.dim: int = dim
        self.name: str = f"hashing-{dim}"

    def count_tokens(self, text: str) -> int:
        return len(word_tokens(text))

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single string")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            buckets: list[int] = []
            signed: list[float] = []
            for word in word_tokens(text)[: self.max_tokens]:
                b, s = _features(word, self.dim)
                buckets.extend(b)
                signed.extend(s)
            acc = np.bincount(
                np.asarray(buckets, dtype=np.intp),
                weights=np.asarray(signed, dtype=np.float64),
                minlength=self.dim,
            )
            norm = float(np.linalg.norm(acc))
            if norm > 0.0:
                out[row] = acc / norm
        return out
