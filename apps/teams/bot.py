"""The Teams bot's conversation logic (botbuilder): personal chats and channel @mentions.

The asker is the activity's AAD object id -> that member's `email` (else `userPrincipalName`)
from the conversation's member list (TeamsInfo.get_member) -> principals; the display name is
never used. A personal chat is answered with the asker's own access. Anywhere else (a channel,
a group chat, an unknown kind) the reply is read by every member, so it may cite only documents
every member reads (auth/audience.py): the member list is read whole (every page), and a member
without an address, or a list that cannot be read, admits nothing. Answers are Adaptive Cards
with numbered citations (title links and quotes) and feedback buttons into the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botbuilder.core import ActivityHandler, CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsInfo

from apps.runtime import Lane, LanePool
from apps.teams.cards import answer_card
from apps.web.security import RateLimiter
from assistant.audit import AuditLog, AuditRecord
from assistant.citations import Answer
from auth.audience import Audience, for_audience
from auth.identity import Identity
from core.errors import ClearanceError
from core.redact import redact_text

log = logging.getLogger("clearance.teams")
T = TypeVar("T")

UNKNOWN_USER = ("I can't answer you: I could not match your Teams account to a company email "
                "address. Ask your administrator to check your account.")
NO_CHANNEL_ANSWER = ("I found no answer in documents that everyone in this conversation can "
                     "open. Ask me in a personal chat to search what you can open yourself.")
EMPTY = "Ask me a question about company documents."
FAILED = "Something went wrong while answering; nothing was shared. Please try again later."
TOO_MANY = "You have asked many questions in the last minute: wait a moment and ask again."
MAX_MEMBERS = 1000  # a longer member list is not read whole: the conversation admits nothing
PAGE_SIZE = 100
MAX_PAGES = 100  # pages of a member list read at most (empty pages included)
MAX_QUESTION = 4000
_AT = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]{0,200}>")


def address_of(member: Any) -> str | None:
    """A member's `email`, else `userPrincipalName`, if it looks like an address."""
    for name in ("email", "user_principal_name"):
        value = getattr(member, name, None)
        if isinstance(value, str) and value:
            if "@" in value and value.strip() == value and " " not in value \
                    and len(value) <= 320:
                return value
            return None  # a malformed address is not replaced by a weaker field
    return None


def conversation_name(conversation_id: str, who: str | None = None) -> str:
    """A ConversationStore name for a Teams conversation (ids are long and carry `;`)."""
    digest = hashlib.sha256(conversation_id.encode()).hexdigest()[:40]
    return f"teams:{digest}" + (f":{hashlib.sha256(who.encode()).hexdigest()[:16]}"
                                if who else "")


def question_of(activity: Any) -> str:
    text = activity.text if isinstance(activity.text, str) else ""
    text = _TAG.sub(" ", _AT.sub(" ", text)).replace("&nbsp;", " ")
    return " ".join(text.split())[:MAX_QUESTION]


@dataclass(frozen=True)
class Roster:
    """Who a reply in this conversation is shown to (addresses), and whether the list is whole."""

    addresses: tuple[str, ...]
    complete: bool


