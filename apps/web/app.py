"""The web surface: the JSON API (bearer tokens), the Q&A page (OIDC sign-in with PKCE, streamed
answers), the admin page, and the bots' routes when they are configured.

A person signed in as themselves learns nothing about a document they cannot read: answers,
citations and searches come from their own principals only, and "no answer" looks the same
whether nothing matches or nothing they may read matches.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import importlib.util
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles

from apps.runtime import FINISHED, Lane, LanePool, Runtime
from apps.web.oidc import InvalidToken, OidcClient, person_of
from apps.web.security import Hardening, RateLimiter, Session, Sessions, csrf_ok
from assistant.answer import AnswerDelta, AnswerDone
from assistant.audit import AuditRecord
from assistant.conversations import ConversationStore
from core import principals as P
from core.errors import ClearanceError, ConfigError, UsageError
from core.settings import Settings, WebSettings

log = logging.getLogger("clearance.web")
T = TypeVar("T")
STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_QUESTION_CHARS = 2000
MAX_COMMENT_CHARS = 2000
LOGIN_COOKIE = "clearance_login"
NO_ANSWER = ("No answer from the documents you can read. If you expected one, rephrase the "
             "question, or ask the document's owner for access.")


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def public_url(web: WebSettings) -> str:
    return web.public_url or f"http://{web.host}:{web.port}"


class WebApp:
    """The state of one server: its runtime's lanes, the OIDC client, sessions and limits."""

    def __init__(self, runtime: Runtime, oidc: OidcClient | None = None) -> None:
        self.runtime = runtime
        self.settings: Settings = runtime.settings
        web = self.settings.file.web
        self.web = web
        self.base = public_url(web)
        self.https = urlsplit(self.base).scheme == "https"
        if oidc is None and web.oidc_issuer and web.client_id:
            secret = os.environ.get(web.client_secret_env) if web.client_secret_env else None
            if web.client_secret_env and not secret:
                raise ConfigError(f"[web] client_secret_env names {web.client_secret_env}, "
                                  "which is not set")
            from apps.web.entra import EntraClient, entra_tenant

            if entra_tenant(web.oidc_issuer) is not None:  # Entra ID: msal drives the sign-in
                oidc = EntraClient(web.oidc_issuer, web.client_id, client_secret=secret)
            else:
                oidc = OidcClient(web.oidc_issuer, web.client_id, client_secret=secret)
        self.oidc = oidc
        if web.dev_login and urlsplit(self.base).hostname not in LOOPBACK:
            raise ConfigError("[web] dev_login is only allowed on a loopback public_url")
        if oidc is None and not web.dev_login:
            raise ConfigError("[web] needs oidc_issuer and client_id (or dev_login = true for "
                              "local development)")
        self.lanes: LanePool = runtime.lanes(web.workers)
        self.sessions = Sessions(web.session_minutes * 60.0)
        self.limiter = RateLimiter(web.asks_per_minute)
        self.cookie = "__Host-clearance" if self.https else "clearance"

    # -- who is asking ---------------------------------------------------------------------
    def bearer_person(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "a bearer token is required")
        if self.oidc is None:
            raise ApiError(401, "no OIDC issuer is configured: bearer tokens are not accepted")
        try:
            return person_of(self.oidc.validate(token.strip()))
        except InvalidToken as exc:
            raise ApiError(401, str(exc)) from None

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(self.cookie))

    def require_session(self, request: Request, *, state_changing: bool) -> Session:
        found = self.session(request)
        if found is None:
            raise ApiError(401, "sign in first")
        if state_changing:
            origin = request.headers.get("origin")
            if origin is not None and origin.rstrip("/") != self._origin():
                raise ApiError(403, "cross-site request refused")
            token = request.headers.get("x-csrf-token")
            if token is None and request.headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                token = request.state.form.get("csrf") if hasattr(request.state, "form") else None
            if not csrf_ok(found, token):
                raise ApiError(403, "missing or wrong CSRF token")
        return found

    def _origin(self) -> str:
        parts = urlsplit(self.base)
        return f"{parts.scheme}://{parts.netloc}"

    def set_cookie(self, response: Response, sid: str) -> None:
        response.set_cookie(self.cookie, sid, max_age=int(self.sessions.lifetime), path="/",
                            secure=self.https, httponly=True, samesite="lax")

    # -- asking ----------------------------------------------------------------------------
    def check_rate(self, email: str) -> None:
        if not self.limiter.allow(email.casefold()):
            raise ApiError(429, "too many questions: wait a minute and ask again")

    async def on_lane(self, work: Callable[[Lane], T]) -> T:
        """`work` on a serving thread, awaited without holding an event-loop thread."""
        return await asyncio.wrap_future(self.lanes.submit(work))

    async def search(self, email: str, query: str, k: int) -> dict[str, Any]:
        def work(lane: Lane) -> dict[str, Any]:
            hits = lane.assistant.search(query, lane.identity(email), k)
            return {"hits": [{"doc_id": h.doc_id, "title": h.title, "url": h.url,
                              "score": h.score, "snippet": h.snippet} for h in hits]}
        return await self.on_lane(work)

    async def ask(self, email: str, question: str, conversation: str) -> dict[str, Any]:
        def work(lane: Lane) -> dict[str, Any]:
            answer = lane.assistant.ask(question, lane.identity(email),
                                        conversation=conversation)
            return {**answer.to_json(), "conversation_id": conversation}
        return await self.on_lane(work)

    def ask_events(self, email: str, question: str,
                   conversation: str) -> asyncio.Queue[object]:
        """The answer's events on an asyncio queue, fed from the serving thread."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()

        def work(lane: Lane) -> Iterator[object]:
            yield from lane.assistant.ask_stream(question, lane.identity(email),
                                                 conversation=conversation)
        def put(item: object) -> None:
            loop.call_soon_threadsafe(events.put_nowait, item)
        self.lanes.stream(work, put)
        return events

    def feedback(self, email: str, conversation: str, question: str, vote: str,
                 comment: str) -> None:
        def work(lane: Lane) -> None:
            identity = lane.identity(email)
            self.runtime.audit.write(AuditRecord(
                at=time.time(), email=identity.email, principals=sorted(identity.principals),
                question=question, hits=[], citations=[], refused=False, latency_ms=0.0,
                action="feedback", conversation=conversation,
                feedback={"vote": vote, "comment": comment}))
        self.lanes.run(work)

    def is_admin(self, email: str) -> bool:
        group = self.web.admin_group
        if not group:
            return False

        def work(lane: Lane) -> bool:
            ident = lane.identity(email)
            if group in ident.principals:
                return True
            return any(group in ident.at(c).principals or P.scope(c, group)
                       in ident.at(c).principals for c in self.runtime.connector_names)
        return self.lanes.run(work)


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, limit: int, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ApiError(400, f"{name!r} must be a non-empty string")
    if len(value) > limit:
        raise ApiError(400, f"{name!r} is longer than {limit} characters")
    if "\x00" in value:
        raise ApiError(400, f"{name!r} contains a NUL character")
    return value.strip()


def _conversation(body: dict[str, Any]) -> str:
    value = body.get("conversation_id")
    if value is None:
        # hex: a url-safe token may start with "-" or "_", which check_name refuses (the id
        # came back as a 400 on its own follow-up one time in 32)
        return secrets.token_hex(16)
    if not isinstance(value, str):
        raise ApiError(400, "'conversation_id' must be a string")
    try:
        return ConversationStore.check_name(value)
    except UsageError:
        raise ApiError(400, "'conversation_id' must be letters, digits and _.:- "
                            "(at most 128)") from None


def _k(body: dict[str, Any], default: int) -> int:
    k = body.get("k", default)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
        raise ApiError(400, "'k' must be an integer from 1 to 50")
    return k


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def page(title: str, body: str, csrf: str = "", script: bool = True) -> HTMLResponse:
    meta = f'<meta name="csrf-token" content="{html.escape(csrf)}">' if csrf else ""
    js = '<script src="/static/app.js" defer></script>' if script else ""
    return HTMLResponse(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title>{meta}"
        f"<link rel=\"stylesheet\" href=\"/static/app.css\">{js}</head>"
        f"<body><main>{body}</main></body></html>",
        headers={"Cache-Control": "no-store"})


def create_app(runtime: Runtime, oidc: OidcClient | None = None) -> FastAPI:
    state = WebApp(runtime, oidc)
    app = FastAPI(title="Clearance", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.web = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return JSONResponse({"error": exc.message}, exc.status,
                            headers={**headers, "Cache-Control": "no-store"})

    @app.exception_handler(ClearanceError)
    async def clearance_error(request: Request, exc: ClearanceError) -> JSONResponse:
        log.warning("web.error", extra={"error": str(exc), "path": request.url.path})
        return JSONResponse({"error": "the assistant is unavailable right now"}, 503)

    # -- the JSON API ----------------------------------------------------------------------
    @app.post("/api/search")
    async def api_search(request: Request) -> JSONResponse:
        email = state.bearer_person(request)
        body = _json_body(await request.body())
        query = _text(body, "query", MAX_QUESTION_CHARS)
        k = _k(body, runtime.settings.file.retrieval.k)
        state.check_rate(email)
        result = await state.search(email, query, k)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    @app.post("/api/ask")
    async def api_ask(request: Request) -> JSONResponse:
        email = state.bearer_person(request)
        body = _json_body(await request.body())
        question = _text(body, "question", MAX_QUESTION_CHARS)
        conversation = _conversation(body)
        state.check_rate(email)
        result = await state.ask(email, question, conversation)
        return JSONResponse(result, headers={"Cache-Control": "no-store"})

    # -- sign-in ---------------------------------------------------------------------------
    @app.get("/auth/login")
    async def login() -> Response:
        if state.oidc is None:
            return RedirectResponse("/auth/dev", 303)
        st = secrets.token_urlsafe(24)
        target, pending = await asyncio.to_thread(state.oidc.begin_sign_in, _callback(state), st)
        state.sessions.begin_sign_in(st, pending)
        response = RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})
        # The callback must come back to the browser that started the sign-in (login CSRF).
        response.set_cookie(LOGIN_COOKIE, st, max_age=600, path="/auth/callback",
                            secure=state.https, httponly=True, samesite="lax")
        return response

    @app.get("/auth/callback")
    async def callback(request: Request) -> Response:
        if state.oidc is None:
            raise ApiError(404, "no OIDC sign-in here")
        code = request.query_params.get("code")
        returned = request.query_params.get("state", "")
        started_here = request.cookies.get(LOGIN_COOKIE, "")
        pending = state.sessions.finish_sign_in(returned) \
            if started_here and secrets.compare_digest(started_here, returned) else None
        if pending is None or not code:
            return page("Sign-in failed", "<h1>Sign-in failed</h1><p>The sign-in expired or "
                        "was not started here. <a href=\"/auth/login\">Sign in again</a>.</p>",
                        script=False)
        oidc_client = state.oidc
        params = {k: v for k, v in request.query_params.items()}
        try:
            claims = await asyncio.to_thread(oidc_client.finish_sign_in, pending, params,
                                             _callback(state))
            email = person_of(claims)
        except InvalidToken as exc:
            log.warning("web.sign_in_refused", extra={"reason": str(exc)})
            return page("Sign-in failed", f"<h1>Sign-in failed</h1><p>{html.escape(str(exc))}"
                        ". <a href=\"/auth/login\">Try again</a>.</p>", script=False)
        response = RedirectResponse("/", 303)
        state.set_cookie(response, state.sessions.create(email))
        response.delete_cookie(LOGIN_COOKIE, path="/auth/callback", secure=state.https,
                               httponly=True, samesite="lax")
        return response

    @app.get("/auth/dev")
    async def dev_form() -> Response:
        if not state.web.dev_login:
            raise ApiError(404, "the development login is not enabled")
        csrf = secrets.token_urlsafe(16)
        response = page("Development sign-in", (
            "<h1>Development sign-in</h1><p class=\"warn\">For local development only: anyone "
            "can sign in as anyone here.</p><form method=\"post\" action=\"/auth/dev\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">"
            "<label>Email <input name=\"email\" id=\"email\" type=\"email\" required></label>"
            "<button type=\"submit\">Sign in</button></form>"), script=False)
        response.set_cookie("clearance_dev_csrf", csrf, max_age=600, httponly=True,
                            samesite="strict", secure=state.https, path="/auth/dev")
        return response

    @app.post("/auth/dev")
    async def dev_login(request: Request) -> Response:
        if not state.web.dev_login:
            raise ApiError(404, "the development login is not enabled")
        form = _form(await request.body())
        expected = request.cookies.get("clearance_dev_csrf", "")
        if not expected or not secrets.compare_digest(expected, form.get("csrf", "")):
            raise ApiError(403, "missing or wrong CSRF token")
        email = form.get("email", "").strip()
        if "@" not in email or " " in email or len(email) > 320:
            raise ApiError(400, "an email address is required")
        response = RedirectResponse("/", 303)
        state.set_cookie(response, state.sessions.create(email, dev=True))
        return response

    @app.post("/auth/logout")
    async def logout(request: Request) -> Response:
        request.state.form = _form(await request.body())
        state.require_session(request, state_changing=True)
        state.sessions.end(request.cookies.get(state.cookie))
        response = RedirectResponse("/", 303)
        response.delete_cookie(state.cookie, path="/", secure=state.https, httponly=True,
                               samesite="lax")
        return response

    # -- the page --------------------------------------------------------------------------
    @app.get("/")
    async def home(request: Request) -> Response:
        s = state.session(request)
        if s is None:
            return page("Clearance", "<h1>Clearance</h1><p>Answers from the documents you may "
                        "read.</p><p><a class=\"button\" id=\"signin\" href=\"/auth/login\">"
                        "Sign in</a></p>", script=False)
        csrf = html.escape(s.csrf)
        dev = "<p class=\"warn\">Development sign-in</p>" if s.dev else ""
        return page("Clearance", (
            f"<header><h1>Clearance</h1><span id=\"who\">{html.escape(s.email)}</span>"
            "<form method=\"post\" action=\"/auth/logout\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">"
            "<button type=\"submit\" id=\"logout\">Sign out</button></form></header>"
            f"{dev}<section id=\"thread\" aria-live=\"polite\"></section>"
            "<form id=\"ask\"><label for=\"question\">Your question</label>"
            "<textarea id=\"question\" name=\"question\" rows=\"2\" maxlength=\"2000\" "
            "required></textarea><button type=\"submit\" id=\"send\">Ask</button>"
            "<button type=\"button\" id=\"new\">New conversation</button></form>"), s.csrf)

    @app.post("/ask")
    async def ask_stream(request: Request) -> Response:
        s = state.require_session(request, state_changing=True)
        body = _json_body(await request.body())
        question = _text(body, "question", MAX_QUESTION_CHARS)
        conversation = _conversation(body)
        state.check_rate(s.email)
        events = state.ask_events(s.email, question, conversation)

        async def stream() -> AsyncIterator[bytes]:
            yield _sse("start", {"conversation_id": conversation})
            while True:
                item = await events.get()
                if item is FINISHED:
                    return
                if isinstance(item, BaseException):
                    log.warning("web.ask_failed", extra={"error": str(item)})
                    yield _sse("error", {"error": "the assistant is unavailable right now"})
                    return
                if isinstance(item, AnswerDelta):
                    yield _sse("delta", {"text": item.text})
                elif isinstance(item, AnswerDone):
                    done = item.answer.to_json()
                    yield _sse("done", {**done, "conversation_id": conversation,
                                        "question": item.asked,
                                        "message": NO_ANSWER if item.answer.refused else ""})

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    @app.post("/feedback")
    async def feedback(request: Request) -> JSONResponse:
        s = state.require_session(request, state_changing=True)
        body = _json_body(await request.body())
        vote = body.get("vote")
        if vote not in ("up", "down"):
            raise ApiError(400, "'vote' must be \"up\" or \"down\"")
        conversation = ConversationStore.check_name(_text(body, "conversation_id", 128))
        question = _text(body, "question", MAX_QUESTION_CHARS)
        comment = _text(body, "comment", MAX_COMMENT_CHARS, required=False)
        await asyncio.to_thread(state.feedback, s.email, conversation, question, str(vote),
                                comment)
        return JSONResponse({"ok": True})

    from apps.web.admin import add_admin_routes

    add_admin_routes(app, state)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    mount_bots(app, runtime)
    app.add_middleware(_HardeningShim, max_bytes=state.web.max_request_bytes,
                       https=state.https)
    return app


class _HardeningShim(Hardening):
    """Hardening as Starlette middleware (add_middleware passes the app first)."""


def _callback(state: WebApp) -> str:
    return f"{state.base}/auth/callback"


def _form(raw: bytes) -> dict[str, str]:
    from urllib.parse import parse_qs

    try:
        return {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), max_num_fields=20).items()}
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the form is not valid") from None


def mount_bots(app: FastAPI, runtime: Runtime) -> list[str]:
    """The Slack and Teams routes, when configured and when this build has them (their modules
    come from another branch: looked up with find_spec, never an ImportError swallowed)."""
    mounted: list[str] = []
    file = runtime.settings.file
    wanted = {"slack": file.slack != type(file.slack)(), "teams": file.teams != type(file.teams)()}
    for name, configured in wanted.items():
        if not configured:
            continue
        module = f"apps.{name}.app"
        if importlib.util.find_spec(f"apps.{name}") is None \
                or importlib.util.find_spec(module) is None:
            raise ConfigError(f"[{name}] is configured but this build has no {name} bot")
        build_router = importlib.import_module(module).build_router
        app.include_router(build_router(runtime, runtime.settings))
        mounted.append(name)
    return mounted
