"""The answer pipeline's own latency, the model excluded: time to the first checked sentence and
to the final citation list, through `Assistant.ask_stream` with the Bedrock provider (real
boto3) against emulators/bedrock.py answering at once (zero delay, scripted model).

The provider's stream is timed from the inside (every `next()` on it), so
`overhead = total - time inside the provider` is what retrieval (ACL filter, embedding the
question, hybrid search), the oversharing check, citation validation and the audit write cost;
the provider's share (boto3 signing, loopback HTTP, event-stream parsing) is printed beside it.

    python -m bench.answer_latency [--docs 1000] [--questions 200] [--embedder hashing]
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import boto3  # type: ignore[import-untyped]

from assistant.answer import AnswerDelta, AnswerDone, Assistant
from assistant.llm.base import DraftEvent, LlmProvider, Source, Turn
from assistant.llm.bedrock import BedrockConfig, BedrockProvider
from assistant.llm.extractive import ExtractiveAnswerer
from auth.identity import resolve
from bench.synthetic import write_tree
from connectors.files.connector import FilesConnector
from emulators.base import EmulatorServer
from emulators.bedrock import BedrockEmulator
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Timed:
    """A provider whose stream is timed from the inside."""

    def __init__(self, inner: LlmProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        started = time.perf_counter()
        events = iter(self.inner.stream(question, sources, history))
        self.seconds += time.perf_counter() - started
        while True:
            started = time.perf_counter()
            try:
                event = next(events)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield event


def questions(root: Path, n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    files = sorted(root.rglob("doc*.md"))
    out = []
    for path in rng.sample(files, min(n, len(files))):
        sentences = re.findall(r"[A-Z][^.]{30,}\.", path.read_text(encoding="utf-8"))
        if sentences:
            out.append(rng.choice(sentences)[:120] + "?")
    return out


def measure(assistant: Assistant, timed: Timed, asks: list[str], email: str,
            store: SqliteStore) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"first": [], "total": [], "provider": [], "overhead": []}
    identity = resolve(store, email)
    for question in asks:
        timed.seconds = 0.0
        started = time.perf_counter()
        first: float | None = None
        done = False
        for event in assistant.ask_stream(question, identity):
            if isinstance(event, AnswerDelta) and first is None:
                first = time.perf_counter() - started
            done = done or isinstance(event, AnswerDone)
        total = time.perf_counter() - started
        assert done, question
        if first is not None:
            figures["first"].append(first * 1000)
        figures["total"].append(total * 1000)
        figures["provider"].append(timed.seconds * 1000)
        figures["overhead"].append((total - timed.seconds) * 1000)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--embedder", default="hashing")
    args = parser.parse_args()
    embedder = load_embedder(args.embedder)
    with tempfile.TemporaryDirectory(prefix="answer-latency-") as tmp:
        root = write_tree(Path(tmp) / "docs", args.docs)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        assert Pipeline(store, embedder).full_sync(FilesConnector("docs", root)).status == "ok"
        retriever = Retriever(store, embedder, RetrievalParams())
        asks = questions(root, args.questions)
        email = "u0@bench.example"
        with EmulatorServer(BedrockEmulator({"chunk_size": 16})) as server:
            session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                            aws_secret_access_key="bench",
                                            region_name="us-east-1")
            bedrock = BedrockProvider(BedrockConfig(
                "anthropic.claude-3-haiku-20240307-v1:0", "us-east-1", server.base_url,
                str(server.ca_bundle)), session=session)
            print(f"{len(asks)} questions, {args.docs} documents, embedder {embedder.name}; "
                  "milliseconds")
            print("| provider | first sentence p50 / p95 | total p50 / p95 | inside provider "
                  "p50 / p95 | overhead (total - provider) p50 / p95 | answered |")
            print("| --- | --- | --- | --- | --- | --- |")
            for provider in (bedrock, ExtractiveAnswerer(embedder)):
                timed = Timed(provider)
                assistant = Assistant(retriever, timed, audit_path=Path(tmp) / "audit.jsonl")
                measure(assistant, timed, asks[:5], email, store)  # warm-up: connections, caches
                f = measure(assistant, timed, asks, email, store)

                def pq(name: str, f: dict[str, list[float]] = f) -> str:
                    return f"{percentile(f[name], 0.5):.1f} / {percentile(f[name], 0.95):.1f}"

                print(f"| {provider.name} | {pq('first')} | {pq('total')} | {pq('provider')} | "
                      f"{pq('overhead')} | {len(f['first'])}/{len(asks)} |")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
