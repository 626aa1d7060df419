"""Conversations: the previous turns of a follow-up question, embedded in SQLite (production:
Amazon DynamoDB or Redis, assistant/conversations_remote.py, behind the same protocol).

A conversation is keyed by the person who started it and a name they choose: another person
asking with the same name gets a conversation of their own, so no one can read or continue
someone else's (there is nothing to guess). Only a bounded window of recent turns is kept for
the provider, and the follow-up is rewritten into a standalone query before retrieval, which
always runs with the asker's *current* identity: an answer from an earlier turn is context,
never a source.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from assistant.llm.base import Turn
from core.errors import StoreError, UsageError
from core.principals import fold

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
# Words that lean on an earlier turn: "And who approves it?", "What about them?"
_ANAPHORA = re.compile(r"\b(it|its|they|them|their|this|that|those|these|he|she|his|her|"
                       r"there|then|same|also|else)\b|^(and|but|what about|how about)\b",
                       re.IGNORECASE)
_WORD = re.compile(r"\w+")
# Earlier questions a follow-up may be joined with (each leaning on the one before).
MAX_CHAIN = 3
# What one turn may hold in a store (an answer is far shorter; DynamoDB items stop at 400 KB).
MAX_TEXT = 16_000


class Conversations(Protocol):
    """Turns per (owner, conversation name): a name is only ever its owner's, so another
    person's conversation id reads as a new, empty one (not found), never as its content."""

    window: int

    def history(self, owner: str, conversation: str) -> list[Turn]: ...

    def append(self, owner: str, conversation: str, question: str, answer: str) -> None: ...


def owner_key(email: str) -> str:
    """The one case rule for emails (ASCII letters only): a look-alike address spelt with
    U+212A KELVIN SIGN is another person, never the owner."""
    return fold(email.strip())


def window_of(turns: Sequence[Turn], window: int) -> list[Turn]:
    return list(turns[-window:]) if window > 0 else []


def _leans(question: str) -> bool:
    return bool(_ANAPHORA.search(question)) or len(_WORD.findall(question)) <= 3


def standalone(question: str, history: Sequence[Turn]) -> str:
    """The follow-up as a query that retrieval can answer alone: a question that leans on the
    previous one (a pronoun, "and ...", or three words or fewer) is prefixed with it, and when
    that one leaned on its own predecessor, with the chain back to the question that stood
    alone ("Who approves leave?" / "And how many days?" / "What about Berlin?" keeps "leave").
    Only the user's own questions in the (bounded) history are used, never an answer."""
    if not _leans(question):
        return question
    chain: list[str] = []
    for turn in reversed(history):
        if turn.role != "user":
            continue
        chain.append(turn.text)
        if not _leans(turn.text) or len(chain) == MAX_CHAIN:
            break
    return " ".join([*reversed(chain), question])


class ConversationStore:
    """Turns per (owner, conversation) in one SQLite file created 0600."""

    def __init__(self, path: Path, window: int = 6) -> None:
        self.path = path
        self.window = window

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = sqlite3.connect(os.fsencode(self.path), timeout=30.0, isolation_level=None)
            db.execute("CREATE TABLE IF NOT EXISTS turns (owner TEXT NOT NULL, "
                       "conversation TEXT NOT NULL, seq INTEGER NOT NULL, role TEXT NOT NULL, "
                       "text TEXT NOT NULL, at REAL NOT NULL, "
                       "PRIMARY KEY (owner, conversation, seq))")
            return db
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the conversation store {self.path} "
                             f"({getattr(exc, 'strerror', None) or exc})") from None

    @staticmethod
    def check_name(name: str) -> str:
        if not _NAME.match(name):
            raise UsageError("--conversation needs a name of letters, digits and _.:- "
                             "(at most 128)")
        return name

    def history(self, owner: str, conversation: str) -> list[Turn]:
        """The last `window` turns of the owner's conversation (none: a new one)."""
        db = self._connect()
        try:
            rows = db.execute("SELECT role, text FROM turns WHERE owner = ? AND conversation = ? "
                              "ORDER BY seq DESC LIMIT ?",
                              (owner_key(owner), conversation, self.window)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the conversation store {self.path} ({exc})") from None
        finally:
            db.close()
        return [Turn("user" if role == "user" else "assistant", text)
                for role, text in reversed(rows)]

    def append(self, owner: str, conversation: str, question: str, answer: str) -> None:
        db = self._connect()
        try:
            with db:
                db.execute("BEGIN IMMEDIATE")
                (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM turns WHERE owner = ? "
                                     "AND conversation = ?",
                                     (owner_key(owner), conversation)).fetchone()
                now = time.time()
                db.executemany("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?)", [
                    (owner_key(owner), conversation, last + 1, "user", question[:MAX_TEXT],
                     now),
                    (owner_key(owner), conversation, last + 2, "assistant", answer[:MAX_TEXT],
                     now)])
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the conversation store {self.path} ({exc})") from None
        finally:
            db.close()
