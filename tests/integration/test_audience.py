"""The channel-audience rule: a channel answer cites only documents every member may read.

Property-style over a generated tenant (random groups, random folder ACLs, random channels):
every passage the audience retriever returns is readable by each member (denied side: a
document the asker reads but one member does not never appears), and nothing every member
reads is dropped. Real SqliteStore, files connector, hashing embedder."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.answer import Assistant
from assistant.llm.extractive import ExtractiveAnswerer
from auth.audience import Audience, AudienceRetriever, for_audience
from auth.identity import Identity, resolve
from connectors.files.connector import FilesConnector
from indexer.embedding import load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever
from tests.conftest import write_tree

pytestmark = pytest.mark.integration

PEOPLE = [f"p{i}@acme.com" for i in range(8)]
GROUPS = ["red", "green", "blue", "gold"]
WORDS = "budget plan roadmap holiday office travel salary launch".split()


def _tenant_spec(seed: int) -> tuple[dict[str, Any], dict[str, set[str]]]:
    rng = random.Random(seed)
    members = {g: {p for p in PEOPLE if rng.random() < 0.5} for g in GROUPS}
    spec: dict[str, Any] = {
        ".access.json": {"read": ["domain:acme.com"]},
        ".groups.json": {g: [f"user:{p}" for p in sorted(ps)] for g, ps in members.items()},
    }
    for i in range(24):
        folder = f"f{i % 8}"
        readers = rng.sample(GROUPS, rng.randint(1, 2))
        if i % 8 == 7:
            readers = ["domain:acme.com"]
        if i % 8 == 6:
            readers = [f"user:{PEOPLE[0]}"]
        spec[f"{folder}/.access.json"] = {"read": [f"group:{g}" if ":" not in g else g
                                                   for g in readers]}
        text = " ".join(rng.choice(WORDS) for _ in range(40))
        spec[f"{folder}/doc{i}.md"] = f"# Doc {i}\n\nThe budget plan: {text}.\n"
    return spec, members


class World:
    def __init__(self, base: Path) -> None:
        spec, self.groups = _tenant_spec(7)
        root = write_tree(base / "docs", spec)
        self.store = SqliteStore(base / "index.sqlite3")
        embedder = load_embedder("hashing")
        assert Pipeline(self.store, embedder).full_sync(FilesConnector("docs", root)).status == "ok"
        self.retriever = Retriever(self.store, embedder, RetrievalParams(k=50, candidates=200))
        self.assistant = Assistant(self.retriever, ExtractiveAnswerer(embedder))

    def who(self, email: str) -> Identity:
        return resolve(self.store, email, ["docs"])

    def reads(self, email: str, doc_id: str) -> bool:
        doc = self.store.document(doc_id)
        assert doc is not None
        return doc.acl.allows(self.who(email).at(doc.connector).principals)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("audience"))
    yield w
    w.store.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asker=st.sampled_from(PEOPLE), others=st.sets(st.sampled_from(PEOPLE), max_size=5))
def test_channel_passages_are_readable_by_every_member(world: World, asker: str,
                                                       others: set[str]) -> None:
    members = [asker, *sorted(others - {asker})]
    audience = Audience(tuple(world.who(m) for m in members))
    asker_id = world.who(asker)
    got = {p.chunk.doc_id for p in AudienceRetriever(world.retriever, audience).passages(
        "budget plan", acl_filter(asker_id), 50)}
    own = {p.chunk.doc_id for p in world.retriever.passages(
        "budget plan", acl_filter(asker_id), 50)}
    for doc_id in own:
        everyone_reads = all(world.reads(m, doc_id) for m in members)
        # denied side: one member who cannot read it keeps it out; and nothing is over-dropped
        assert (doc_id in got) == everyone_reads, (doc_id, members)
    assert got <= own
    assert own  # every generated person reads something (the domain-wide folder at least)


def test_a_doc_only_the_asker_reads_is_never_cited_in_the_channel(world: World) -> None:
    asker, other = PEOPLE[0], PEOPLE[1]
    private = {d for d in (p.chunk.doc_id for p in world.retriever.passages(
        "budget plan", acl_filter(world.who(asker)), 50))
        if world.reads(asker, d) and not world.reads(other, d)}
    assert private, "the generated tenant must hold a document the asker alone reads"
    audience = Audience((world.who(asker), world.who(other)))
    channel = for_audience(world.assistant, audience)
    answer = channel.ask("budget plan", world.who(asker), k=50)
    assert not {c.doc_id for c in answer.citations} & private
    alone = world.assistant.ask("budget plan", world.who(asker), k=50)
    assert alone.citations  # the asker alone gets an answer, so the filter is what removed them


def test_an_incomplete_or_empty_audience_admits_nothing(world: World) -> None:
    asker = world.who(PEOPLE[0])
    for audience in (Audience((asker,), complete=False), Audience(())):
        assert AudienceRetriever(world.retriever, audience).passages(
            "budget plan", acl_filter(asker), 50) == []
        assert for_audience(world.assistant, audience).ask("budget plan", asker).refused


def test_an_unknown_member_holds_only_what_anyone_holds(world: World) -> None:
    # someone the sources never heard of reads only domain-wide documents
    stranger = world.who("stranger@acme.com")
    audience = Audience((world.who(PEOPLE[0]), stranger))
    got = {p.chunk.doc_id for p in AudienceRetriever(world.retriever, audience).passages(
        "budget plan", acl_filter(world.who(PEOPLE[0])), 50)}
    assert got and all(d.startswith("docs:f7/") for d in got)
