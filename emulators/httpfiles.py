"""A minimal "files over HTTP" source: documents with content and read/deny lists, groups, and a
change feed with an expiring cursor. The example every emulator test (and `clearance emulate
httpfiles`) uses; the Confluence, Graph and Google emulators come with their connectors.

Tenant data file (JSON; see emulators/tenants/httpfiles.json):

    {
      "tokens": ["s3cret"],                       # bearer tokens the API accepts
      "documents": {
        "<id>": {"title": "...", "content": "...", "format": "md",
                 "read": ["user:a@x.com", "group:hr"], "deny": []}
      },
      "groups": {"hr": ["user:a@x.com", "group:ops"]},
      "page_size": 50                              # optional
    }

API (all under /api, `Authorization: Bearer <token>`; 401 without one of the tokens):

    GET /api/documents?page_token=T        {"items": [{"id","title","format","version"}],
                                            "next_page_token": T|null, "cursor": C}
    GET /api/documents/{id}                 one item (404 if absent)
    GET /api/documents/{id}/content         the bytes
    GET /api/documents/{id}/permissions     {"read": [...], "deny": [...]}
    GET /api/groups?page_token=T            {"items": [{"id","members"}], "next_page_token"}
    GET /api/changes?cursor=C               {"changes": [{"id","deleted"}], "cursor": C}
                                            410 resyncRequired if C is older than the log keeps

Admin (besides /_admin/tenant, /_admin/faults, /_admin/stats of every emulator):

    PUT    /_admin/documents/{id}           create or replace a document (logged as a change)
    DELETE /_admin/documents/{id}           delete it (logged)
    PUT    /_admin/groups/{name}            {"members": [...]} (groups are not in the change log)
    POST   /_admin/expire-cursors           forget the change log: every cursor answers 410
"""

from __future__ import annotations

from typing import Any, ClassVar

from emulators.base import Emulator, JsonObject, Request, Response


