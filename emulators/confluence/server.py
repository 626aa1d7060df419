"""A Confluence Cloud emulator: the v1 REST paths (and the v2 calls) a connector reads, with
the real JSON shapes.

Served under `/wiki` (Basic email + API token) and under `/ex/confluence/{cloudId}/wiki` (the
OAuth gateway, Bearer minted by `POST /oauth/token` with client credentials). Routes and the
tenant format: emulators/confluence/README.md; `emulators/tenants/confluence.json` is an
example. Paging follows the real API: offsets (`start`, `limit`) plus `_links.next` for spaces,
groups and members, an opaque cursor inside `_links.next` for CQL search and the v2 lists.
Non-current content (drafts, trash, archived) never appears in a search. The Python handle
(`edit`, `add`, `restrict`, `move`, `trash`, `delete`, `forbid`, `set_members`,
`set_space_permissions`, `expire_tokens`) and the admin routes under `/_admin/` change the
tenant between syncs; every change is validated and undone whole when invalid.
"""

from __future__ import annotations

import base64
import binascii
import copy
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlencode

from emulators.base import Emulator, JsonObject, Request, Response
from emulators.confluence.cql import (
    CqlError,
    cql_date,
    decode_cursor,
    encode_cursor,
    iso,
    parse_cql,
    parse_when,
    tz_of,
)
from emulators.confluence.tenant import validate_tenant


