"""Conversations: the standalone rewrite of a follow-up, the bounded window, and that a
conversation is only ever its starter's (another person with the same name gets their own)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from assistant.conversations import ConversationStore, standalone
from assistant.llm.base import Turn
from core.errors import UsageError

pytestmark = pytest.mark.unit
HISTORY = [Turn("user", "Who approves annual leave?"), Turn("assistant", "Your manager [1].")]


@pytest.mark.parametrize("follow_up,expected", [
    ("And how many days do I get?", "Who approves annual leave? And how many days do I get?"),
    ("How long does it take?", "Who approves annual leave? How long does it take?"),
    ("In Berlin?", "Who approves annual leave? In Berlin?"),
    ("When does the Berlin office open on Saturdays?",
     "When does the Berlin office open on Saturdays?"),
])
def test_a_follow_up_that_leans_on_the_last_question_is_made_standalone(
        follow_up: str, expected: str) -> None:
    assert standalone(follow_up, HISTORY) == expected
    assert standalone(follow_up, []) == follow_up


def test_turns_are_kept_per_owner_and_name_in_a_private_file(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3", window=3)
    store.append("Ada@Example.org", "c1", "q1", "a1")
    store.append("ada@example.org", "c1", "q2", "a2")
    store.append("ada@example.org", "c2", "other", "x")
    assert store.history("ada@example.org", "c1") == [
        Turn("assistant", "a1"), Turn("user", "q2"), Turn("assistant", "a2")]  # window 3
    assert store.history("bob@example.org", "c1") == []  # Bob's c1 is his own, empty
    assert stat.S_IMODE((tmp_path / "c.sqlite3").stat().st_mode) == 0o600


@pytest.mark.parametrize("name", ["", "../x", "a b", "x" * 129, "-rf"])
def test_bad_names_are_usage_errors(name: str) -> None:
    with pytest.raises(UsageError):
        ConversationStore.check_name(name)


def test_an_unusable_store_is_a_store_error(tmp_path: Path) -> None:
    from core.errors import StoreError

    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StoreError):
        ConversationStore(tmp_path / "dir.sqlite3").history("a@b.c", "c1")
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        ConversationStore(tmp_path / "junk.sqlite3").append("a@b.c", "c1", "q", "a")


def test_a_look_alike_address_is_another_person(tmp_path: Path) -> None:
    # Only ASCII letters fold: U+212A KELVIN SIGN lower-cases to "k" under str.casefold, which
    # would hand kim's conversation to whoever signs in with the look-alike address.
    store = ConversationStore(tmp_path / "c.sqlite3")
    store.append("kim@example.org", "c1", "Which company do we acquire?", "Lumen [1].")
    assert store.history("\u212aim@example.org", "c1") == []
    assert store.history("KIM@example.org", "c1") == [
        Turn("user", "Which company do we acquire?"), Turn("assistant", "Lumen [1].")]


def test_turns_longer_than_a_store_item_are_cut(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path / "c.sqlite3")
    store.append("ada@example.org", "c1", "q" * 20_000, "a" * 20_000)
    assert [len(t.text) for t in store.history("ada@example.org", "c1")] == [16_000, 16_000]


def test_a_chain_of_follow_ups_keeps_the_question_that_stood_alone() -> None:
    history = [Turn("user", "Who approves annual leave?"), Turn("assistant", "Your manager."),
               Turn("user", "And how many days?"), Turn("assistant", "Twenty-eight [1].")]
    assert standalone("What about in Berlin?", history) == (
        "Who approves annual leave? And how many days? What about in Berlin?")
    # A question that stands alone starts the chain afresh; answers are never part of it.
    history += [Turn("user", "When does the Berlin office open?"), Turn("assistant", "At 7.")]
    assert standalone("And on Saturdays?", history) == (
        "When does the Berlin office open? And on Saturdays?")
    assert "Twenty-eight" not in standalone("And it?", history[:4])


def test_the_chain_is_bounded() -> None:
    history = [Turn("user", "Who approves annual leave?")]
    history += [Turn("user", f"And {n}?") for n in range(10)]
    assert standalone("And then?", history) == "And 7? And 8? And 9? And then?"
