"""Threads and batch sizes of the int8 ONNX embedder inside the pipelined sync.

On the Acme tenant and a generated tree, for each setting: a clean full sync (pipelined or
sequential) and the bare embedder over the same chunk texts, in one run. Settings: ORT intra-op
threads (1 or 2 on this 2-core box; the sync's extraction runs on the calling thread), whether
ORT's idle workers spin, and the batch size.

    python -m bench.threads [--docs 300] [--embedder minilm-onnx-int8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from apps.demo import TENANT
from bench.ingest import measure
from bench.synthetic import write_tree
from indexer.embedding.onnx import OnnxMiniLMEmbedder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--variant", default="int8", choices=["int8", "fp32"])
    args = ap.parse_args()
    settings = [(2, True, 32, True), (2, False, 32, True), (1, False, 32, True),
                (2, False, 32, False), (2, False, 16, True), (2, False, 64, True)]
    print("| corpus | intra-op threads | spinning | batch | sync | chunks | e2e chunks/s | "
          "raw chunks/s | e2e / raw |\n|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_tree(work / "generated", args.docs)
        for n, (threads, spin, batch, pipelined) in enumerate(settings):
            e = OnnxMiniLMEmbedder(args.variant, batch_size=batch, cache_dir=args.cache_dir,
                                   threads=threads, spinning=spin)
            e.embed(["warm up the model"])
            for name, tree in (("acme", TENANT), (f"generated {args.docs}", root)):
                r = measure(f"{name.split()[0]}{n}", tree, e, work, pipelined)
                print(f"| {name} | {threads} | {'yes' if spin else 'no'} | {batch} | "
                      f"{'pipelined' if pipelined else 'sequential'} | {r['chunks']:.0f} | "
                      f"{r['chunks_per_s']:.1f} | {r['raw_chunks_per_s']:.1f} | "
                      f"{r['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
