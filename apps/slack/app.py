"""The Slack bot: @mentions in channels (answered in a thread) and direct messages.

The asker is Slack user id -> email (`users.info`) -> principals (the runtime's identity
resolution). In a channel the answer may cite only documents every member of the channel reads
(auth/audience.py); with `channel_replies = "ephemeral"` it is the asker's own answer, shown to
the asker alone. Somebody the bot cannot identify gets one refusal line that names nothing.
HTTP mode verifies `X-Slack-Signature` over the raw body and refuses stale timestamps (bolt's
request verification, 401); events are acknowledged at once and answered afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from apps.runtime import Runtime
from assistant.audit import AuditRecord
from assistant.citations import Answer
from auth.audience import Audience, for_audience
from auth.identity import Identity
from core.errors import ClearanceError, ConfigError
from core.redact import redact_text
from core.settings import Settings, SlackSettings

log = logging.getLogger("clearance.slack")

UNKNOWN_USER = ("I can't answer you: I could not match your Slack account to a company email "
                "address. Ask your administrator to check your Slack profile.")
NO_CHANNEL_ANSWER = ("I found no answer in documents that everyone in this channel can open. "
                     "Ask me in a direct message to search what you can open yourself.")
FAILED = "Something went wrong while answering; nothing was shared. Please try again later."
MAX_MEMBERS = 1000  # a longer member list is not read whole: the channel admits nothing
MAX_QUESTION = 4000
_MENTION = re.compile(r"<@[A-Z0-9]+>")


def _secret(environ: Mapping[str, str], name: str | None, key: str) -> str:
    if not name:
        raise ConfigError(f"[slack] {key} is not set")
    value = environ.get(name, "")
    if not value.strip():
        raise ConfigError(f"[slack] {key}: the environment variable {name} is not set")
    return value.strip()


class SlackBot:
    """The answering logic, on one bolt App (HTTP or Socket Mode)."""

    def __init__(self, runtime: Runtime, cfg: SlackSettings, environ: Mapping[str, str],
                 *, http: bool = True) -> None:
        self.runtime = runtime
        self.cfg = cfg
        token = _secret(environ, cfg.bot_token_env, "bot_token_env")
        secret = _secret(environ, cfg.signing_secret_env, "signing_secret_env") if http else None
        self._known = (token, secret)
        base_url = cfg.api_url or "https://slack.com/api/"
        self.client = WebClient(token=token, base_url=base_url, timeout=10)
        # Components share one store connection: answers are made one at a time.
        self._lock = threading.Lock()
        try:
            self.app = App(client=self.client, signing_secret=secret,
                           request_verification_enabled=http, process_before_response=False)
        except Exception as exc:  # bolt calls auth.test: a bad token or an unreachable API
            raise ConfigError(f"[slack] cannot start the bot: {self._redact(str(exc))}") from None
        self.bot_user_id: str = str(self.app.client.auth_test().get("user_id") or "")
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.action(re.compile(r"^feedback_(up|down)$"))(self._on_feedback)

    def _redact(self, text: str) -> str:
        out = redact_text(text)
        for known in self._known:
            if known:
                out = out.replace(known, "[redacted]")
        return out

    # -- who --------------------------------------------------------------------------------
    def email_of(self, user_id: str) -> str | None:
        """The user's email from `users.info`, or None (bots, deactivated, hidden, malformed)."""
        if not isinstance(user_id, str) or not re.fullmatch(r"[UW][A-Z0-9]{1,40}", user_id):
            return None
        try:
            info = self.client.users_info(user=user_id)
        except SlackApiError:
            return None
        user = info.get("user")
        if not isinstance(user, dict) or user.get("id") != user_id:
            return None
        if user.get("is_bot") or user.get("deleted"):
            return None
        profile = user.get("profile")
        email = profile.get("email") if isinstance(profile, dict) else None
        if not isinstance(email, str) or "@" not in email or email.strip() != email \
                or " " in email:
            return None
        return email

    def identity_of(self, user_id: str) -> Identity | None:
        email = self.email_of(user_id)
        if email is None:
            return None
        try:
            return self.runtime.identity(email)
        except ClearanceError:
            return None

    def audience_of(self, channel: str, asker: Identity) -> Audience:
        """Every member of the channel (all pages), each identified; incomplete otherwise."""
        members: list[str] = []
        cursor: str | None = None
        try:
            while True:
                page = self.client.conversations_members(channel=channel, cursor=cursor,
                                                         limit=200)
                got = page.get("members")
                if not isinstance(got, list):
                    return Audience((asker,), complete=False)
                members.extend(str(m) for m in got)
                if len(members) > MAX_MEMBERS:
                    return Audience((asker,), complete=False)
                meta = page.get("response_metadata") or {}
                cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
                if not cursor:
                    break
        except SlackApiError:
            return Audience((asker,), complete=False)
        identities = [asker]
        for uid in dict.fromkeys(members):
            if uid == self.bot_user_id:
                continue  # the bot itself reads nothing
            who = self.identity_of(uid)
            if who is None:  # another bot, a guest without email: cannot be cleared
                return Audience((asker,), complete=False)
            identities.append(who)
        return Audience(tuple(identities))

    # -- answering --------------------------------------------------------------------------
    def answer(self, *, user: str, channel: str, text: str, thread_ts: str,
               in_channel: bool) -> None:
        question = _MENTION.sub("", text or "").strip()[:MAX_QUESTION]
        with self._lock:
            try:
                self._answer(user, channel, question, thread_ts, in_channel)
            except Exception as exc:
                log.error("slack answer failed: %s", self._redact(f"{type(exc).__name__}: {exc}"))
                self._post(channel, user, thread_ts, FAILED, None, ephemeral=in_channel)

    def _answer(self, user: str, channel: str, question: str, thread_ts: str,
                in_channel: bool) -> None:
        asker = self.identity_of(user)
        if asker is None:
            self._post(channel, user, thread_ts, UNKNOWN_USER, None, ephemeral=in_channel)
            return
        if not question:
            self._post(channel, user, thread_ts, "Ask me a question about company documents.",
                       None, ephemeral=in_channel)
            return
        ephemeral = in_channel and self.cfg.channel_replies == "ephemeral"
        assistant = self.runtime.assistant
        if in_channel and not ephemeral:
            assistant = for_audience(assistant, self.audience_of(channel, asker))
        conversation = re.sub(r"[^A-Za-z0-9_.:-]", "_", f"slack:{channel}:{thread_ts}")[:128]
        if ephemeral:
            conversation = f"{conversation}:{user}"[:128]
        answer = assistant.ask(question, asker, conversation=conversation)
        text = answer.answer
        if answer.refused and in_channel and not ephemeral:
            text = NO_CHANNEL_ANSWER
        self._post(channel, user, thread_ts, text, answer, ephemeral=ephemeral,
                   feedback={"c": conversation, "q": question[:1500]})

    def _post(self, channel: str, user: str, thread_ts: str, text: str, answer: Answer | None,
              *, ephemeral: bool, feedback: dict[str, str] | None = None) -> None:
        blocks = answer_blocks(text, answer, feedback)
        if ephemeral:
            self.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks,
                                           thread_ts=thread_ts)
        else:
            self.client.chat_postMessage(channel=channel, text=text, blocks=blocks,
                                         thread_ts=thread_ts)

    # -- listeners --------------------------------------------------------------------------
    def _on_mention(self, event: dict[str, Any]) -> None:
        if event.get("bot_id") or not isinstance(event.get("user"), str):
            return
        self.answer(user=event["user"], channel=str(event.get("channel", "")),
                    text=str(event.get("text", "")),
                    thread_ts=str(event.get("thread_ts") or event.get("ts", "")),
                    in_channel=event.get("channel_type") != "im")

    def _on_message(self, event: dict[str, Any]) -> None:
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            return  # channel messages are answered only when they mention the bot
        if not isinstance(event.get("user"), str):
            return
        self.answer(user=event["user"], channel=str(event.get("channel", "")),
                    text=str(event.get("text", "")),
                    thread_ts=str(event.get("thread_ts") or event.get("ts", "")),
                    in_channel=False)

    def _on_feedback(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        user = body.get("user", {}).get("id") if isinstance(body.get("user"), dict) else None
        try:
            value = json.loads(str(action.get("value", "")))
        except ValueError:
            return
        if not isinstance(value, dict) or not isinstance(user, str):
            return
        vote = "up" if action.get("action_id") == "feedback_up" else "down"
        with self._lock:
            who = self.identity_of(user)
            if who is None:
                return  # feedback from somebody we cannot name is not recorded
            self.runtime.audit.write(AuditRecord(
                at=time.time(), email=who.email, principals=sorted(who.principals),
                question=str(value.get("q", ""))[:1500], hits=[], citations=[], refused=False,
                latency_ms=0.0, action="feedback", conversation=str(value.get("c", ""))[:128],
                feedback={"vote": vote, "comment": "", "surface": "slack"}))


def answer_blocks(text: str, answer: Answer | None,
                  feedback: dict[str, str] | None) -> list[dict[str, Any]]:
    """Block Kit: the answer, numbered citations (title link and quote), feedback buttons."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(text)[:2900]}}]
    if answer is not None and not answer.refused:
        for c in answer.citations[:8]:
            title = _escape(c.title or c.doc_id)[:200]
            link = f"<{c.url}|{title}>" if c.url.startswith(("https://", "http://")) else title
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"[{c.n}] {link}: _{_escape(c.quote)[:400]}_"}]})
    if feedback is not None and answer is not None and not answer.refused:
        value = json.dumps(feedback)[:2000]
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": "feedback_up", "value": value,
             "text": {"type": "plain_text", "text": "Helpful"}},
            {"type": "button", "action_id": "feedback_down", "value": value,
             "text": {"type": "plain_text", "text": "Not helpful"}}]})
    return blocks


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_bot(runtime: Runtime, settings: Settings, environ: Mapping[str, str] | None = None,
              *, http: bool = True) -> SlackBot:
    return SlackBot(runtime, settings.file.slack, os.environ if environ is None else environ,
                    http=http)


def build_router(runtime: Runtime, settings: Settings,
                 environ: Mapping[str, str] | None = None) -> APIRouter:
    """POST /slack/events (HTTP Events mode), signature-verified by bolt."""
    bot = build_bot(runtime, settings, environ)
    handler = SlackRequestHandler(bot.app)
    router = APIRouter()

    @router.post("/slack/events")
    async def events(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > 1_000_000:
            return Response(status_code=413)
        return await handler.handle(request)

    return router


def run_socket_mode(runtime: Runtime, settings: Settings,
                    environ: Mapping[str, str] | None = None) -> None:
    """`clearance slack`: Socket Mode (no public endpoint; the app token opens the socket)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    env = os.environ if environ is None else environ
    app_token = _secret(env, settings.file.slack.app_token_env, "app_token_env")
    bot = build_bot(runtime, settings, env, http=False)
    SocketModeHandler(bot.app, app_token).start()  # type: ignore[no-untyped-call]
