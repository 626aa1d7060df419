"""POST /api/messages: the Bot Framework's activities for the Teams bot, on the web server.

The channel's token is checked before anything else is read from the activity (401 with a JSON
error, never a traceback); a single-tenant bot (`app_tenant_id`) refuses activities of other
tenants (403). The activity then runs through botbuilder's adapter (apps/teams/bot.py), which
replies through the Bot Connector at the activity's (token-signed) service URL.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Coroutine, Mapping
from typing import Any

from botbuilder.core import CloudAdapterBase, TurnContext
from botbuilder.schema import Activity
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from apps.runtime import Runtime
from apps.teams.auth import (
    ChannelTokens,
    MsalCredentials,
    TeamsAuthentication,
    Unauthorized,
    authority,
)
from apps.teams.bot import TeamsBot
from core.errors import ConfigError
from core.redact import redact_text
from core.settings import Settings, TeamsSettings

log = logging.getLogger("clearance.teams")
DEFAULT_METADATA = "https://login.botframework.com/v1/.well-known/openidconfiguration"
MAX_ACTIVITY_BYTES = 256_000
# The channel gives up on a delivery after 15 s (and may deliver it again): a turn still
# running after this long goes on by itself and the delivery is acknowledged.
ACK_AFTER_SECONDS = 10.0
MAX_TURNS = 64  # turns in progress at once; more are refused with 503 (the channel retries)


class TurnRunner:
    """The bot's turns on an event loop of their own (a daemon thread): a turn outlives the
    request that delivered it, whatever server runs the route."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._slots = threading.BoundedSemaphore(MAX_TURNS)
        threading.Thread(target=self.loop.run_forever, name="clearance-teams-turns",
                         daemon=True).start()

    def submit(self, turn: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any] | None:
        if not self._slots.acquire(blocking=False):
            turn.close()
            return None
        future = asyncio.run_coroutine_threadsafe(turn, self.loop)
        future.add_done_callback(lambda _f: self._slots.release())
        return future


class Adapter(CloudAdapterBase):  # type: ignore[misc]
    """botbuilder's cloud adapter on our authentication (no aiohttp request of its own)."""

    def __init__(self, auth: TeamsAuthentication) -> None:
        super().__init__(auth)
        self.on_turn_error = self._turn_error

    async def _turn_error(self, context: TurnContext, error: Exception) -> None:
        log.error("teams turn failed: %s", redact_text(f"{type(error).__name__}: {error}"))


def _password(cfg: TeamsSettings, environ: Mapping[str, str]) -> str:
    if not cfg.app_password_env:
        raise ConfigError("[teams] app_password_env is not set")
    value = environ.get(cfg.app_password_env, "").strip()
    if not value:
        raise ConfigError(f"[teams] app_password_env: the environment variable "
                          f"{cfg.app_password_env} is not set")
    return value


def tenant_of(activity: Activity) -> str | None:
    conv = getattr(activity.conversation, "tenant_id", None)
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant")
    found = conv or (tenant.get("id") if isinstance(tenant, dict) else None)
    return found if isinstance(found, str) else None


def build_router(runtime: Runtime, settings: Settings,
                 environ: Mapping[str, str] | None = None) -> APIRouter:
    cfg = settings.file.teams
    if not cfg.app_id:
        raise ConfigError("[teams] app_id is not set")
    password = _password(cfg, os.environ if environ is None else environ)
    tokens = ChannelTokens(cfg.app_id, cfg.openid_metadata_url or DEFAULT_METADATA)
    credentials = MsalCredentials(cfg.app_id, password,
                                  authority(cfg.oauth_endpoint, cfg.app_tenant_id))
    auth = TeamsAuthentication(tokens, credentials)
    adapter = Adapter(auth)
    bot = TeamsBot(runtime.lanes(settings.file.web.workers), runtime.audit,
                   asks_per_minute=settings.file.web.asks_per_minute)
    runner = TurnRunner()
    router = APIRouter()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status, headers={"Cache-Control": "no-store"})

    @router.post("/api/messages")
    async def messages(request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_ACTIVITY_BYTES:
            return error(413, "activity too large")
        try:
            body: Any = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return error(400, "the body is not an activity")
        try:
            activity = Activity().deserialize(body)
        except Exception:  # msrest's DeserializationError and its causes
            return error(400, "the body is not an activity")
        try:
            result = await auth.authenticate_request(
                activity, request.headers.get("authorization", ""))
        except Unauthorized as exc:
            return error(401, str(exc))
        if cfg.app_tenant_id and tenant_of(activity) != cfg.app_tenant_id:
            return error(403, "this bot serves one tenant only")
        turn = runner.submit(adapter.process_activity(result, activity, bot.on_turn))
        if turn is None:
            return error(503, "too many conversations at once: try again")
        try:
            invoke = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(turn)),
                                            ACK_AFTER_SECONDS)
        except TimeoutError:
            return Response(status_code=202)  # still answering: acknowledged, not redelivered
        except Exception as exc:
            log.error("teams turn failed: %s", redact_text(f"{type(exc).__name__}: {exc}"))
            return error(502, "the activity could not be processed")
        if invoke is not None:
            return JSONResponse(invoke.body, int(invoke.status))
        return Response(status_code=200)

    return router
