"""Answer latency per provider through the real pipeline: time to the first checked sentence
and to the final citation list, and the pipeline's own overhead with the model excluded.

    python -m bench.provider_latency --docs 2000 --questions 100 [--embedder minilm]

One synthetic corpus (bench/synthetic.py), one SQLite store, the same questions asked through
`Assistant.ask_stream` with three providers: the extractive answerer (in process), Bedrock
(boto3 against emulators/bedrock.py over TLS, zero delay) and the OpenAI-compatible provider
(requests against emulators/openai_compat.py over TLS, zero delay). The provider is wrapped by
a timer (it delegates, nothing is replaced), so "provider" is the time spent inside its stream
(the HTTP round trip and the emulator's scripted model) and "overhead" is everything else:
identity, ACL-filtered hybrid retrieval, source assembly, citation checking, audit write.
Prints one JSON object; figures are in milliseconds, p50/p95 over the questions.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]

from assistant.answer import AnswerDelta, AnswerDone, Assistant
from assistant.audit import AuditLog
from assistant.llm.base import DraftEvent, LlmProvider, Source, Turn
from assistant.llm.bedrock import BedrockConfig, BedrockProvider
from assistant.llm.extractive import ExtractiveAnswerer
from assistant.llm.openai_compat import OpenAICompatProvider, OpenAIConfig
from auth.identity import resolve
from bench.synthetic import write_tree
from connectors.files.connector import FilesConnector
from emulators.base import EmulatorServer
from emulators.bedrock import BedrockEmulator
from emulators.openai_compat import OpenAICompatEmulator
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever


class Timed:
    """Delegates to a provider and adds up the time spent inside its stream."""

    def __init__(self, inner: LlmProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def stream(self, question: str, sources: Sequence[Source],
               history: Sequence[Turn] = ()) -> Iterator[DraftEvent]:
        # Only the time inside the provider's own steps: between two events the consumer
        # (the citation check) runs, and that is the pipeline's, not the model's.
        events = iter(self.inner.stream(question, sources, history))
        while True:
            started = time.perf_counter()
            try:
                event = next(events)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield event


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def questions(root: Path, n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    files = sorted(root.rglob("doc*.md"))
    out = []
    for path in rng.sample(files, min(n, len(files))):
        sentences = re.findall(r"[A-Z][^.]{30,}\.", path.read_text(encoding="utf-8"))
        if sentences:
            out.append(rng.choice(sentences)[:120] + "?")
    return out


def measure(assistant: Assistant, timed: Timed, qs: list[str], email: str,
            store: SqliteStore) -> dict[str, Any]:
    identity = resolve(store, email)
    firsts, totals, providers, overheads = [], [], [], []
    answered = 0
    list(assistant.ask_stream(qs[0], identity))  # warm: caches, connections, first embed
    for q in qs:
        timed.seconds = 0.0
        started = time.perf_counter()
        first = None
        for event in assistant.ask_stream(q, identity):
            if isinstance(event, AnswerDelta) and first is None:
                first = time.perf_counter() - started
            elif isinstance(event, AnswerDone):
                answered += not event.answer.refused
        total = time.perf_counter() - started
        totals.append(total)
        if first is not None:
            firsts.append(first)
        providers.append(timed.seconds)
        overheads.append(total - timed.seconds)

    def ms(values: list[float], q: float) -> float:
        return round(1000 * percentile(values, q), 1)

    return {"first_sentence_p50_ms": ms(firsts, 0.5), "first_sentence_p95_ms": ms(firsts, 0.95),
            "total_p50_ms": ms(totals, 0.5), "total_p95_ms": ms(totals, 0.95),
            "provider_p50_ms": ms(providers, 0.5), "provider_p95_ms": ms(providers, 0.95),
            "overhead_p50_ms": ms(overheads, 0.5), "overhead_p95_ms": ms(overheads, 0.95),
            "answered": answered, "asked": len(qs)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="clearance-bench-providers-") as tmp:
        work = Path(tmp)
        root = write_tree(work / "docs", args.docs)
        store = SqliteStore(work / "index.sqlite3")
        embedder = load_embedder(args.embedder, cache_dir=work / "models")
        report = Pipeline(store, embedder).full_sync(FilesConnector("docs", root))
        assert report.status == "ok", report
        retriever = Retriever(store, embedder, RetrievalParams())
        qs = questions(root, args.questions)
        out: dict[str, Any] = {"docs": args.docs, "embedder": args.embedder,
                               "questions": len(qs)}
        bedrock_emu, openai_emu = BedrockEmulator({"chunk_size": 16}), OpenAICompatEmulator(
            {"chunk_size": 16})
        with EmulatorServer(bedrock_emu) as b, EmulatorServer(openai_emu) as o:
            session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                            aws_secret_access_key="x", region_name="us-east-1")
            providers: dict[str, LlmProvider] = {
                "extractive": ExtractiveAnswerer(embedder),
                "bedrock": BedrockProvider(BedrockConfig(
                    "anthropic.claude-3-haiku-20240307-v1:0", "us-east-1", b.base_url,
                    str(b.ca_bundle)), session=session),
                "openai": OpenAICompatProvider(OpenAIConfig(
                    base_url=o.base_url + "/v1", model="m", ca_bundle=str(o.ca_bundle))),
            }
            for name, provider in providers.items():
                timed = Timed(provider)
                assistant = Assistant(retriever, timed, audit=AuditLog(work / f"{name}.jsonl"))
                out[name] = measure(assistant, timed, qs, "u1@bench.example", store)
        store.close()
    extractive = out["extractive"]["total_p50_ms"]
    for name in ("bedrock", "openai"):
        out[f"{name}_total_p50_over_extractive"] = round(out[name]["total_p50_ms"] / extractive,
                                                         2)
        out[f"{name}_overhead_share_of_total_p50"] = round(
            out[name]["overhead_p50_ms"] / out[name]["total_p50_ms"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--embedder", default="minilm")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
