"""The admin page, for members of `[web] admin_group` only (everyone else: 403): connectors
with their last run, documents, errors and documents readable by nobody; trigger a sync;
explain access for a person and a document."""

from __future__ import annotations

import asyncio
import html
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from apps.runtime import Lane
from auth.identity import explain
from core.errors import IndexMissing
from indexer.sync import Mode, last_run_key

if TYPE_CHECKING:
    from apps.web.app import WebApp

MODES: tuple[Mode, ...] = ("full", "incremental", "permissions", "groups", "prune")


def connector_rows(state: WebApp) -> list[dict[str, Any]]:
    def work(lane: Lane) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for cfg in state.settings.file.connectors:
            try:
                stats = lane.store.stats(cfg.name)
                documents, nobody = stats.documents, stats.readable_by_nobody
            except IndexMissing:
                documents, nobody = 0, 0
            runs = [lane.store.get_state(last_run_key(cfg.name, m)) for m in MODES]
            last = max((r for r in runs if r), key=lambda r: r["started"], default=None)
            rows.append({
                "connector": cfg.name, "kind": cfg.kind, "documents": documents,
                "readable_by_nobody": nobody, "schedule": cfg.schedule,
                "next_run": _next_run(state, cfg.name, runs),
                "last_run": None if last is None else {
                    "mode": last["mode"], "started": last["started"],
                    "status": last["status"], "errors": last["error_count"],
                    "error": last["error"]}})
        return rows
    return state.lanes.run(work)


def _next_run(state: WebApp, name: str, runs: list[dict[str, Any] | None]) -> float | None:
    """The next scheduled run, when a broker (and so a beat) is configured."""
    if not state.settings.file.jobs.broker_url:
        return None
    from datetime import UTC, datetime

    from indexer.jobs.schedules import upcoming

    started = {m: r["started"] for m, r in zip(MODES, runs, strict=True) if r}
    found = upcoming(state.settings.connector(name), datetime.now(UTC), started)
    return min((at.timestamp() for _, at in found.values()), default=None)


def add_admin_routes(app: FastAPI, state: WebApp) -> None:
    def admin_session(request: Request, *, state_changing: bool) -> str:
        from apps.web.app import ApiError

        s = state.require_session(request, state_changing=state_changing)
        if not state.is_admin(s.email):
            raise ApiError(403, "the admin page is for the admin group only")
        return s.email

    @app.get("/admin/api/connectors")
    async def admin_connectors(request: Request) -> JSONResponse:
        admin_session(request, state_changing=False)
        return JSONResponse({"connectors": await asyncio.to_thread(connector_rows, state)})

    @app.get("/admin/api/explain")
    async def admin_explain(request: Request) -> JSONResponse:
        from apps.web.app import ApiError

        admin = admin_session(request, state_changing=False)
        doc_id = request.query_params.get("doc_id", "")
        email = request.query_params.get("email", "")
        if not doc_id or "@" not in email:
            raise ApiError(400, "doc_id and email are required")

        def work(lane: Lane) -> dict[str, Any]:
            identity = lane.identity(email)
            started = time.perf_counter()
            doc = lane.store.document(doc_id)
            if doc is None:
                state.runtime.audit.explain(identity, doc_id, None, started)
                return {"doc_id": doc_id, "email": email, "found": False}
            decision = explain(doc.acl, identity.at(doc.connector))
            state.runtime.audit.explain(identity, doc_id, decision.allowed, started)
            return {"doc_id": doc_id, "email": email, "found": True, "title": doc.title,
                    "asked_by": admin, **decision.to_json()}
        return JSONResponse(await asyncio.to_thread(state.lanes.run, work))

    @app.post("/admin/api/sync")
    async def admin_sync(request: Request) -> JSONResponse:
        from apps.web.app import ApiError, _json_body

        admin = admin_session(request, state_changing=True)
        body = _json_body(await request.body())
        name = body.get("connector")
        if name not in state.runtime.connector_names:
            raise ApiError(400, "no such connector")
        mode = body.get("mode", "full")
        if mode not in MODES:
            raise ApiError(400, "unknown mode")
        if not state.settings.file.jobs.broker_url:
            raise ApiError(409, "no [jobs] broker_url: syncs can only be started by the CLI")
        from indexer.jobs.app import enqueue

        queued = await asyncio.to_thread(enqueue, state.runtime.jobs, state.settings, [name],
                                         mode, f"web admin {admin}")
        return JSONResponse({"queued": queued})

    @app.get("/admin")
    async def admin_page(request: Request) -> Response:
        from apps.web.app import page

        admin_session(request, state_changing=False)
        rows = await asyncio.to_thread(connector_rows, state)
        s = state.session(request)
        body = ["<h1>Clearance admin</h1><table id=\"connectors\"><thead><tr><th>Connector</th>"
                "<th>Kind</th><th>Documents</th><th>Readable by nobody</th><th>Last run</th>"
                "<th>Errors</th><th>Next run</th><th></th></tr></thead><tbody>"]
        for r in rows:
            last = r["last_run"] or {}
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last["started"])) \
                if last else "never"
            nxt = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r["next_run"])) \
                if r["next_run"] else "not scheduled"
            body.append(
                f"<tr><td>{html.escape(r['connector'])}</td><td>{html.escape(r['kind'])}</td>"
                f"<td>{r['documents']}</td><td>{r['readable_by_nobody']}</td>"
                f"<td>{html.escape(when)} {html.escape(str(last.get('status', '')))}</td>"
                f"<td>{last.get('errors', 0)} {html.escape(str(last.get('error') or ''))}</td>"
                f"<td>{html.escape(nxt)}</td><td><button class=\"sync\" "
                f"data-connector=\"{html.escape(r['connector'])}\">Sync now</button></td></tr>")
        body.append("</tbody></table><h2>Explain access</h2><form id=\"explain\">"
                    "<label>Email <input name=\"email\" id=\"explain-email\"></label>"
                    "<label>Document id <input name=\"doc_id\" id=\"explain-doc\"></label>"
                    "<button type=\"submit\">Explain</button></form>"
                    "<pre id=\"explanation\"></pre><p id=\"admin-status\"></p>")
        return page("Clearance admin", "".join(body), s.csrf if s else "")
