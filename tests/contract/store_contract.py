"""The store contract: every backend inherits these tests and passes them, or is not done.

A backend's test module subclasses `StoreContract` and provides `make_store` (a factory of
empty stores; the fixture cleans up what it made). Backends without k-NN (the in-memory osmem
server) set `supports_knn = False`: tests that need k-NN skip with that reason, and tests that
check both retrievers check only BM25.

What is pinned: writes (upsert, ACL-only update, delete, delete_unseen), both retrievers and the
hybrid retriever, the ACL filter for every principal shape (nested groups resolved through the
same store's identities), gates, deny, every fail-closed document shape, limited and ordered
results, identities, sync state and deterministic snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import numpy as np
import pytest

from auth.identity import resolve
from core.acl import Acl, AclFilter
from core.models import Alias, Chunk, Document, Membership, Section, make_document
from indexer.embedding.hashing import HashingEmbedder
from indexer.store.base import ChunkStore, IdentityStoreProtocol, StateStore
from retriever.filters import acl_filter
from retriever.hybrid import RetrievalParams, Retriever


class ContractStore(ChunkStore, StateStore, IdentityStoreProtocol, Protocol):
    def embedder_names(self) -> list[str]: ...


StoreFactory = Callable[[], ContractStore]

CONNECTOR = "kb"
KEYWORD = "zanzibar"
EVERYONE = "everyone"


def doc_id(source_id: str) -> str:
    return f"{CONNECTOR}:{source_id}"


def make_doc(source_id: str, *sections: str | Section, acl: Acl, title: str | None = None,
             connector: str = CONNECTOR) -> Document:
    parts = [s if isinstance(s, Section) else Section(s) for s in sections]
    return make_document(f"{connector}:{source_id}", title or source_id,
                         f"https://{connector}.example/{source_id}", parts, acl)


def index(store: ContractStore, embedder: HashingEmbedder, *docs: Document,
          run_id: str = "run-1", embedder_name: str | None = None) -> None:
    """Upsert documents the way the pipeline does: one chunk per section, inside a batch."""
    with store.batch():
        for doc in docs:
            chunks = [Chunk(doc.doc_id, i, s.text, s.headings) for i, s in enumerate(doc.sections)]
            vectors = embedder.embed([f"{doc.title}\n{c.text}" for c in chunks])
            store.upsert(doc, chunks, vectors, embedder_name or embedder.name, run_id)


def caller(*principals: str) -> AclFilter:
    """What a person holds for the documents of the contract's connectors (identity facts are
    scoped per connector; these callers hold the same at both): the given principals plus
    `everyone`, as resolve() always adds."""
    return AclFilter.uniform({*principals, EVERYONE}, (CONNECTOR, "other"))


def chunk_view(store: ContractStore, id_: str) -> list[tuple[Any, ...]]:
    """A document's chunks as (ordinal, text, vector) from the snapshot."""
    chunks = store.snapshot()["documents"][id_]["chunks"]
    return [(c["ordinal"], c["text"], c["vector"]) for c in chunks]


