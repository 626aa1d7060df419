"""Answer quality on the labelled answer set (bench/quality/answers.py): exact-fact hit rate and
citation precision, the extractive answerer vs the Bedrock emulator's scripted model, each
through the whole pipeline (files connector, SQLite store, hybrid retrieval, citation check).

    python -m bench.answer_quality [--embedder minilm] [--split heldout|tune|all]
                                   [--index DIR] [--compare-ref GIT_REF]

hit: every `answer_contains` string is in the answer (case and spacing ignored); citation
precision: cited documents that are relevant / all cited (over answered questions); markup:
answers whose prose shows `|`, `**` or a list dash. One run, same index for both providers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.answer import Assistant
from assistant.citations import Answer
from assistant.llm.base import LlmProvider
from auth.identity import resolve
from connectors.files.connector import FilesConnector
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.hybrid import RetrievalParams, Retriever

DATA = Path(__file__).resolve().parent / "quality" / "data"
MARKUP = re.compile(r"\||\*\*|(?:^|\s)- ")


def file_of(doc_id: str) -> str:
    """Where a labelled document is written in the files tree."""
    kind, name = doc_id.split(":", 1)
    return f"{kind}/{name}" if name.endswith(".md") else f"{kind}/{name}.md"


def load() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    questions = [json.loads(line) for line in (DATA / "answers.jsonl").read_text().splitlines()
                 if line.strip()]
    with gzip.open(DATA / "answer-docs.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh if line.strip()]
    return questions, docs


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class Score:
    asked: int = 0
    hits: int = 0
    answered: int = 0
    cited: int = 0
    cited_relevant: int = 0
    markup: int = 0

    def add(self, answer: Answer, relevant: set[str], contains: list[str]) -> None:
        self.asked += 1
        if answer.refused:
            return
        self.answered += 1
        shown = _norm(answer.answer)
        self.hits += all(_norm(c) in shown for c in contains)
        docs = {c.doc_id for c in answer.citations}
        self.cited += len(docs)
        self.cited_relevant += len(docs & relevant)
        self.markup += bool(MARKUP.search(answer.answer))

    def row(self, name: str) -> str:
        hit = self.hits / self.asked if self.asked else 0.0
        precision = self.cited_relevant / self.cited if self.cited else 0.0
        answered = self.answered / self.asked if self.asked else 0.0
        return (f"| {name} | {self.asked} | {hit:.3f} | {precision:.3f} | {answered:.3f} | "
                f"{self.markup} |")


def bedrock_provider(server: Any) -> LlmProvider:
    import boto3  # type: ignore[import-untyped]

    from assistant.llm.bedrock import BedrockConfig, BedrockProvider

    session = boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                    aws_secret_access_key="bench", region_name="us-east-1")
    return BedrockProvider(BedrockConfig("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1",
                                         server.base_url, str(server.ca_bundle)),
                           session=session)


def extractive_at(ref: str) -> Any:
    """The ExtractiveAnswerer class of an earlier commit (for a before/after in one run)."""
    import subprocess
    import types

    source = subprocess.run(["git", "show", f"{ref}:assistant/llm/extractive.py"],
                            capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout
    module = types.ModuleType(f"extractive_{ref}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{ref}:assistant/llm/extractive.py", "exec"), module.__dict__)
    return module.ExtractiveAnswerer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--split", default="heldout", choices=("heldout", "tune", "all"))
    parser.add_argument("--index", type=Path, help="keep the index here and reuse it")
    parser.add_argument("--compare-ref", metavar="GIT_REF",
                        help="also run assistant/llm/extractive.py as it was at this commit")
    args = parser.parse_args()
    questions, docs = load()
    old = extractive_at(args.compare_ref) if args.compare_ref else None
    if args.split != "all":
        questions = [q for q in questions if q["split"] == args.split]
    from emulators.base import EmulatorServer
    from emulators.bedrock import BedrockEmulator
    from tests.conftest import write_tree

    embedder = load_embedder(args.embedder)
    with tempfile.TemporaryDirectory(prefix="answer-quality-") as scratch:
        tmp = str(args.index or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        tree: dict[str, Any] = {".access.json": {"read": ["domain:example.com"]}}
        tree.update({file_of(d["doc_id"]): d["text"] for d in docs})
        root = write_tree(Path(tmp) / "docs", tree)
        store = SqliteStore(Path(tmp) / "index.sqlite3")
        started = time.perf_counter()
        report = Pipeline(store, embedder).full_sync(FilesConnector("docs", root))
        assert report.status == "ok", report  # unchanged documents are skipped on reuse
        indexed = time.perf_counter() - started
        retriever = Retriever(store, embedder, RetrievalParams())
        from assistant.llm.extractive import ExtractiveAnswerer

        with EmulatorServer(BedrockEmulator()) as server:
            providers: dict[str, Callable[[], LlmProvider]] = {
                "extractive": lambda: ExtractiveAnswerer(embedder),
                "bedrock emulator (scripted)": lambda: bedrock_provider(server),
            }
            if old is not None:
                providers[f"extractive at {args.compare_ref}"] = lambda: old(embedder)
            print(f"{len(questions)} questions ({args.split}), {len(docs)} documents indexed in "
                  f"{indexed:.0f}s, embedder {embedder.name}")
            print("| provider | questions | fact hit | citation precision | answered | "
                  "markup shown |\n| --- | --- | --- | --- | --- | --- |")
            for name, make in providers.items():
                assistant = Assistant(retriever, make(), audit_path=Path(tmp) / "audit.jsonl")
                by_kind: dict[str, Score] = {}
                total = Score()
                for q in questions:
                    identity = resolve(store, q["as"])
                    answer = assistant.ask(q["question"], identity)
                    relevant = {f"docs:{file_of(r)}" for r in q["relevant"]}
                    total.add(answer, relevant, q["answer_contains"])
                    by_kind.setdefault(q["kind"], Score()).add(answer, relevant,
                                                               q["answer_contains"])
                print(total.row(name))
                for kind, score in sorted(by_kind.items()):
                    print(score.row(f"{name}: {kind}"))
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