class ConfluenceEmulator(Emulator):
    name: ClassVar[str] = "confluence"

    # -- tenant ------------------------------------------------------------------------------
    def validate(self, tenant: JsonObject) -> None:
        validate_tenant(tenant)

    def _list(self, key: str) -> list[JsonObject]:
        items: list[JsonObject] = self.tenant.setdefault(key, [])
        return items

    def content_by_id(self, content_id: str) -> JsonObject | None:
        return next((c for c in self._list("content") if c["id"] == content_id), None)

    def attachments(self) -> list[JsonObject]:
        """Every attachment as a content item: its container is its parent, its space, status
        and restrictions are the container's (attachments have none of their own)."""
        out: list[JsonObject] = []
        for page in self._list("content"):
            for att in page.get("attachments", []):
                out.append({**att, "type": "attachment", "parent": page["id"],
                            "space": page["space"], "status": page.get("status", "current"),
                            "restrictions": {}, "author": att.get("author", page.get("author")),
                            "created": att.get("created", att.get("when", page.get("when")))})
        return out

    def _searchable(self) -> list[JsonObject]:
        return [*self._list("content"), *self.attachments()]

    def _attachment(self, att_id: str) -> JsonObject | None:
        return next((a for a in self.attachments() if a["id"] == att_id), None)

    def _user(self, account_id: str) -> JsonObject:
        found = next((u for u in self._list("users") if u["accountId"] == account_id), None)
        return found or {"accountId": account_id}

    def _space(self, key: str) -> JsonObject | None:
        return next((s for s in self._list("spaces") if s["key"] == key), None)

    def _page_size(self, request: Request, cap: int = 100) -> int:
        default = int(self.tenant.get("page_size", 25))
        raw = request.arg("limit")
        asked = int(raw) if raw and raw.isdigit() else default
        return max(1, min(asked, cap, int(self.tenant.get("max_limit", cap))))

    # -- routes ------------------------------------------------------------------------------
    def setup(self) -> None:
        self._minted: dict[str, tuple[str, float]] = {}  # Bearer -> (client_id, expires at)
        self._mints = 0
        routes: list[tuple[str, Callable[[Request], Response]]] = [
            ("/rest/api/content/search", self._search),
            ("/rest/api/content", self._content_list),
            ("/rest/api/content/{content_id}", self._content_one),
            ("/rest/api/content/{content_id}/restriction/byOperation/{operation}",
             self._restriction),
            ("/rest/api/content/{content_id}/restriction/byOperation", self._restrictions),
            ("/rest/api/space", self._spaces),
            ("/rest/api/space/{key}", self._space_one),
            ("/rest/api/group", self._groups),
            ("/rest/api/group/member", self._members_by_name),
            ("/rest/api/group/{group_id}/membersByGroupId", self._members_by_id),
            ("/rest/api/content/{content_id}/child/attachment", self._child_attachments),
            ("/download/attachments/{page_id}/{name}", self._download),
            ("/media/{att_id}", self._media),
        ]
        self.route("POST", "/oauth/token", self._token)
        v2: list[tuple[str, str, Callable[[Request], Response]]] = [
            ("GET", "/api/v2/spaces", self._v2_spaces),
            ("GET", "/api/v2/spaces/{space_id}/permissions", self._v2_space_permissions),
            ("POST", "/api/v2/users-bulk", self._v2_users_bulk),
        ]
        for method, path, handler in [*(("GET", p, h) for p, h in routes), *v2]:
            self.route(method, f"/wiki{path}", self._guard(handler, oauth=False))
            self.route(method, f"/ex/confluence/{{cloud_id}}/wiki{path}",
                       self._guard(handler, oauth=True))

    def _guard(self, handler: Callable[[Request], Response], *, oauth: bool
               ) -> Callable[[Request], Response]:
        def guarded(request: Request) -> Response:
            who = self._authenticate(request, oauth)
            if who is None:
                return Response.json({"statusCode": 401, "message": "Unauthorized; scope does "
                                      "not match or credentials are bad"}, 401)
            request.params["_admin"] = "1" if who.get("admin", True) else ""
            request.params["_prefix"] = (f"/ex/confluence/{request.params['cloud_id']}/wiki"
                                         if oauth else "/wiki")
            return handler(request)
        return guarded

    def expire_tokens(self) -> None:
        """Every Bearer minted so far stops working (expired early or revoked at the source);
        the client is not told, it learns from the next 401."""
        with self.lock:
            self._minted = {t: (c, 0.0) for t, (c, _) in self._minted.items()}

    def _token(self, request: Request) -> Response:
        """OAuth 2.0 client credentials of a service account: a Bearer for the gateway path."""
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        account = next((a for a in self._list("service_accounts")
                        if a.get("client_id") == body.get("client_id")
                        and a.get("client_secret") == body.get("client_secret")), None)
        if account is None:
            return Response.json({"error": "access_denied",
                                  "error_description": "Unauthorized"}, 401)
        lifetime = int(account.get("expires_in", 3600))
        self._mints += 1
        token = f"{account['token']}.{self._mints}"  # a new Bearer each time, as the real one
        self._minted[token] = (str(account["client_id"]), time.time() + lifetime)
        return Response.json({"access_token": token, "token_type": "Bearer",
                              "expires_in": lifetime,
                              "scope": "read:confluence-content.all"})

    def _authenticate(self, request: Request, oauth: bool) -> JsonObject | None:
        auth = request.headers.get("authorization", "")
        creds = self._list("credentials")
        if oauth:
            if request.params.get("cloud_id") != self.tenant.get("cloud_id"):
                return None
            token = request.bearer
            if token in self._minted:
                client_id, expires = self._minted[token]
                account = next((a for a in self._list("service_accounts")
                                if a["client_id"] == client_id), None)
                if account is None or time.time() >= expires:
                    return None  # expired, revoked, or its service account removed
                return {"bearer": token, "admin": account.get("admin", True)}
            return next((c for c in creds if token and c.get("bearer") == token), None)
        if not auth.lower().startswith("basic "):
            return None
        try:
            email, _, token = base64.b64decode(auth[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return next((c for c in creds if c.get("email") == email and c.get("token") == token
                     and token), None)

    def _base(self, request: Request) -> str:
        """`_links.base`: the site's wiki, also through the OAuth gateway (web links point at
        the site, not at api.atlassian.com)."""
        host = request.headers.get("host", "127.0.0.1")
        scheme = self.tenant.get("scheme", "https")
        return f"{scheme}://{host}/wiki"

    # -- shapes ------------------------------------------------------------------------------
    def _user_json(self, account_id: str) -> JsonObject:
        user = self._user(account_id)
        out: JsonObject = {"type": "known", "accountId": account_id,
                           "accountType": user.get("accountType", "atlassian"),
                           "displayName": user.get("displayName", account_id)}
        if user.get("email"):  # hidden by the profile's visibility: the key is absent
            out["email"] = user["email"]
        return out

    def _group_json(self, group_id: str) -> JsonObject:
        group = next((g for g in self._list("groups") if g["id"] == group_id), {})
        return {"type": "group", "id": group_id, "name": group.get("name", group_id)}

    def _ancestors(self, item: JsonObject) -> list[JsonObject]:
        chain: list[JsonObject] = []
        parent = item.get("parent")
        while parent is not None:
            node = self.content_by_id(parent)
            if node is None or node in chain:
                break
            chain.append(node)
            parent = node.get("parent")
        return list(reversed(chain))  # root first, immediate parent last (as v1 does)

    def _restriction_json(self, item: JsonObject, start: int = 0,
                          limit: int | None = None, operation: str = "read") -> JsonObject:
        read = item.get("restrictions", {}).get(operation, {})
        cap = limit or int(self.tenant.get("restriction_limit", 100))
        users = list(read.get("users", []))
        groups = list(read.get("groups", []))
        return {"operation": operation, "restrictions": {
            "user": {"results": [self._user_json(u) for u in users[start:start + cap]],
                     "start": start, "limit": cap, "size": len(users[start:start + cap]),
                     "totalSize": len(users)},
            "group": {"results": [self._group_json(g) for g in groups[start:start + cap]],
                      "start": start, "limit": cap, "size": len(groups[start:start + cap]),
                      "totalSize": len(groups)}},
            "_links": {"self": f"/rest/api/content/{item['id']}/restriction/byOperation/"
                               f"{operation}"}}

    def _content_json(self, item: JsonObject, expand: set[str], request: Request) -> JsonObject:
        space = self._space(item["space"]) or {}
        kind = item.get("type", "page")
        out: JsonObject = {
            "id": item["id"], "type": kind, "status": item.get("status", "current"),
            "title": item.get("title", item["id"]),
            "_links": {"webui": f"/spaces/{item['space']}/{'pages' if kind == 'page' else 'blog'}"
                                f"/{item['id']}", "self": f"{self._base(request)}/rest/api/"
                                                          f"content/{item['id']}"},
            "_expandable": {}}
        if "space" in expand:
            out["space"] = {"id": space.get("id"), "key": item["space"],
                            "name": space.get("name", item["space"])}
        if "version" in expand:
            out["version"] = {"number": int(item.get("version", 1)),
                              "when": item.get("when", "2026-01-01T00:00:00.000Z"),
                              "by": self._user_json(item.get("author", "unknown"))}
        if "ancestors" in expand:
            out["ancestors"] = [{"id": a["id"], "type": a.get("type", "page"),
                                 "title": a.get("title", a["id"])}
                                for a in self._ancestors(item)]
        forbidden = self._forbidden(item)
        if "body.storage" in expand and "content" in forbidden:
            # The caller may list it but not read it: the expansion is left out, as Cloud does.
            out["_expandable"]["body"] = f"/rest/api/content/{item['id']}?expand=body"
        elif "body.storage" in expand:
            out["body"] = {"storage": {"value": item.get("body", ""),
                                       "representation": "storage"}}
        if kind == "attachment":
            name = item.get("title", item["id"])
            out["_links"]["download"] = (f"/download/attachments/{item['parent']}/{name}"
                                         f"?version={int(item.get('version', 1))}&api=v2")
            out["_links"]["webui"] = f"/pages/viewpageattachments.action?pageId={item['parent']}"
            out["extensions"] = {"mediaType": item.get("mediaType", "application/octet-stream")}
            if "container" in expand:
                out["container"] = {"id": item["parent"], "type": "page"}
        if any(e.startswith("restrictions.read") for e in expand) \
                and "restrictions" in forbidden:
            out["_expandable"]["restrictions"] = (f"/rest/api/content/{item['id']}/"
                                                  "restriction/byOperation")
        elif any(e.startswith("restrictions.read") for e in expand):
            full = self._restriction_json(item)
            if "restrictions.read.restrictions.user" not in expand:
                full["restrictions"].pop("user")
            if "restrictions.read.restrictions.group" not in expand:
                full["restrictions"].pop("group")
            out["restrictions"] = {"read": full}
        return out

    @staticmethod
    def _expand(request: Request) -> set[str]:
        return {e.strip() for e in (request.arg("expand") or "").split(",") if e.strip()}

    # -- content -----------------------------------------------------------------------------
    def _matches(self, item: JsonObject, clauses: list[tuple[str, str, list[str]]]) -> bool:
        zone = tz_of(str(self.tenant.get("timezone", "UTC")))
        status_asked = False
        for field, op, values in clauses:
            if field in ("lastmodified", "created"):
                raw = str(item.get("when" if field == "lastmodified" else "created")
                          or item.get("when") or "2026-01-01T00:00:00Z")
                # CQL dates have minute resolution, in the user's time zone.
                mine = parse_when(raw).astimezone(zone).replace(second=0, microsecond=0)
                limit = cql_date(values[0], zone)
                ok = {">=": mine >= limit, ">": mine > limit, "<=": mine <= limit,
                      "<": mine < limit, "=": mine == limit, "!=": mine != limit}[op]
                if not ok:
                    return False
                continue
            have = {"type": item.get("type", "page"), "space": item["space"], "id": item["id"],
                    "status": item.get("status", "current")}.get(field)
            if field == "status":
                status_asked = True
            if field == "ancestor":
                found = any(a["id"] in values for a in self._ancestors(item))
                if found != (op != "!="):
                    return False
                continue
            hit = have in values
            if hit != (op != "!="):
                return False
        return status_asked or item.get("status", "current") == "current"

    def _search(self, request: Request) -> Response:
        cql = request.arg("cql") or ""
        try:
            clauses, (order, desc) = parse_cql(cql)
            hits = [c for c in self._searchable() if self._matches(c, clauses)]
        except CqlError as exc:
            return Response.json({"statusCode": 400, "message": str(exc)}, 400)
        sort_key: dict[str, Callable[[JsonObject], Any]] = {
            "lastmodified": lambda c: (c.get("when", ""), int(c["id"]) if c["id"].isdigit()
                                       else c["id"]),
            "created": lambda c: (c.get("created", ""), c["id"].zfill(12)),
            "id": lambda c: c["id"].zfill(12), "title": lambda c: c.get("title", "")}
        hits.sort(key=sort_key[order], reverse=desc)
        offset = 0
        cursor = request.arg("cursor")
        if cursor is not None:
            got = decode_cursor(cursor, cql)
            if got is None:
                return Response.json({"statusCode": 400, "message": "Invalid cursor"}, 400)
            offset = got
        limit = self._page_size(request, cap=int(self.tenant.get("search_cap", 250)))
        page = hits[offset:offset + limit]
        # A spurious empty page in the middle of a listing, with a next link (Cloud does this
        # now and then): a client that trusts it as the end loses the rest of the listing.
        spurious = offset > 0 and offset == self.tenant.get("quirk_empty_page_at")
        if spurious:
            page = []
        expand = self._expand(request)
        end = offset + len(page)
        # Cloud's quirks: a next link on the last page leading to an empty page; or a next
        # link on every page, empty ones included (a client must stop on an empty page).
        more = end < len(hits) or (page and self.tenant.get("quirk_empty_last_page", False)) \
            or self.tenant.get("quirk_next_on_empty", False) or spurious
        links: JsonObject = {"base": self._base(request), "context": "/wiki"}
        if more:
            query = {"cql": cql, "cursor": encode_cursor(end, cql), "limit": str(limit)}
            if request.arg("expand"):
                query["expand"] = request.arg("expand") or ""
            links["next"] = f"/rest/api/content/search?{urlencode(query)}"
        return Response.json({"results": [self._content_json(c, expand, request) for c in page],
                              "start": offset, "limit": limit, "size": len(page),
                              "totalSize": len(hits), "_links": links})

    def _content_list(self, request: Request) -> Response:
        status = request.arg("status", "current")
        items = [c for c in self._list("content") if c.get("status", "current") == status
                 and (request.arg("spaceKey") is None or c["space"] == request.arg("spaceKey"))
                 and (request.arg("type") is None or c.get("type", "page") == request.arg("type"))]
        return self._offset_page(request, items,
                                 lambda c: self._content_json(c, self._expand(request), request),
                                 "/rest/api/content")

    def _forbidden(self, item: JsonObject) -> set[str]:
        """What of this content answers 403 (`forbidden` in the tenant, or `forbid()`);
        an attachment is forbidden with its container's content."""
        if item.get("type") == "attachment":
            page = self.content_by_id(str(item.get("parent")))
            return {"content"} & set(page.get("forbidden", [])) if page else set()
        return set(item.get("forbidden", []))

    @staticmethod
    def _forbidden_answer() -> Response:
        return Response.json({"statusCode": 403, "message": "Not permitted to view this "
                              "content"}, 403)

    def _content_one(self, request: Request) -> Response:
        item = self.content_by_id(request.params["content_id"])
        if item is None or (item.get("status", "current") in ("trashed", "archived") \
                and request.arg("status") != item.get("status")):
            return Response.json({"statusCode": 404, "message": "No content found"}, 404)
        if item.get("status") == "draft" or "content" in self._forbidden(item):
            return self._forbidden_answer()
        return Response.json(self._content_json(item, self._expand(request), request))

    def _restricted(self, request: Request) -> JsonObject | Response:
        item = self.content_by_id(request.params["content_id"])
        if item is None or item.get("status", "current") not in ("current", "draft"):
            return Response.json({"statusCode": 404, "message": "No content found"}, 404)
        if item.get("status") == "draft" or "restrictions" in self._forbidden(item):
            return self._forbidden_answer()
        return item

    def _restriction(self, request: Request) -> Response:
        """`byOperation/{read|update}`: the users and groups of one operation's restriction,
        paged inside by start/limit."""
        item = self._restricted(request)
        if isinstance(item, Response):
            return item
        operation = request.params["operation"]
        if operation not in ("read", "update"):
            return Response.json({"statusCode": 400, "message": "operation is read or "
                                  "update"}, 400)
        raw = request.arg("start", "0") or "0"
        if not raw.isdigit():
            return Response.json({"statusCode": 400, "message": "start is a number"}, 400)
        return Response.json(self._restriction_json(item, int(raw), self._page_size(request),
                                                    operation))

    def _restrictions(self, request: Request) -> Response:
        """`byOperation`: every operation's restriction, keyed by operation. Read restrictions
        cascade to descendants; update restrictions do not."""
        item = self._restricted(request)
        if isinstance(item, Response):
            return item
        return Response.json({op: self._restriction_json(item, operation=op)
                              for op in ("read", "update")})

    # -- attachments -------------------------------------------------------------------------
    def _child_attachments(self, request: Request) -> Response:
        cid = request.params["content_id"]
        page = self.content_by_id(cid)
        if page is not None and "content" in self._forbidden(page):
            return self._forbidden_answer()
        items = [a for a in self.attachments() if a["parent"] == cid]
        return self._offset_page(request, items,
                                 lambda a: self._content_json(a, self._expand(request), request),
                                 f"/rest/api/content/{cid}/child/attachment")

    def _download(self, request: Request) -> Response:
        """A 302 to the media service, as Cloud answers."""
        att = next((a for a in self.attachments() if a["parent"] == request.params["page_id"]
                    and a.get("title") == request.params["name"]), None)
        if att is None or att.get("status") != "current":
            return Response.json({"statusCode": 404, "message": "No attachment"}, 404)
        if "content" in self._forbidden(att):
            return self._forbidden_answer()
        return Response(302, b"", {"Location": f"{request.params['_prefix']}/media/{att['id']}"})

    def _media(self, request: Request) -> Response:
        att = self._attachment(request.params["att_id"])
        if att is None:
            return Response.json({"statusCode": 404, "message": "No media"}, 404)
        if "data_base64" in att:
            data = base64.b64decode(att["data_base64"])
        else:
            data = str(att.get("data", "")).encode()
        return Response(200, data, {"Content-Type": att.get("mediaType",
                                                            "application/octet-stream")})

    # -- spaces ------------------------------------------------------------------------------
    def _space_json(self, space: JsonObject, expand: set[str], admin: bool) -> JsonObject:
        out: JsonObject = {"id": space.get("id"), "key": space["key"],
                           "name": space.get("name", space["key"]),
                           "type": space.get("type", "global"), "status": "current",
                           "_links": {"webui": f"/spaces/{space['key']}"}}
        if "permissions" in expand and admin:  # reading space permissions needs admin
            perms: list[JsonObject] = []
            for perm in space.get("permissions", []):
                operation = {"operation": perm.get("operation", "read"), "targetType": "space"}
                for u in perm.get("users", []):
                    perms.append({"operation": operation, "anonymousAccess": False,
                                  "unlicensedAccess": False, "subjects": {"user": {
                                      "results": [self._user_json(u)], "size": 1}}})
                for g in perm.get("groups", []):
                    perms.append({"operation": operation, "anonymousAccess": False,
                                  "unlicensedAccess": False, "subjects": {"group": {
                                      "results": [self._group_json(g)], "size": 1}}})
            if space.get("anonymous") or space.get("unlicensed"):
                # No subjects: the space is open to anonymous and/or unlicensed (JSM) users.
                perms.append({"operation": {"operation": "read", "targetType": "space"},
                              "anonymousAccess": bool(space.get("anonymous")),
                              "unlicensedAccess": bool(space.get("unlicensed"))})
            out["permissions"] = perms
        return out

    # -- v2 ---------------------------------------------------------------------------------
    def _cursor_page(self, request: Request, items: list[Any], path: str, scope: str,
                     cap: int = 250) -> Response | tuple[list[Any], JsonObject, JsonObject]:
        """A v2 cursor page: (items, `_links`, headers) or a 400 for a forged cursor."""
        offset = 0
        cursor = request.arg("cursor")
        if cursor is not None:
            got = decode_cursor(cursor, scope)
            if got is None:
                return Response.json({"errors": [{"status": 400, "code": "INVALID_REQUEST_"
                                                  "PARAMETER", "title": "Invalid cursor"}]}, 400)
            offset = got
        limit = self._page_size(request, cap)
        page = items[offset:offset + limit]
        links: JsonObject = {"base": self._base(request)}
        headers: JsonObject = {}
        if offset + limit < len(items) or self.tenant.get("quirk_next_on_empty", False):
            query = {k: v[0] for k, v in request.query.items() if k not in ("cursor", "limit")}
            query.update(cursor=encode_cursor(offset + len(page), scope), limit=str(limit))
            links["next"] = f"/wiki{path}?{urlencode(query)}"  # relative to the site
            headers["Link"] = f'<{links["next"]}>; rel="next"'
        return page, links, headers

    def _v2_spaces(self, request: Request) -> Response:
        keys = {k for k in (request.arg("keys") or "").split(",") if k}
        spaces = [s for s in self._list("spaces") if not keys or s["key"] in keys]
        got = self._cursor_page(request, spaces, "/api/v2/spaces", f"spaces:{sorted(keys)}")
        if isinstance(got, Response):
            return got
        page, links, headers = got
        return Response.json({"results": [
            {"id": str(s["id"]), "key": s["key"], "name": s.get("name", s["key"]),
             "type": s.get("type", "global"), "status": s.get("status", "current"),
             "_links": {"webui": f"/spaces/{s['key']}"}} for s in page],
            "_links": links}, headers=headers)

    def _v2_space_permissions(self, request: Request) -> Response:
        """One assignment per (principal, operation); users, groups and roles. Anonymous and
        unlicensed access are not among them (the v1 expansion carries those)."""
        space = next((s for s in self._list("spaces")
                      if str(s["id"]) == request.params["space_id"]), None)
        if space is None:
            return Response.json({"errors": [{"status": 404, "code": "NOT_FOUND"}]}, 404)
        if not request.params.get("_admin"):
            return Response.json({"errors": [{"status": 403, "code": "FORBIDDEN", "title":
                                              "Not permitted to view space permissions"}]}, 403)
        items: list[JsonObject] = []
        for perm in space.get("permissions", []):
            operation = {"key": perm["operation"], "targetType": "space"}
            for kind in ("users", "groups", "roles"):
                for pid in perm.get(kind, []):
                    items.append({"id": str(len(items) + 1),
                                  "principal": {"type": kind[:-1], "id": pid},
                                  "operation": operation})
        path = f"/api/v2/spaces/{space['id']}/permissions"
        got = self._cursor_page(request, items, path, path)
        if isinstance(got, Response):
            return got
        page, links, headers = got
        return Response.json({"results": page, "_links": links}, headers=headers)

    def _v2_users_bulk(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        ids = body.get("accountIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
                or not 0 < len(ids) <= 250:
            return Response.json({"errors": [{"status": 400, "code": "INVALID_REQUEST_"
                                              "PARAMETER", "title": "accountIds: 1 to 250"}]}, 400)
        known = {u["accountId"] for u in self._list("users")}
        results = []
        for account in ids:
            if account in known:
                user = self._user_json(account)
                user.pop("type", None)
                results.append(user)
        return Response.json({"results": results, "_links": {}})

    def _spaces(self, request: Request) -> Response:
        keys = request.query.get("spaceKey") or None
        spaces = [s for s in self._list("spaces") if keys is None or s["key"] in keys]
        admin = bool(request.params.get("_admin"))
        return self._offset_page(request, spaces,
                                 lambda s: self._space_json(s, self._expand(request), admin),
                                 "/rest/api/space")

    def _space_one(self, request: Request) -> Response:
        space = self._space(request.params["key"])
        if space is None:
            return Response.json({"statusCode": 404, "message": "No space found"}, 404)
        return Response.json(self._space_json(space, self._expand(request),
                                              bool(request.params.get("_admin"))))

    # -- groups ------------------------------------------------------------------------------
    def _groups(self, request: Request) -> Response:
        return self._offset_page(request, self._list("groups"),
                                 lambda g: self._group_json(g["id"]), "/rest/api/group")

    def _members(self, request: Request, group: JsonObject | None, path: str) -> Response:
        if group is None:
            return Response.json({"statusCode": 404, "message": "No group found"}, 404)
        return self._offset_page(request, list(group.get("members", [])), self._user_json,
                                 path, cap=200)

    def _members_by_id(self, request: Request) -> Response:
        gid = request.params["group_id"]
        group = next((g for g in self._list("groups") if g["id"] == gid), None)
        return self._members(request, group, f"/rest/api/group/{gid}/membersByGroupId")

    def _members_by_name(self, request: Request) -> Response:
        name = request.arg("name")
        group = next((g for g in self._list("groups") if g["name"] == name), None)
        return self._members(request, group, "/rest/api/group/member")

    def _offset_page(self, request: Request, items: list[Any],
                     shape: Callable[[Any], JsonObject], path: str,
                     cap: int = 100) -> Response:
        raw = request.arg("start", "0") or "0"
        if not raw.isdigit():
            return Response.json({"statusCode": 400, "message": "start is a number"}, 400)
        start = int(raw)
        limit = self._page_size(request, cap)
        page = items[start:start + limit]
        links: JsonObject = {"base": self._base(request), "context": "/wiki"}
        if start + limit < len(items) or self.tenant.get("quirk_next_on_empty", False):
            query = {k: v[0] for k, v in request.query.items() if k not in ("start", "limit")}
            query.update(start=str(start + limit), limit=str(limit))
            links["next"] = f"{path}?{urlencode(query)}"
        return Response.json({"results": [shape(i) for i in page], "start": start,
                              "limit": limit, "size": len(page), "_links": links})

    # -- the test's handle -------------------------------------------------------------------
    def touch(self, item: JsonObject, when: datetime | None = None) -> None:
        item["version"] = int(item.get("version", 1)) + 1
        item["when"] = iso(when or datetime.now(UTC))

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One change of the tenant: validated after, undone entirely if it is not valid."""
        with self.lock:
            before = copy.deepcopy(self.tenant)
            try:
                yield
                self.validate(self.tenant)
            except Exception:
                self.tenant = before
                raise

    def edit(self, content_id: str, **fields: Any) -> None:
        """Change content (title, body, ...): a new version, `lastmodified` now."""
        with self._change():
            item = self._must(content_id)
            item.update(fields)
            self.touch(item)

    def add(self, item: JsonObject) -> None:
        with self._change():
            item.setdefault("version", 1)
            item.setdefault("when", iso(datetime.now(UTC)))
            item.setdefault("created", item["when"])
            self._list("content").append(item)

    def restrict(self, content_id: str, users: list[str] | None = None,
                 groups: list[str] | None = None) -> None:
        """Set the read restriction (empty lists: none). Does not touch lastmodified."""
        with self._change():
            item = self._must(content_id)
            item.setdefault("restrictions", {})["read"] = {"users": list(users or []),
                                                           "groups": list(groups or [])}

    def move(self, content_id: str, space: str | None = None, parent: str | None = None) -> None:
        with self._change():
            item = self._must(content_id)
            if space is not None:
                if self._space(space) is None:
                    raise ValueError(f"unknown space {space!r}")
                # The subtree moves with its root, as at the source (a parent and its
                # children are always in one space).
                for node in [item, *self._descendants(content_id)]:
                    node["space"] = space
            item["parent"] = parent
            self.touch(item)

    def forbid(self, content_id: str, *parts: str) -> None:
        """Make the content (`"content"`: its body, one-item read, attachments) or its
        `"restrictions"` answer 403 to the connector's account; no parts: readable again."""
        with self._change():
            item = self._must(content_id)
            item["forbidden"] = list(parts)

    def _descendants(self, content_id: str) -> list[JsonObject]:
        out: list[JsonObject] = []
        frontier = [content_id]
        while frontier:
            parent = frontier.pop()
            for child in self._list("content"):
                if child.get("parent") == parent and child not in out:
                    out.append(child)
                    frontier.append(child["id"])
        return out

    def trash(self, content_id: str) -> None:
        with self._change():
            self._must(content_id)["status"] = "trashed"

    def delete(self, content_id: str) -> None:
        with self._change():
            item = self._must(content_id)
            self._list("content").remove(item)
            for child in self._list("content"):
                if child.get("parent") == content_id:
                    child["parent"] = item.get("parent")

    def set_members(self, group_id: str, members: list[str]) -> None:
        with self._change():
            group = next((g for g in self._list("groups") if g["id"] == group_id), None)
            if group is None:
                raise ValueError(f"unknown group {group_id!r}")
            group["members"] = list(members)

    def set_space_permissions(self, key: str, permissions: list[JsonObject],
                              anonymous: bool | None = None) -> None:
        with self._change():
            space = self._space(key)
            if space is None:
                raise ValueError(f"unknown space {key!r}")
            space["permissions"] = permissions
            if anonymous is not None:
                space["anonymous"] = anonymous

    def _must(self, content_id: str) -> JsonObject:
        item = self.content_by_id(content_id)
        if item is None:
            raise ValueError(f"no content {content_id!r}")
        return item

    def admin(self, request: Request, rest: str) -> Response | None:
        """`/_admin/content/{id}` POST (edit fields) / DELETE; `.../restrict`, `.../move`,
        `.../trash` POST; `/_admin/groups/{id}/members` PUT; `/_admin/spaces/{key}/permissions`
        PUT."""
        parts = rest.split("/")
        body = request.json() if request.body else {}
        if parts[0] == "content" and len(parts) >= 2:
            cid = parts[1]
            action = parts[2] if len(parts) > 2 else ""
            if request.method == "DELETE" and not action:
                self.delete(cid)
            elif request.method == "POST" and not action:
                if self.content_by_id(cid) is None:
                    self.add({"id": cid, **body})
                else:
                    self.edit(cid, **body)
            elif request.method == "POST" and action == "restrict":
                self.restrict(cid, body.get("users"), body.get("groups"))
            elif request.method == "POST" and action == "move":
                self.move(cid, body.get("space"), body.get("parent"))
            elif request.method == "POST" and action == "trash":
                self.trash(cid)
            elif request.method == "POST" and action == "forbid":
                self.forbid(cid, *body.get("parts", []))
            else:
                return None
            return Response.json(self._must(cid) if self.content_by_id(cid) else {"id": cid})
        if parts[0] == "groups" and len(parts) == 3 and parts[2] == "members" \
                and request.method == "PUT":
            self.set_members(parts[1], list(body))
            return Response.json({"id": parts[1], "members": body})
        if parts[0] == "spaces" and len(parts) == 3 and parts[2] == "permissions" \
                and request.method == "PUT":
            self.set_space_permissions(parts[1], body.get("permissions", []),
                                       body.get("anonymous"))
            return Response.json(self._space(parts[1]))
        return None