class StoreContract:
    supports_knn: ClassVar[bool] = True
    no_knn_reason: ClassVar[str] = ""

    @pytest.fixture
    def make_store(self) -> Iterator[StoreFactory]:
        raise NotImplementedError("a backend's contract test module provides make_store")

    @pytest.fixture
    def store(self, make_store: StoreFactory) -> ContractStore:
        return make_store()

    @pytest.fixture
    def embedder(self) -> HashingEmbedder:
        return HashingEmbedder()

    def need_knn(self) -> None:
        if not self.supports_knn:
            pytest.skip(self.no_knn_reason)

    def visible(self, store: ContractStore, embedder: HashingEmbedder, acl: AclFilter,
                query: str = KEYWORD) -> set[str]:
        """Documents the caller finds; BM25 and k-NN must agree on the set."""
        lexical = {h.doc_id for h in store.lexical(query, acl, 1000)}
        if self.supports_knn:
            dense = {h.doc_id for h in store.dense(embedder.embed([query])[0], acl, 1000)}
            assert dense == lexical, "k-NN and BM25 apply different ACL filters"
        return lexical

    def test_lexical_ceiling_bounds_every_score_whoever_asks(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        docs = [make_doc(f"c/{i}.md", text, acl=Acl.single([principal]), title=title)
                for i, (text, title, principal) in enumerate([
                    ("parental leave lasts sixteen weeks leave leave", "Leave", EVERYONE),
                    ("leave requests go to the manager", "Requests", EVERYONE),
                    ("board leave of absence policy", "Board leave", "group:board"),
                    ("expenses need a receipt", "Expenses", EVERYONE)])]
        index(store, embedder, *docs)
        query = "parental leave board"
        ceiling = store.lexical_ceiling(query)
        assert ceiling is not None and ceiling > 0.0
        board, reader = caller("group:board"), caller()
        for acl in (board, reader):
            hits = store.lexical(query, acl, 10)
            assert hits and all(h.score <= ceiling + 1e-9 for h in hits)
        # the denied side: the reader never sees the board's passage, though it is counted
        assert docs[2].doc_id not in {h.doc_id for h in store.lexical(query, reader, 10)}
        assert docs[2].doc_id in {h.doc_id for h in store.lexical(query, board, 10)}
        assert store.lexical_ceiling("?!") == 0.0
        assert store.lexical_ceiling("parental") < ceiling  # fewer terms, lower bound

    # -- writes ------------------------------------------------------------------------------
    def test_upsert_then_lexical_finds_it_with_its_metadata(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        leave = make_doc("handbook/leave.md",
                         Section("Parental leave lasts sixteen weeks.", ("Leave", "Parental")),
                         Section("Holidays accrue monthly."), acl=Acl.single([EVERYONE]),
                         title="Leave policy")
        expenses = make_doc("handbook/expenses.md", "Expenses need a receipt.",
                            acl=Acl.single([EVERYONE]))
        index(store, embedder, leave, expenses)

        hits = store.lexical("how long is parental leave", caller(), 10)
        assert [h.doc_id for h in hits][:1] == [leave.doc_id]
        best = hits[0]
        assert (best.ordinal, best.text, best.title, best.url, best.headings) == (
            0, "Parental leave lasts sixteen weeks.", "Leave policy",
            "https://kb.example/handbook/leave.md", ("Leave", "Parental"))
        assert expenses.doc_id not in {h.doc_id for h in hits}

        states = store.document_states([leave.doc_id, doc_id("missing.md")])
        assert set(states) == {leave.doc_id}
        assert states[leave.doc_id].content_hash == leave.content_hash
        assert states[leave.doc_id].acl_key == leave.acl.key()
        assert states[leave.doc_id].embedder == embedder.name
        stored = store.document(leave.doc_id)
        assert stored is not None
        assert (stored.connector, stored.title, stored.url, stored.chunks, stored.acl) == (
            CONNECTOR, "Leave policy", "https://kb.example/handbook/leave.md", 2, leave.acl)
        assert store.document(doc_id("missing.md")) is None

    def test_upsert_then_dense_ranks_the_closest_chunk_first(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        self.need_knn()
        leave = make_doc("leave.md", "Parental leave lasts sixteen weeks.",
                         acl=Acl.single([EVERYONE]))
        expenses = make_doc("expenses.md", "Expense receipts go to finance.",
                            acl=Acl.single([EVERYONE]))
        index(store, embedder, leave, expenses)
        hits = store.dense(embedder.embed(["parental leave sixteen weeks"])[0], caller(), 10)
        assert [h.doc_id for h in hits] == [leave.doc_id, expenses.doc_id]
        assert hits[0].text == "Parental leave lasts sixteen weeks."
        assert 0.0 < hits[0].score <= 1.0 + 1e-6
        assert hits[0].score > hits[1].score

    def test_upsert_again_replaces_the_previous_chunks(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        first = make_doc("plan.md", "alpha quokka", "beta quokka", "gamma quokka",
                         acl=Acl.single([EVERYONE]))
        index(store, embedder, first)
        second = make_doc("plan.md", "delta quokka", acl=Acl.single([EVERYONE]))
        index(store, embedder, second, run_id="run-2")
        assert store.lexical("gamma", caller(), 10) == []
        assert [h.text for h in store.lexical("quokka", caller(), 10)] == ["delta quokka"]
        assert [c[1] for c in chunk_view(store, second.doc_id)] == ["delta quokka"]
        assert store.stats(CONNECTOR).chunks == 1
        if self.supports_knn:
            dense = store.dense(embedder.embed(["gamma quokka"])[0], caller(), 10)
            assert [h.text for h in dense] == ["delta quokka"]

    def test_acl_only_update_is_enforced_at_once_and_keeps_content(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        plan = make_doc("plan.md", f"{KEYWORD} quarterly plan", f"{KEYWORD} second part",
                        acl=Acl.single(["user:alice@acme.com"]))
        index(store, embedder, plan)
        alice, bob = caller("user:alice@acme.com"), caller("user:bob@acme.com")
        assert self.visible(store, embedder, alice) == {plan.doc_id}
        assert self.visible(store, embedder, bob) == set()
        content = chunk_view(store, plan.doc_id)

        new_acl = Acl.single(["user:bob@acme.com"])
        assert store.update_acl(plan.doc_id, new_acl, None) is True

        assert self.visible(store, embedder, bob) == {plan.doc_id}
        assert self.visible(store, embedder, alice) == set()
        assert chunk_view(store, plan.doc_id) == content  # same text, same vectors
        stored = store.document(plan.doc_id)
        assert stored is not None
        assert stored.acl == new_acl and stored.content_hash == plan.content_hash
        assert store.document_states([plan.doc_id])[plan.doc_id].acl_key == new_acl.key()
        assert store.update_acl(doc_id("never-indexed.md"), new_acl, None) is False

    def test_delete_removes_the_document_everywhere(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        gone = make_doc("gone.md", f"{KEYWORD} old memo", acl=Acl.single([EVERYONE]))
        kept = make_doc("kept.md", f"{KEYWORD} new memo", acl=Acl.single([EVERYONE]))
        index(store, embedder, gone, kept)
        store.delete([gone.doc_id])
        store.delete([])
        assert self.visible(store, embedder, caller()) == {kept.doc_id}
        assert store.document(gone.doc_id) is None
        assert store.document_states([gone.doc_id, kept.doc_id]).keys() == {kept.doc_id}
        assert store.stats(CONNECTOR).documents == 1

    def test_doc_ids_lists_one_connector_sorted(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        b = make_doc("b.md", f"{KEYWORD} b", acl=Acl.single([EVERYONE]))
        a = make_doc("a.md", f"{KEYWORD} a", acl=Acl.nobody("unknown"))
        elsewhere = make_doc("x.md", f"{KEYWORD} x", acl=Acl.single([EVERYONE]),
                             connector="other")
        index(store, embedder, b, a, elsewhere)
        assert store.doc_ids(CONNECTOR) == [a.doc_id, b.doc_id]
        store.delete([a.doc_id])
        assert store.doc_ids(CONNECTOR) == [b.doc_id]
        assert store.doc_ids("nothing-here") == []

    def test_connector_names_lists_every_connector_with_documents(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        assert store.connector_names() == []
        a = make_doc("a.md", f"{KEYWORD} a", acl=Acl.single([EVERYONE]))
        x = make_doc("x.md", f"{KEYWORD} x", acl=Acl.nobody("unknown"), connector="zeta")
        y = make_doc("y.md", f"{KEYWORD} y", acl=Acl.single([EVERYONE]), connector="alpha")
        index(store, embedder, a, x, y)
        assert store.connector_names() == sorted({CONNECTOR, "zeta", "alpha"})
        store.delete([x.doc_id])
        assert store.connector_names() == sorted({CONNECTOR, "alpha"})

    def test_delete_unseen_removes_what_the_run_did_not_see(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        a = make_doc("a.md", f"{KEYWORD} a", acl=Acl.single([EVERYONE]))
        b = make_doc("b.md", f"{KEYWORD} b", acl=Acl.single([EVERYONE]))
        c = make_doc("c.md", f"{KEYWORD} c", acl=Acl.single([EVERYONE]))
        elsewhere = make_doc("x.md", f"{KEYWORD} x", acl=Acl.single([EVERYONE]),
                             connector="other")
        index(store, embedder, a, b, c, elsewhere)
        confirmed = store.document(a.doc_id)
        assert confirmed is not None
        with store.batch():
            store.mark_seen([a.doc_id], "run-2")
            store.mark_seen([doc_id("never-indexed.md")], "run-2")  # not an error
        index(store, embedder, c, run_id="run-2")

        assert store.delete_unseen(CONNECTOR, "run-2") == [b.doc_id]
        assert self.visible(store, embedder, caller()) == {a.doc_id, c.doc_id, elsewhere.doc_id}
        again = store.document(a.doc_id)
        assert again is not None and again.acl_confirmed_at > confirmed.acl_confirmed_at

        # A permission pass confirms ACLs but is not a full-sync sighting.
        store.mark_seen([a.doc_id], None)
        assert store.delete_unseen(CONNECTOR, "run-3") == [a.doc_id, c.doc_id]
        assert self.visible(store, embedder, caller()) == {elsewhere.doc_id}

    def test_a_batch_that_raises_leaves_the_index_as_it_was(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        kept = make_doc("kept.md", f"{KEYWORD} kept", acl=Acl.single([EVERYONE]))
        index(store, embedder, kept)
        before = store.snapshot()
        with pytest.raises(RuntimeError), store.batch():
            index(store, embedder, make_doc("half.md", f"{KEYWORD} half",
                                            acl=Acl.single([EVERYONE])))
            store.update_acl(kept.doc_id, Acl.single(["user:x@acme.com"]), None)
            raise RuntimeError("embedder died mid-page")
        assert store.snapshot() == before
        assert self.visible(store, embedder, caller()) == {kept.doc_id}

    # -- retrieval ---------------------------------------------------------------------------
    def test_hybrid_query_through_the_retriever(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        self.need_knn()
        vpn = make_doc("it/vpn.md", "Connect to the VPN with the corporate client.",
                       acl=Acl.single(["domain:acme.com"]), title="VPN setup")
        root = make_doc("it/vpn-root.md", "VPN root credentials and connect tokens.",
                        acl=Acl.single(["group:admins"]), title="VPN root")
        noise = [make_doc(f"misc/{i}.md", f"Cafeteria menu for week {i}.",
                          acl=Acl.single([EVERYONE])) for i in range(5)]
        index(store, embedder, vpn, root, *noise)
        retriever = Retriever(store, embedder, RetrievalParams(k=5, candidates=50))

        eve = retriever.search("how do I connect to the VPN", caller("domain:acme.com"))
        assert eve[0].doc_id == vpn.doc_id
        assert root.doc_id not in {h.doc_id for h in eve}
        admin = retriever.search("VPN root credentials", caller("group:admins",
                                                                "domain:acme.com"))
        assert admin[0].doc_id == root.doc_id

    # People and what they may read, through identities stored in the same store.
    SHAPES: ClassVar[dict[str, Acl]] = {
        "user": Acl.single(["user:carol@acme.com"]),
        "group": Acl.single(["group:kb:finance"]),
        "domain": Acl.single(["domain:acme.com"]),
        "everyone": Acl.single([EVERYONE]),
        "nested group": Acl.single(["group:kb:leadership"]),
        "alias": Acl.single(["user:carol.alt@corp.example"]),
    }
    READS: ClassVar[dict[str, set[str]]] = {
        "carol@acme.com": {"user", "domain", "everyone", "nested group", "alias"},
        "dan@acme.com": {"group", "domain", "everyone"},
        "erin@other.org": {"everyone"},
    }

    @pytest.mark.parametrize("email", sorted(READS))
    def test_acl_filter_for_every_principal_shape(
            self, store: ContractStore, embedder: HashingEmbedder, email: str) -> None:
        store.replace_identities(CONNECTOR, [
            Membership("group:kb:managers", "user:carol@acme.com"),
            Membership("group:kb:leadership", "group:kb:managers"),  # carol, two levels up
            Membership("group:kb:finance", "user:dan@acme.com"),
        ], [Alias("carol.alt@corp.example", "carol@acme.com")])
        index(store, embedder, *(make_doc(f"{shape}.md", f"{KEYWORD} {shape}", acl=acl)
                                 for shape, acl in self.SHAPES.items()))
        who = acl_filter(resolve(store, email))
        assert self.visible(store, embedder, who) == {doc_id(f"{s}.md")
                                                       for s in self.READS[email]}

    @pytest.mark.parametrize(("held", "admitted"), [
        (("group:eng", "group:managers"), True),
        (("group:eng",), False),
        (("group:managers",), False),
        (("group:eng", "user:zed@acme.com"), True),
    ])
    def test_every_gate_must_be_met(self, store: ContractStore, embedder: HashingEmbedder,
                                    held: tuple[str, ...], admitted: bool) -> None:
        acl = Acl.of([["group:eng"], ["group:managers", "user:zed@acme.com"]])
        gated = make_doc("gated.md", f"{KEYWORD} two gates", acl=acl)
        index(store, embedder, gated)
        expected = {gated.doc_id} if admitted else set()
        assert self.visible(store, embedder, caller(*held)) == expected

    def test_deny_wins_over_every_gate(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        store.replace_identities(CONNECTOR, [
            Membership("group:kb:contractors", "user:carl@acme.com")], [])
        company = make_doc("company.md", f"{KEYWORD} company",
                           acl=Acl.single(["domain:acme.com"],
                                          deny=["user:mallory@acme.com", "group:kb:contractors"]))
        public = make_doc("public.md", f"{KEYWORD} public",
                          acl=Acl.single([EVERYONE], deny=["user:mallory@acme.com"]))
        index(store, embedder, company, public)
        see = {e: self.visible(store, embedder, acl_filter(resolve(store, e)))
               for e in ("alice@acme.com", "mallory@acme.com", "carl@acme.com")}
        assert see == {"alice@acme.com": {company.doc_id, public.doc_id},
                       "mallory@acme.com": set(),
                       "carl@acme.com": {public.doc_id}}

    def test_identity_facts_admit_only_to_the_asserting_connectors_documents(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        # "wiki" asserts that mallory is also ceo@acme.com and puts her in its group "hr";
        # "kb" documents naming ceo@acme.com or a group called hr must stay closed to her.
        store.replace_identities("wiki", [Membership("group:wiki:hr", "user:mallory@acme.com")],
                                 [Alias("ceo@acme.com", "mallory@acme.com")])
        kb_ceo = make_doc("ceo.md", f"{KEYWORD} ceo", acl=Acl.single(["user:ceo@acme.com"]))
        kb_hr = make_doc("hr.md", f"{KEYWORD} hr", acl=Acl.single(["group:kb:hr"]))
        wiki_ceo = make_doc("ceo.md", f"{KEYWORD} ceo", acl=Acl.single(["user:ceo@acme.com"]),
                            connector="wiki")
        wiki_hr = make_doc("hr.md", f"{KEYWORD} hr", acl=Acl.single(["group:wiki:hr"]),
                           connector="wiki")
        index(store, embedder, kb_ceo, kb_hr, wiki_ceo, wiki_hr)
        mallory = acl_filter(resolve(store, "mallory@acme.com", [CONNECTOR, "wiki"]))
        assert self.visible(store, embedder, mallory) == {wiki_ceo.doc_id, wiki_hr.doc_id}
        ceo = acl_filter(resolve(store, "ceo@acme.com", [CONNECTOR, "wiki"]))
        assert self.visible(store, embedder, ceo) == {kb_ceo.doc_id, wiki_ceo.doc_id}
        # A connector left out of the filter (removed from the configuration) admits nothing.
        kb_only = acl_filter(resolve(store, "ceo@acme.com", [CONNECTOR]))
        assert self.visible(store, embedder, kb_only) == {kb_ceo.doc_id}
        assert store.connector_names() == [CONNECTOR, "wiki"]

    def test_the_same_principal_under_another_connector_does_not_match(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        index(store, embedder,
              make_doc("a.md", f"{KEYWORD} a", acl=Acl.single(["group:kb:eng"])),
              make_doc("b.md", f"{KEYWORD} b", acl=Acl.single(["group:kb:eng"]),
                       connector="other"))
        held = {"group:kb:eng", EVERYONE}
        assert self.visible(store, embedder, AclFilter({CONNECTOR: held})) == {doc_id("a.md")}
        assert self.visible(store, embedder, AclFilter({"other": held})) == {"other:b.md"}
        assert self.visible(store, embedder, AclFilter({"other": {EVERYONE},
                                                        CONNECTOR: held})) == {doc_id("a.md")}

    FAIL_CLOSED: ClassVar[dict[str, Acl]] = {
        "no-gates": Acl(),
        "empty-gate": Acl.of([["group:eng"], []]),
        "unknown-principal": Acl.single(["robot:r2d2"]),
        "unknown-beside-valid": Acl.single(["user:alice@acme.com", "printer:floor-3"]),
        "unfetchable": Acl.nobody("permissions API answered 500"),
    }

    def test_fail_closed_documents_are_invisible_to_a_caller_holding_everything(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        docs = [make_doc(f"{name}.md", f"{KEYWORD} {name}", acl=acl)
                for name, acl in self.FAIL_CLOSED.items()]
        control = make_doc("control.md", f"{KEYWORD} control", acl=Acl.single([EVERYONE]))
        index(store, embedder, *docs, control)
        everything = caller("user:alice@acme.com", "group:eng", "robot:r2d2", "printer:floor-3",
                            "domain:acme.com")
        assert self.visible(store, embedder, everything) == {control.doc_id}
        assert all(store.document(d.doc_id) is not None for d in docs)  # kept, for status
        assert store.stats(CONNECTOR).readable_by_nobody == len(self.FAIL_CLOSED)

    def test_a_chunk_without_words_is_kept(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        # "..." embeds to a zero vector: still indexed, still found by its other chunk.
        odd = make_doc("odd.md", "...", f"{KEYWORD} after the dots", acl=Acl.single([EVERYONE]),
                       title="...")
        assert np.count_nonzero(embedder.embed(["...\n..."])[0]) == 0
        index(store, embedder, odd)
        stored = store.document(odd.doc_id)
        assert stored is not None and stored.chunks == 2
        assert [h.ordinal for h in store.lexical(KEYWORD, caller(), 10)] == [1]

    def test_a_caller_with_no_principals_sees_nothing(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        index(store, embedder, make_doc("open.md", f"{KEYWORD}", acl=Acl.single([EVERYONE])))
        assert self.visible(store, embedder, AclFilter({})) == set()

    def test_results_are_limited_and_best_first(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        # Same length, more "kestrel" = better; two more documents nobody here may read.
        docs = [make_doc(f"log/{i:02}.md", " ".join(["kestrel"] * (i + 1) + ["filler"] * (20 - i)),
                         acl=Acl.single([EVERYONE]), title="Bird log") for i in range(12)]
        hidden = [make_doc(f"hidden/{i}.md", " ".join(["kestrel"] * 20),
                           acl=Acl.single(["group:ornithologists"])) for i in range(2)]
        index(store, embedder, *docs, *hidden)
        best = {d.doc_id for d in docs[-5:]}
        runs = [("lexical", lambda n: store.lexical("kestrel", caller(), n))]
        if self.supports_knn:
            query = embedder.embed(["kestrel"])[0]
            runs.append(("dense", lambda n: store.dense(query, caller(), n)))
        for name, search in runs:
            top5, top8, every = search(5), search(8), search(100)
            assert len(top5) == 5 and len(top8) == 8, name
            assert len(every) == 12, name
            assert {h.doc_id for h in top5} == best, name
            assert [h.chunk_id for h in top8[:5]] == [h.chunk_id for h in top5], name
            scores = [h.score for h in every]
            assert scores == sorted(scores, reverse=True), name
            assert search(0) == [], name

    # -- identities and state ----------------------------------------------------------------
    def test_identities_replace_per_source(self, store: ContractStore) -> None:
        a = "user:a@x.com"
        assert store.groups_of([a]) == [] and store.groups_of([]) == []
        store.replace_identities("entra", [Membership("group:entra:eng", a),
                                           Membership("group:entra:all", "group:entra:eng"),
                                           Membership("group:shared", a)],
                                 [Alias("a.alt@x.com", "a@x.com")])
        store.replace_identities("gdrive", [Membership("group:gdrive:eng", a),
                                            Membership("group:shared", a)], [])
        version = store.identity_version()
        assert store.groups_of([a]) == [Membership("group:entra:eng", a),
                                        Membership("group:gdrive:eng", a),
                                        Membership("group:shared", a)]
        assert store.groups_of(["group:entra:eng", "user:nobody@x.com"]) == [
            Membership("group:entra:all", "group:entra:eng")]
        assert store.aliases_of("a@x.com") == [Alias("a.alt@x.com", "a@x.com")]
        assert store.aliases_of("a.alt@x.com") == [Alias("a.alt@x.com", "a@x.com")]
        assert store.aliases_of("b@x.com") == []

        store.replace_identities("entra", [Membership("group:entra:ops", a)], [])
        assert store.identity_version() > version
        assert store.groups_of([a]) == [Membership("group:entra:ops", a),
                                        Membership("group:gdrive:eng", a),
                                        Membership("group:shared", a)]
        assert store.groups_of(["group:entra:eng"]) == []
        assert store.aliases_of("a@x.com") == []

    def test_state_round_trips_json(self, store: ContractStore) -> None:
        key = "sync:kb:full:checkpoint"
        assert store.get_state(key) is None
        store.set_state(key, {"cursor": "page-2", "report": {"documents": 3, "errors": []}})
        assert store.get_state(key) == {"cursor": "page-2",
                                        "report": {"documents": 3, "errors": []}}
        store.set_state(key, ["replaced", 1, None])
        store.set_state("sync:kb:full:last", "ok")
        assert store.get_state(key) == ["replaced", 1, None]
        store.delete_state(key)
        store.delete_state("never-set")
        assert store.get_state(key) is None
        assert store.get_state("sync:kb:full:last") == "ok"

    # -- status and snapshots ----------------------------------------------------------------
    def test_stats_and_embedder_names(
            self, store: ContractStore, embedder: HashingEmbedder) -> None:
        index(store, embedder, make_doc("a.md", "one", "two", acl=Acl.single([EVERYONE])),
              make_doc("b.md", "three", acl=Acl.nobody("no ACL returned")))
        index(store, embedder, make_doc("c.md", "four", acl=Acl.single([EVERYONE])),
              embedder_name="older-model")
        index(store, embedder, make_doc("d.md", "five", acl=Acl.single([EVERYONE]),
                                        connector="other"))
        stats = store.stats(CONNECTOR)
        assert (stats.documents, stats.chunks, stats.readable_by_nobody) == (3, 4, 1)
        assert stats.oldest_acl_confirmed_at is not None
        assert store.stats("unknown").documents == 0
        assert store.embedder_names() == [embedder.name, "older-model"]

    def test_snapshot_is_deterministic(
            self, make_store: StoreFactory, embedder: HashingEmbedder) -> None:
        docs = [make_doc("a.md", "alpha", "beta", acl=Acl.single(["group:eng"])),
                make_doc("b.md", "gamma", acl=Acl.single([EVERYONE], deny=["user:x@acme.com"]))]
        first, second = make_store(), make_store()
        index(first, embedder, *docs)
        index(second, embedder, *reversed(docs))
        snap = first.snapshot()
        assert snap == second.snapshot() == first.snapshot()
        assert sorted(snap["documents"]) == [docs[0].doc_id, docs[1].doc_id]
        assert [c["text"] for c in snap["documents"][docs[0].doc_id]["chunks"]] == ["alpha",
                                                                                    "beta"]
        first.update_acl(docs[0].doc_id, Acl.single(["group:ops"]), None)
        assert first.snapshot() != snap