class HttpFilesEmulator(Emulator):
    name: ClassVar[str] = "httpfiles"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self._log: list[tuple[int, str, bool]] = []  # (sequence, doc id, deleted)
        self._sequence = 0
        self._oldest = 0  # the first sequence the log still holds
        self._versions: dict[str, int] = {}
        super().__init__(tenant)
        for doc_id in self.documents:
            self._versions[doc_id] = 1

    # -- tenant ----------------------------------------------------------------------------
    def validate(self, tenant: JsonObject) -> None:
        unknown = set(tenant) - {"tokens", "documents", "groups", "page_size"}
        if unknown:
            raise ValueError(f"unknown tenant key(s) {sorted(unknown)}")
        if not _strings(tenant.get("tokens", [])):
            raise ValueError("tokens is a list of strings")
        for key in ("documents", "groups"):
            if not isinstance(tenant.get(key, {}), dict):
                raise ValueError(f"{key} is a JSON object")
        if not isinstance(tenant.get("page_size", 50), int) or tenant.get("page_size", 50) < 1:
            raise ValueError("page_size is a positive integer")
        for doc_id, doc in tenant.get("documents", {}).items():
            _check_document(doc_id, doc)
        for name, members in tenant.get("groups", {}).items():
            if not _strings(members):
                raise ValueError(f"group {name!r}: members is a list of principals")

    @property
    def documents(self) -> dict[str, JsonObject]:
        docs: dict[str, JsonObject] = self.tenant.setdefault("documents", {})
        return docs

    @property
    def groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = self.tenant.setdefault("groups", {})
        return groups

    def _page_size(self) -> int:
        return int(self.tenant.get("page_size", 50))

    # -- routes ----------------------------------------------------------------------------
    def setup(self) -> None:
        self.route("GET", "/api/documents", self._authorized(self._list))
        self.route("GET", "/api/documents/{doc_id}", self._authorized(self._item))
        self.route("GET", "/api/documents/{doc_id}/content", self._authorized(self._content))
        self.route("GET", "/api/documents/{doc_id}/permissions",
                   self._authorized(self._permissions))
        self.route("GET", "/api/groups", self._authorized(self._groups))
        self.route("GET", "/api/changes", self._authorized(self._changes))

    def _authorized(self, handler: Any) -> Any:
        def guarded(request: Request) -> Response:
            tokens = self.tenant.get("tokens", [])
            if request.bearer is None or request.bearer not in tokens:
                return Response.error(401, "InvalidAuthenticationToken", "bad or no token")
            result: Response = handler(request)
            return result
        return guarded

    def _summary(self, doc_id: str) -> JsonObject:
        doc = self.documents[doc_id]
        return {"id": doc_id, "title": doc.get("title", doc_id), "format": doc.get("format", "txt"),
                "version": self._versions.get(doc_id, 1)}

    def _list(self, request: Request) -> Response:
        ids = sorted(self.documents)
        start = _page_start(request.arg("page_token"), len(ids))
        if start is None:
            return Response.error(400, "invalidPageToken", "page token is not valid")
        end = start + self._page_size()
        return Response.json({"items": [self._summary(i) for i in ids[start:end]],
                              "next_page_token": str(end) if end < len(ids) else None,
                              "cursor": str(self._sequence)})

    def _item(self, request: Request) -> Response:
        doc_id = request.params["doc_id"]
        if doc_id not in self.documents:
            return Response.error(404, "itemNotFound", "no such document")
        return Response.json(self._summary(doc_id))

    def _content(self, request: Request) -> Response:
        doc = self.documents.get(request.params["doc_id"])
        if doc is None:
            return Response.error(404, "itemNotFound", "no such document")
        return Response(200, str(doc.get("content", "")).encode(),
                        {"Content-Type": "application/octet-stream"})

    def _permissions(self, request: Request) -> Response:
        doc = self.documents.get(request.params["doc_id"])
        if doc is None:
            return Response.error(404, "itemNotFound", "no such document")
        return Response.json({"read": list(doc.get("read", [])), "deny": list(doc.get("deny", []))})

    def _groups(self, request: Request) -> Response:
        names = sorted(self.groups)
        start = _page_start(request.arg("page_token"), len(names))
        if start is None:
            return Response.error(400, "invalidPageToken", "page token is not valid")
        end = start + self._page_size()
        items = [{"id": n, "members": list(self.groups[n])} for n in names[start:end]]
        return Response.json({"items": items,
                              "next_page_token": str(end) if end < len(names) else None})

    def _changes(self, request: Request) -> Response:
        raw = request.arg("cursor")
        if raw is None or not raw.isdigit() or int(raw) > self._sequence:
            return Response.error(400, "invalidCursor", "cursor is not valid")
        cursor = int(raw)
        if cursor < self._oldest:
            return Response.error(410, "resyncRequired", "the cursor has expired; resync")
        changes = [{"id": doc_id, "deleted": deleted}
                   for seq, doc_id, deleted in self._log if seq > cursor]
        return Response.json({"changes": changes, "cursor": str(self._sequence)})

    # -- admin -----------------------------------------------------------------------------
    def admin(self, request: Request, rest: str) -> Response | None:
        if rest.startswith("documents/") and request.method in ("PUT", "DELETE"):
            doc_id = rest[len("documents/"):]
            if request.method == "PUT":
                doc = request.json()
                _check_document(doc_id, doc)
                self.documents[doc_id] = doc
                self._versions[doc_id] = self._versions.get(doc_id, 0) + 1
            elif self.documents.pop(doc_id, None) is None:
                return Response.error(404, "itemNotFound", "no such document")
            self._record(doc_id, deleted=request.method == "DELETE")
            return Response.json({"cursor": str(self._sequence)})
        if rest.startswith("groups/") and request.method == "PUT":
            members = request.json().get("members")
            name = rest[len("groups/"):]
            self.validate({"groups": {name: members}})
            self.groups[name] = members
            return Response.json({"id": name, "members": members})
        if rest == "expire-cursors" and request.method == "POST":
            self._log.clear()
            self._oldest = self._sequence + 1
            return Response.json({"oldest": self._oldest})
        return None

    def _record(self, doc_id: str, *, deleted: bool) -> None:
        self._sequence += 1
        self._log.append((self._sequence, doc_id, deleted))


def _check_document(doc_id: str, doc: Any) -> None:
    if not isinstance(doc, dict):
        raise ValueError(f"document {doc_id!r} is a JSON object")
    unknown = set(doc) - {"title", "content", "format", "read", "deny"}
    if unknown:
        raise ValueError(f"document {doc_id!r}: unknown key(s) {sorted(unknown)}")
    if not all(isinstance(doc.get(k, ""), str) for k in ("title", "content", "format")):
        raise ValueError(f"document {doc_id!r}: title, content and format are strings")
    for key in ("read", "deny"):
        if not _strings(doc.get(key, [])):
            raise ValueError(f"document {doc_id!r}: {key} is a list of principals")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _page_start(token: str | None, size: int) -> int | None:
    if token is None:
        return 0
    return int(token) if token.isdigit() and int(token) <= size else None