class TeamsBot(ActivityHandler):  # type: ignore[misc]
    def __init__(self, lanes: LanePool, audit: AuditLog, *, asks_per_minute: int = 20) -> None:
        super().__init__()
        self.lanes = lanes
        self.audit = audit
        self.limiter = RateLimiter(asks_per_minute)

    async def _on_lane(self, work: Callable[[Lane], T]) -> T:
        return await asyncio.wrap_future(self.lanes.submit(work))

    # -- who --------------------------------------------------------------------------------
    async def asker_address(self, ctx: TurnContext) -> str | None:
        sender = ctx.activity.from_property
        aad = getattr(sender, "aad_object_id", None) if sender is not None else None
        if not isinstance(aad, str) or not aad.strip():
            return None
        try:
            member = await TeamsInfo.get_member(ctx, aad)
        except Exception as exc:  # not found, connector refused, unreachable
            log.warning("teams.member_lookup_failed %s", redact_text(type(exc).__name__))
            return None
        if getattr(member, "aad_object_id", None) != aad:
            return None  # the list answered for somebody else
        return address_of(member)

    async def roster(self, ctx: TurnContext) -> Roster:
        """Every member of the conversation (all pages), by address; incomplete otherwise."""
        found: list[str] = []
        token: str | None = None
        seen: set[str] = set()
        bot_id = getattr(ctx.activity.recipient, "id", None)
        try:
            for _ in range(MAX_PAGES):
                page = await TeamsInfo.get_paged_members(ctx, token, PAGE_SIZE)
                members = getattr(page, "members", None)
                if not isinstance(members, list):
                    return Roster((), False)
                for m in members:
                    if getattr(m, "id", None) == bot_id:
                        continue
                    address = address_of(m)
                    if address is None:  # a guest without an address, a bot: cannot be cleared
                        return Roster((), False)
                    found.append(address)
                if len(found) > MAX_MEMBERS:
                    return Roster((), False)
                token = getattr(page, "continuation_token", None)
                if not token:
                    break
                if token in seen:  # a list that goes round in circles is never read whole
                    return Roster((), False)
                seen.add(token)
            else:
                return Roster((), False)
        except Exception as exc:
            log.warning("teams.roster_failed %s", redact_text(type(exc).__name__))
            return Roster((), False)
        return Roster(tuple(dict.fromkeys(found)), bool(found))

    # -- answering --------------------------------------------------------------------------
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        ctx = turn_context
        try:
            if isinstance(ctx.activity.value, dict) and \
                    ctx.activity.value.get("clearance") == "feedback":
                await self._feedback(ctx, ctx.activity.value)
                return
            await self._answer(ctx)
        except Exception as exc:
            log.error("teams answer failed: %s",
                      redact_text(f"{type(exc).__name__}: {exc}"))
            await ctx.send_activity(MessageFactory.text(FAILED))

    async def _answer(self, ctx: TurnContext) -> None:
        activity = ctx.activity
        address = await self.asker_address(ctx)
        if address is None:
            await ctx.send_activity(MessageFactory.text(UNKNOWN_USER))
            return
        question = question_of(activity)
        if not question:
            await ctx.send_activity(MessageFactory.text(EMPTY))
            return
        if not self.limiter.allow(address.casefold()):
            await ctx.send_activity(MessageFactory.text(TOO_MANY))
            return
        conversation = getattr(activity.conversation, "id", None) or ""
        personal = getattr(activity.conversation, "conversation_type", None) == "personal"
        roster = None if personal else await self.roster(ctx)
        name = conversation_name(conversation, address if personal else None)

        def work(lane: Lane) -> Answer:
            asker = lane.identity(address)
            assistant = lane.assistant
            if roster is not None:
                members: list[Identity] = [asker]
                complete = roster.complete
                for a in roster.addresses:
                    try:
                        members.append(lane.identity(a))
                    except ClearanceError:
                        complete = False
                assistant = for_audience(assistant, Audience(tuple(members), complete))
            return assistant.ask(question, asker, conversation=name)

        answer = await self._on_lane(work)
        text = answer.answer
        if answer.refused and roster is not None:
            text = NO_CHANNEL_ANSWER
        feedback = {"clearance": "feedback", "c": name, "q": question[:500]}
        card = answer_card(text, answer, feedback)
        reply = MessageFactory.attachment(CardFactory.adaptive_card(card))
        reply.text = text
        await ctx.send_activity(reply)

    async def _feedback(self, ctx: TurnContext, value: dict[str, Any]) -> None:
        vote = value.get("vote")
        if vote not in ("up", "down"):
            return
        address = await self.asker_address(ctx)
        if address is None:
            return  # feedback from somebody we cannot name is not recorded
        conversation = str(value.get("c", ""))[:128]
        question = str(value.get("q", ""))[:1500]

        def work(lane: Lane) -> None:
            who = lane.identity(address)
            self.audit.write(AuditRecord(
                at=time.time(), email=who.email, principals=sorted(who.principals),
                question=question, hits=[], citations=[], refused=False, latency_ms=0.0,
                action="feedback", conversation=conversation,
                feedback={"vote": str(vote), "comment": "", "surface": "teams"}))

        await self._on_lane(work)
        await ctx.send_activity(MessageFactory.text("Thanks for the feedback."))
