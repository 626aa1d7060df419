"""The sync's own cost on top of the embedder, before and after a change, in one run.

Exports a baseline revision of the code (`--baseline`, default `main`) with `git archive` into a
temporary folder, then measures bench/ingest.py's `measure` (a clean pipelined full sync, then
the same chunk texts through the bare embedder) with the baseline's code and with this
checkout's code in turn, each in a fresh interpreter, on the same trees: the Acme tenant and a
generated tree of `--docs` documents (written once, shared by both). The embedder is the
default int8 ONNX one, from the same cache. Printed: end-to-end / raw (wall and CPU) per side.

The machine is shared: read the ratios within this run, not the absolute rates.

    python -m bench.ingest_overhead [--docs 10000] [--raw-every 5] [--rounds 1] [--baseline main]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys
from pathlib import Path
from apps.demo import TENANT
from bench.ingest import measure
from indexer.embedding import load_embedder
name, tree, work, every = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
e = load_embedder("minilm-onnx-int8")
e.embed(["warm up the model"])
r = measure(name, TENANT if tree == "acme" else Path(tree), e, work, True, every)
print("RESULT " + json.dumps(r))
"""


def run(code: Path, name: str, tree: str, work: Path, every: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, "-c", CHILD, name, tree, str(work), str(every)],
                         cwd=code, env=env, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--raw-every", type=int, default=5,
                    help="raw rate of the generated tree over every n-th page only")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds per corpus")
    ap.add_argument("--baseline", default="main", help="git revision to compare against")
    args = ap.parse_args()
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=HERE, check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, check=True,
                          capture_output=True, text=True).stdout.strip()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores); baseline {rev}, "
          f"this checkout {head}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = work / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=HERE, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        sys.path.insert(0, str(HERE))
        from bench.synthetic import write_tree

        tree = write_tree(work / "generated", args.docs)
        print("\n| corpus | code | documents | chunks | e2e s | e2e chunks/s | raw chunks/s "
              "| e2e / raw | CPU ms per chunk e2e | CPU raw / e2e |\n"
              "|---|---|---|---|---|---|---|---|---|---|", flush=True)
        for corpus, path, every in (("Acme tenant", "acme", 1),
                                    (f"generated {args.docs}", str(tree), args.raw_every)):
            for turn in range(args.rounds):
                for label, code in ((f"baseline {rev}", base), (f"checkout {head}", HERE)):
                    r = run(code, f"{label.split()[0]}-{path == 'acme'}-{turn}", path, work,
                            every)
                    print(f"| {corpus} | {label} | {r['documents']:.0f} | {r['chunks']:.0f} | "
                          f"{r['e2e_s']:.0f} | {r['chunks_per_s']:.1f} | "
                          f"{r['raw_chunks_per_s']:.1f} | {r['ratio']:.2f} | "
                          f"{r['cpu_ms_per_chunk']:.1f} | {r['cpu_ratio']:.2f} |", flush=True)
        print(f"\nload average at end: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
