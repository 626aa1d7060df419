"""The runtime under a long-running server: many askers at once, one store connection per
serving thread, bounded identity caches that a group sync landing meanwhile invalidates."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apps.runtime import Runtime
from auth.identity import CachedResolver
from core import principals as P
from core.models import Membership
from core.settings import load_settings
from indexer.store.sqlite import SqliteStore
from tests.web.corpus import ADA, CEO, SECRET_DOC, SECRET_WORDS, build

pytestmark = pytest.mark.integration


def test_concurrent_askers_get_their_own_answers(tmp_path: Path) -> None:
    home, config = build(tmp_path)
    rt = Runtime(load_settings(home, config), read_only=True)
    pool = rt.lanes(size=4)
    question = "When does the board vote on the acquisition of Lumen Robotics?"

    def ask(email: str) -> tuple[str, list[str], str]:
        def work(lane):  # type: ignore[no-untyped-def]
            answer = lane.assistant.ask(question, lane.identity(email))
            return email, [c.doc_id for c in answer.citations], answer.answer
        return pool.run(work)

    try:
        with ThreadPoolExecutor(max_workers=20) as askers:
            results = list(askers.map(ask, [CEO, ADA] * 20))
        assert pool.built <= 4  # never more connections than serving threads
        stores = {id(lane.store) for lane in pool._built}
        assert len(stores) == pool.built
        for email, cited, text in results:
            if email == CEO:
                assert SECRET_DOC in cited
            else:  # the denied side: not cited, not quoted, under any interleaving
                assert SECRET_DOC not in cited
                assert not any(w in text for w in SECRET_WORDS)
    finally:
        pool.close()


def test_group_sync_landing_while_serving_is_seen(tmp_path: Path) -> None:
    home, config = build(tmp_path)
    rt = Runtime(load_settings(home, config), read_only=True)
    pool = rt.lanes(size=2)
    try:
        before = pool.run(lambda lane: lane.identity(ADA))
        assert P.scope("docs", P.group("exec", "docs")) not in before.at("docs").principals
        # Another process (a worker's group sync) writes the same index meanwhile.
        writer = SqliteStore(rt.settings.store_path)
        writer.replace_identities("docs", [
            Membership(P.group("exec", "docs"), P.user(CEO)),
            Membership(P.group("exec", "docs"), P.user(ADA))], [])
        writer.close()
        after = pool.run(lambda lane: lane.identity(ADA))
        granted = after.at("docs").principals
        assert any("exec" in p for p in granted), granted
        hits = pool.run(lambda lane: lane.assistant.search("Nightjar acquisition",
                                                           lane.identity(ADA), 5))
        assert SECRET_DOC in [h.doc_id for h in hits]
    finally:
        pool.close()


def test_resolver_is_bounded_and_thread_safe(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "index.sqlite3")
    resolver = CachedResolver(store, ["docs"], max_entries=8)
    errors: list[BaseException] = []

    def hammer(i: int) -> None:
        try:
            for j in range(30):
                ident = resolver(f"user{(i * 30 + j) % 50}@acme.com")
                assert ident.email.endswith("@acme.com")
        except BaseException as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(resolver) <= 8
    store.close()
