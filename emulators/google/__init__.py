"""A Google Workspace emulator: the OAuth token endpoint, Drive v3 and Admin SDK Directory.

What a Drive connector with domain-wide delegation reads, served by one HTTP(S) server:
- `POST /token`: the JWT-bearer grant. The assertion's RS256 signature is verified with the
  public key of the tenant's service account (PyJWT), with its `aud` (Google's token URL, which
  google-auth always signs for, or this server's own `/token`), `iss`, `exp` (at most an hour
  after `iat`), the impersonated `sub` (an active user of the domain) and the scopes (a subset
  of those delegated). Answers an opaque `ya29.` token; errors as Google's
  `{"error": "invalid_grant" | "unauthorized_client", "error_description": ...}`.
- Drive v3 under `/drive/v3/` and at the root (google-api-python-client with an
  `api_endpoint` override drops the service path): files.list (q, fields, pageToken, corpora,
  driveId, includeItemsFromAllDrives, supportsAllDrives), files.get, `alt=media`, export,
  permissions.list (with `permissionDetails` on shared drives, inherited ones included),
  changes.getStartPageToken, changes.list (per impersonated user, `removed` when the user lost
  the file), drives.list.
- Directory under `/admin/directory/v1/`: users.list, groups.list, members.list (nested groups,
  `includeDerivedMembership`), for an impersonated admin only.

Each request runs as the user its token impersonates: they see what the tenant lets them see.
The tenant format is documented in emulators/google/README.md; the Python handle (`edit`,
`trash`, `remove`, `set_permissions`, `set_members`, `expire_page_tokens`, `rate_limit`)
changes it between syncs and records each change for the changes feed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs

from emulators.base import Emulator, Fault, JsonObject, Request, Response

GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOC = "application/vnd.google-apps.document"
SHEET = "application/vnd.google-apps.spreadsheet"
SLIDES = "application/vnd.google-apps.presentation"
NATIVE_PREFIX = "application/vnd.google-apps."
EXPORTS: dict[str, tuple[str, ...]] = {
    DOC: ("text/plain", "text/html", "application/pdf"),
    SHEET: ("text/csv", "application/pdf"),
    SLIDES: ("text/plain", "application/pdf"),
}
DRIVE_SCOPES = ("https://www.googleapis.com/auth/drive",
                "https://www.googleapis.com/auth/drive.readonly")
GROUP_SCOPES = ("https://www.googleapis.com/auth/admin.directory.group",
                "https://www.googleapis.com/auth/admin.directory.group.readonly")
USER_SCOPES = ("https://www.googleapis.com/auth/admin.directory.user",
               "https://www.googleapis.com/auth/admin.directory.user.readonly")
ROLE_RANK = {"reader": 1, "commenter": 2, "writer": 3, "fileOrganizer": 4, "organizer": 5,
             "owner": 6}
SHARERS = frozenset({"writer", "fileOrganizer", "organizer", "owner"})
DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"


def google_error(status: int, reason: str, message: str, *, domain: str = "global",
                 location: str | None = None) -> Response:
    """An error in Google's JSON shape (the `reason` is what a client must branch on)."""
    item: JsonObject = {"domain": domain, "reason": reason, "message": message}
    if location is not None:
        item.update(locationType="parameter", location=location)
    statuses = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
    return Response.json({"error": {"code": status, "message": message, "errors": [item],
                                    "status": statuses.get(status, "UNKNOWN")}}, status)


def rate_limit_body(status: int = 403, reason: str = "userRateLimitExceeded") -> JsonObject:
    message = "User Rate Limit Exceeded" if reason == "userRateLimitExceeded" \
        else "Rate Limit Exceeded"
    return {"error": {"code": status, "message": message,
                      "errors": [{"domain": "usageLimits", "reason": reason,
                                  "message": message}]}}


def _oauth_error(error: str, description: str) -> Response:
    return Response.json({"error": error, "error_description": description}, 400)


# -- fields masks -------------------------------------------------------------------------------
Mask = dict[str, "Mask | None"]


def parse_fields(text: str) -> Mask:
    """`nextPageToken,files(id,owners(emailAddress))` as a nested mask; ValueError if bad."""
    pos = 0

    def parse_list(depth: int) -> Mask:
        nonlocal pos
        out: Mask = {}
        while True:
            match = re.compile(r"\s*([A-Za-z_*][\w*]*(?:/[A-Za-z_][\w]*)*)\s*").match(text, pos)
            if match is None:
                raise ValueError(f"bad fields at {pos}")
            path = match.group(1).split("/")
            pos = match.end()
            sub: Mask | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = parse_list(depth + 1)
                if pos >= len(text) or text[pos] != ")":
                    raise ValueError("unbalanced parentheses in fields")
                pos += 1
            node = out
            for part in path[:-1]:
                child = node.get(part)
                if child is None:
                    child = {}
                    node[part] = child
                node = child
            node[path[-1]] = sub
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if depth == 0 and pos != len(text):
                raise ValueError("trailing characters in fields")
            return out

    if not text.strip():
        raise ValueError("empty fields")
    return parse_list(0)


def apply_mask(value: Any, mask: Mask | None) -> Any:
    if mask is None or "*" in mask:
        return value
    if isinstance(value, list):
        return [apply_mask(v, mask) for v in value]
    if not isinstance(value, dict):
        return value
    return {k: apply_mask(value[k], sub) for k, sub in mask.items() if k in value}


# -- q --------------------------------------------------------------------------------------------
_TERM = re.compile(
    r"""\s*(?:
        (?P<field>trashed|mimeType|modifiedTime|name|starred)\s*(?P<op>!=|>=|<=|=|>|<)\s*
            (?P<value>'(?:[^'\\]|\\.)*'|true|false)
      | '(?P<needle>(?:[^'\\]|\\.)*)'\s+in\s+(?P<coll>parents|owners|writers|readers)
    )\s*""", re.X)


def parse_q(q: str) -> list[tuple[str, str, str]]:
    """The subset of Drive's query language the emulator serves: terms joined by `and`."""
    terms: list[tuple[str, str, str]] = []
    for part in re.split(r"\s+and\s+", q.strip()):
        match = _TERM.fullmatch(part)
        if match is None:
            raise ValueError(f"unsupported query term {part!r}")
        if match.group("field"):
            value = match.group("value")
            value = value[1:-1].replace("\\'", "'") if value.startswith("'") else value
            terms.append((match.group("field"), match.group("op"), value))
        else:
            terms.append((match.group("coll"), "in", match.group("needle").replace("\\'", "'")))
    return terms


def _b64(data: JsonObject) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode()


def _unb64(text: str) -> JsonObject | None:
    try:
        got = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, TypeError):
        return None
    return got if isinstance(got, dict) else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _flag(request: Request, name: str) -> bool:
    return (request.arg(name) or "false").lower() == "true"


class GoogleEmulator(Emulator):
    name: ClassVar[str] = "google"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.tokens: dict[str, tuple[str, frozenset[str], float]] = {}  # token -> sub, scopes
        self.seq = 1  # the next change number; a page token names the first change it wants
        self.floor = 1  # page tokens below this are no longer accepted
        self.log: list[tuple[int, str, frozenset[str], str]] = []  # seq, file, viewers, time
        self.base_url = ""
        self._memo: dict[Any, Any] | None = None
        super().__init__(tenant)

    def dispatch(self, request: Request) -> Response:
        with self.lock:  # memos live for one request: the tenant may change between them
            self._memo = {}
            try:
                return super().dispatch(request)
            finally:
                self._memo = None

    def _memoized(self, key: Any, make: Any) -> Any:
        memo = self._memo
        if memo is None:
            return make()
        if key not in memo:
            memo[key] = make()
        return memo[key]

    def bind(self, base_url: str) -> None:
        """The URL this server answers on (its own token URL is an accepted audience)."""
        self.base_url = base_url.rstrip("/")

    # -- tenant --------------------------------------------------------------------------------
    def validate(self, tenant: JsonObject) -> None:
        if not tenant:
            return
        for key in ("domain", "service_accounts", "users", "groups", "drives", "files"):
            if key not in tenant:
                raise ValueError(f"google tenant: {key!r} is required")
        for key in ("service_accounts", "users", "groups", "drives", "files"):
            if not isinstance(tenant[key], list) or not all(isinstance(x, dict)
                                                            for x in tenant[key]):
                raise ValueError(f"google tenant: {key!r} must be a list of objects")
        for sa in tenant["service_accounts"]:
            if not all(isinstance(sa.get(k), str) for k in ("client_email", "public_key_pem")) \
                    or not isinstance(sa.get("scopes"), list):
                raise ValueError("google tenant: a service account needs 'client_email', "
                                 "'public_key_pem' and 'scopes'")
        emails = [u.get("primaryEmail") for u in tenant["users"]]
        if not all(isinstance(e, str) and "@" in e for e in emails) \
                or len(set(emails)) != len(emails):
            raise ValueError("google tenant: users need unique 'primaryEmail' addresses")
        for group in tenant["groups"]:
            if not isinstance(group.get("email"), str) or not isinstance(
                    group.get("members", []), list):
                raise ValueError("google tenant: a group needs an 'email' and a 'members' list")
        drive_ids = set()
        for drive in tenant["drives"]:
            if not isinstance(drive.get("id"), str) or not isinstance(
                    drive.get("members", []), list):
                raise ValueError("google tenant: a shared drive needs an 'id' and 'members'")
            drive_ids.add(drive["id"])
        ids = [f.get("id") for f in tenant["files"]]
        if not all(isinstance(i, str) and i for i in ids) or len(set(ids)) != len(ids):
            raise ValueError("google tenant: file ids must be unique non-empty strings")
        known = set(ids) | drive_ids
        for entry in tenant["files"]:
            where = f"google tenant: file {entry['id']}"
            if not isinstance(entry.get("name"), str) or not isinstance(
                    entry.get("mimeType"), str):
                raise ValueError(f"{where}: 'name' and 'mimeType' are required")
            drive_id = entry.get("driveId")
            if drive_id is not None and drive_id not in drive_ids:
                raise ValueError(f"{where}: driveId {drive_id!r} is not a shared drive")
            if drive_id is None and not (isinstance(entry.get("owners"), list)
                                         and len(entry["owners"]) == 1):
                raise ValueError(f"{where}: a My Drive file needs one 'owners' address")
            parents = entry.get("parents", [])
            if not isinstance(parents, list) or any(p not in known for p in parents):
                raise ValueError(f"{where}: 'parents' must name folders or the shared drive")
            perms = entry.get("permissions", [])
            # Other types are served as they are (Workspace adds kinds: target audiences).
            if not isinstance(perms, list) or not all(isinstance(p, dict) and isinstance(
                    p.get("type"), str) for p in perms):
                raise ValueError(f"{where}: 'permissions' must be permission objects with a "
                                 "'type' (user, group, domain, anyone)")

    @property
    def page_size(self) -> int:
        return int(self.tenant.get("page_size", 100))

    def _file(self, file_id: str) -> JsonObject | None:
        return next((f for f in self.tenant["files"] if f["id"] == file_id), None)

    def _files(self) -> dict[str, JsonObject]:
        result: dict[str, JsonObject] = self._memoized(
            "files", lambda: {f["id"]: f for f in self.tenant["files"]})
        return result

    def _user(self, email: str) -> JsonObject | None:
        low = email.lower()
        return next((u for u in self.tenant["users"] if u["primaryEmail"].lower() == low
                     or low in [a.lower() for a in u.get("aliases", [])]), None)

    def _group(self, key: str) -> JsonObject | None:
        low = key.lower()
        return next((g for g in self.tenant["groups"] if g["email"].lower() == low
                     or g.get("id") == key or low in [a.lower() for a in g.get("aliases", [])]),
                    None)

    def _drive(self, drive_id: str) -> JsonObject | None:
        return next((d for d in self.tenant["drives"] if d["id"] == drive_id), None)

    # -- who is who ----------------------------------------------------------------------------
    def groups_of(self, email: str) -> set[str]:
        """Group emails (lower) the address belongs to, through nested groups; a CUSTOMER
        member admits every user of the domain."""
        return set(self._memoized(("groups", email.lower()), lambda: self._groups_of(email)))

    def _groups_of(self, email: str) -> set[str]:
        low = email.lower()
        in_domain = self._user(email) is not None
        held: set[str] = set()
        changed = True
        while changed:
            changed = False
            for group in self.tenant["groups"]:
                gmail = group["email"].lower()
                if gmail in held:
                    continue
                for member in group.get("members", []):
                    kind = member.get("type", "USER")
                    address = str(member.get("email", "")).lower()
                    if (kind in ("USER", "EXTERNAL") and address == low) \
                            or (kind == "CUSTOMER" and in_domain) \
                            or (kind == "GROUP" and address in held):
                        held.add(gmail)
                        changed = True
                        break
        return held

    def _matches(self, perm: JsonObject, email: str, groups: set[str], *,
                 links: bool) -> bool:
        """Whether a permission admits `email` (`links`: domain/anyone link-only ones too)."""
        if perm.get("deleted"):
            return False
        expires = perm.get("expirationTime")
        if isinstance(expires, str) and expires <= _now():
            return False
        kind = perm.get("type")
        if kind == "user":
            return str(perm.get("emailAddress", "")).lower() == email.lower()
        if kind == "group":
            return str(perm.get("emailAddress", "")).lower() in groups
        if kind == "domain":
            return (links or bool(perm.get("allowFileDiscovery"))) and \
                email.lower().rpartition("@")[2] == str(perm.get("domain", "")).lower()
        if kind == "anyone":
            return links or bool(perm.get("allowFileDiscovery"))
        return False

    # -- permissions as Drive renders them ----------------------------------------------------
    def _pid(self, perm: JsonObject) -> str:
        if perm.get("id"):
            return str(perm["id"])
        if perm.get("type") == "anyone":
            return "anyoneWithLink" if not perm.get("allowFileDiscovery") else "anyone"
        if perm.get("type") == "domain":
            return str(perm.get("domain"))
        return "p-" + str(perm.get("emailAddress", "?")).lower()

    def effective_permissions(self, entry: JsonObject) -> list[JsonObject]:
        """The file's own permissions, its folders' (they propagate) and, in a shared drive, the
        drive's members, as permissions.list returns them (merged per permission id)."""
        files = self._files()
        drive_id = entry.get("driveId")
        merged: dict[str, JsonObject] = {}

        def add(perm: JsonObject, detail: JsonObject | None) -> None:
            pid = self._pid(perm)
            out = merged.get(pid)
            if out is None:
                out = {k: v for k, v in perm.items() if k != "permissionDetails"}
                out["id"] = pid
                out["kind"] = "drive#permission"
                if drive_id:
                    out["permissionDetails"] = []
                merged[pid] = out
            elif "expirationTime" in out:  # one grant per grantee: the longest access wins
                if "expirationTime" not in perm:
                    del out["expirationTime"]
                else:
                    out["expirationTime"] = max(str(out["expirationTime"]),
                                                str(perm["expirationTime"]))
            if ROLE_RANK.get(str(perm.get("role")), 0) > ROLE_RANK.get(str(out.get("role")), 0):
                out["role"] = perm.get("role")
            if drive_id and detail is not None:
                out["permissionDetails"].append(detail)

        if not drive_id:
            owner = entry["owners"][0]
            add({"id": "owner-" + owner.lower(), "type": "user", "role": "owner",
                 "emailAddress": owner}, None)
        for perm in entry.get("permissions", []):
            add(perm, {"permissionType": "file", "role": perm.get("role", "reader"),
                       "inherited": False})
        seen: set[str] = set()
        parents = list(entry.get("parents", []))
        while parents:
            pid = parents.pop(0)
            if pid in seen:
                continue
            seen.add(pid)
            folder = files.get(pid)
            if folder is None:
                continue
            for perm in folder.get("permissions", []):
                detail = {"permissionType": "file", "role": perm.get("role", "reader"),
                          "inherited": True, "inheritedFrom": pid}
                add(perm, detail)
            parents.extend(folder.get("parents", []))
        if drive_id:
            drive = self._drive(drive_id) or {"members": []}
            for member in drive.get("members", []):
                add(member, {"permissionType": "member", "role": member.get("role", "reader"),
                             "inherited": True, "inheritedFrom": drive_id})
        return list(merged.values())

    def _member_of_drive(self, drive_id: str, email: str, groups: set[str]) -> str | None:
        drive = self._drive(drive_id)
        if drive is None:
            return None
        best: str | None = None
        for member in drive.get("members", []):
            if self._matches(member, email, groups, links=False):
                role = str(member.get("role", "reader"))
                if best is None or ROLE_RANK.get(role, 0) > ROLE_RANK.get(best, 0):
                    best = role
        return best

    def role_of(self, entry: JsonObject, email: str, *, links: bool = True) -> str | None:
        """The user's best role on the file (None: no access)."""
        groups = self.groups_of(email)
        best: str | None = None
        for perm in self.effective_permissions(entry):
            if self._matches(perm, email, groups, links=links):
                role = str(perm.get("role", "reader"))
                if best is None or ROLE_RANK.get(role, 0) > ROLE_RANK.get(best, 0):
                    best = role
        return best

    def in_view(self, entry: JsonObject, email: str) -> bool:
        """In the user's own view (My Drive, shared with them, their shared drives): what
        corpora=user lists and what their changes feed reports. Link-only and discoverable
        domain shares are not in it."""
        groups = self.groups_of(email)
        if entry.get("driveId") and self._member_of_drive(entry["driveId"], email, groups):
            return True
        return any(p.get("type") in ("user", "group") and
                   self._matches(p, email, groups, links=False)
                   for p in self.effective_permissions(entry))

    def viewers(self, entry: JsonObject | None) -> frozenset[str]:
        if entry is None:
            return frozenset()
        return frozenset(u["primaryEmail"].lower() for u in self.tenant["users"]
                         if self.in_view(entry, u["primaryEmail"]))

    # -- the test's handle --------------------------------------------------------------------
    def _record(self, file_id: str, before: frozenset[str]) -> None:
        self.log.append((self.seq, file_id, before, _now()))
        self.seq += 1

    def _touch_tree(self, file_id: str, change: Any) -> None:
        """Apply `change` to the file (a folder: every descendant's view may change too) and
        record a change for each, with who saw it before."""
        files = self._files()
        affected = [file_id]
        todo = [file_id]
        while todo:
            current = todo.pop()
            for f in self.tenant["files"]:
                if current in f.get("parents", []) and f["id"] not in affected:
                    affected.append(f["id"])
                    todo.append(f["id"])
        before = {fid: self.viewers(files.get(fid)) for fid in affected}
        change()
        for fid in affected:
            self._record(fid, before[fid])

    def add(self, entry: JsonObject) -> None:
        with self.lock:
            self.tenant["files"].append(entry)
            self.validate(self.tenant)
            self._record(entry["id"], frozenset())

    def edit(self, file_id: str, **fields: Any) -> None:
        """Change a file's fields (content, name, ...): a new version and modifiedTime."""
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id

            def change() -> None:
                assert entry is not None
                entry.update(fields)
                entry["version"] = str(int(entry.get("version", "1")) + 1)
                entry["modifiedTime"] = _now()

            self._touch_tree(file_id, change)

    def trash(self, file_id: str, trashed: bool = True) -> None:
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id

            def change() -> None:
                assert entry is not None
                entry["trashed"] = trashed
                entry["version"] = str(int(entry.get("version", "1")) + 1)

            self._touch_tree(file_id, change)

    def remove(self, file_id: str) -> None:
        """Deleted for good (emptied from the trash): everyone who had it gets `removed`."""
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id
            self._touch_tree(file_id, lambda: self.tenant["files"].remove(entry))

    def set_permissions(self, file_id: str, permissions: list[JsonObject]) -> None:
        """New own permissions (modifiedTime does not move, the version does). As in Drive,
        a folder's sharing change is one change, for the folder: its descendants' access
        changes with it but the feed does not list them."""
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id
            before = self.viewers(entry)
            entry["permissions"] = permissions
            entry["version"] = str(int(entry.get("version", "1")) + 1)
            self._record(file_id, before)

    def set_owner(self, file_id: str, owner: str) -> None:
        """Ownership moves; the old owner keeps writer access, as Drive does."""
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id

            def change() -> None:
                assert entry is not None
                old = entry["owners"][0]
                entry["owners"] = [owner]
                entry["permissions"] = [p for p in entry.get("permissions", [])
                                        if str(p.get("emailAddress", "")).lower()
                                        != owner.lower()]
                entry["permissions"].append({"type": "user", "role": "writer",
                                             "emailAddress": old})
                entry["version"] = str(int(entry.get("version", "1")) + 1)

            self._touch_tree(file_id, change)

    def move(self, file_id: str, parents: list[str], drive_id: str | None = None) -> None:
        """New parents; with `drive_id`, into that shared drive (the drive owns it then: no
        `owners`), without it, within its drive or My Drive."""
        with self.lock:
            entry = self._file(file_id)
            assert entry is not None, file_id

            def change() -> None:
                assert entry is not None
                entry["parents"] = list(parents)
                if drive_id is not None:
                    entry["driveId"] = drive_id
                    entry.pop("owners", None)
                entry["version"] = str(int(entry.get("version", "1")) + 1)
                self.validate(self.tenant)

            self._touch_tree(file_id, change)

    def set_members(self, group_email: str, members: list[JsonObject]) -> None:
        with self.lock:
            group = self._group(group_email)
            assert group is not None, group_email
            group["members"] = list(members)

    def expire_page_tokens(self) -> None:
        """Every changes page token issued so far is now rejected (400 invalid pageToken)."""
        with self.lock:
            self.seq += 1
            self.floor = self.seq

    def rate_limit(self, path: str, times: int = 1, status: int = 403,
                   reason: str = "userRateLimitExceeded") -> None:
        """The next `times` requests to `path` (a glob) get Google's quota error."""
        self.faults.add(Fault(path, status=status, times=times,
                              body=rate_limit_body(status, reason)))

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "expire-page-tokens" and request.method == "POST":
            self.expire_page_tokens()
            return Response.json({"expired": True})
        if rest == "rate-limit" and request.method == "POST":
            body = request.json()
            self.rate_limit(str(body["path"]), int(body.get("times", 1)),
                            int(body.get("status", 403)),
                            str(body.get("reason", "userRateLimitExceeded")))
            return Response.json({"faults": self.faults.to_json()}, 201)
        return None

    # -- routes --------------------------------------------------------------------------------
    def setup(self) -> None:
        self.route("POST", "/token", self._token)
        for prefix in ("/drive/v3", ""):
            self.route("GET", f"{prefix}/files", self._files_list)
            self.route("GET", f"{prefix}/files/{{file}}", self._files_get)
            self.route("GET", f"{prefix}/files/{{file}}/export", self._export)
            self.route("GET", f"{prefix}/files/{{file}}/permissions", self._permissions)
            self.route("GET", f"{prefix}/changes/startPageToken", self._start_token)
            self.route("GET", f"{prefix}/changes", self._changes)
            self.route("GET", f"{prefix}/drives", self._drives)
        d = "/admin/directory/v1"
        self.route("GET", f"{d}/users", self._users)
        self.route("GET", f"{d}/groups", self._groups)
        self.route("GET", f"{d}/groups/{{group}}/members", self._members)

    # -- OAuth ---------------------------------------------------------------------------------
    def _token(self, request: Request) -> Response:
        import jwt
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.DecodeError:
            return _oauth_error("invalid_grant", "Invalid JWT: malformed assertion.")
        issuer = unverified.get("iss")
        account = next((sa for sa in self.tenant["service_accounts"]
                        if sa["client_email"] == issuer), None)
        if account is None:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        try:
            key = load_pem_public_key(account["public_key_pem"].encode())
        except (ValueError, UnsupportedAlgorithm):  # the tenant file's key is unusable
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        audiences = [GOOGLE_TOKEN_URI] + ([f"{self.base_url}/token"] if self.base_url else [])
        try:
            claims = jwt.decode(assertion, key,  # type: ignore[arg-type]
                                algorithms=["RS256"], audience=audiences, issuer=issuer,
                                options={"require": ["iss", "aud", "exp", "iat"]})
        except jwt.ExpiredSignatureError:
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived "
                                "token (60 minutes) and in a reasonable timeframe.")
        except jwt.InvalidAudienceError:
            return _oauth_error("invalid_grant", "Invalid JWT: audience is not the token URL.")
        except jwt.InvalidSignatureError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        except jwt.InvalidTokenError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {type(exc).__name__}.")
        if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("iat"), int) \
                or claims["exp"] - claims["iat"] > 3600 or claims["iat"] > time.time() + 300:
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived "
                                "token (60 minutes) and in a reasonable timeframe.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes or not scopes <= frozenset(account["scopes"]):
            return _oauth_error("unauthorized_client", "Client is unauthorized to retrieve "
                                "access tokens using this method, or client not authorized "
                                "for any of the scopes requested.")
        subject = claims.get("sub")
        if subject is None:
            subject = issuer
        else:
            person = self._user(str(subject)) if isinstance(subject, str) else None
            if person is None or person.get("suspended"):
                return _oauth_error("invalid_grant", "Invalid email or User ID")
            subject = person["primaryEmail"]
        lifetime = int(self.tenant.get("token_lifetime", 3599))
        token = "ya29.emu-" + secrets.token_urlsafe(24)
        self.tokens[token] = (str(subject), scopes, time.time() + lifetime)
        return Response.json({"access_token": token, "expires_in": lifetime,
                              "token_type": "Bearer"})

    def _caller(self, request: Request, wanted: tuple[str, ...]) -> str | Response:
        token = request.bearer
        held = self.tokens.get(token or "")
        if held is None or held[2] < time.time():
            return google_error(401, "authError", "Request had invalid authentication "
                                "credentials. Expected OAuth 2 access token.",
                                location="Authorization")
        subject, scopes, _ = held
        if not scopes & set(wanted):
            return google_error(403, "insufficientPermissions",
                                "Request had insufficient authentication scopes.")
        return subject

    # -- paging helpers ------------------------------------------------------------------------
    def _page(self, request: Request, entries: list[JsonObject], key: str, cap: int,
              extra: JsonObject | None = None) -> Response:
        size_arg = request.arg("pageSize") or request.arg("maxResults")
        try:
            size = min(int(size_arg), cap) if size_arg else self.page_size
        except ValueError:
            return google_error(400, "invalid", "Invalid value for pageSize", location="pageSize")
        if size < 1:
            return google_error(400, "invalid", "Invalid value for pageSize", location="pageSize")
        offset = 0
        token = request.arg("pageToken")
        if token:
            state = _unb64(token)
            if state is None or not isinstance(state.get("o"), int) or state["o"] < 0:
                return google_error(400, "invalid", "Invalid Value", location="pageToken")
            offset = state["o"]
        body: JsonObject = {**(extra or {}), key: entries[offset:offset + size]}
        if offset + size < len(entries):
            body["nextPageToken"] = _b64({"o": offset + size})
        return self._masked(request, body)

    def _masked(self, request: Request, body: JsonObject, *,
                default: str | None = None) -> Response:
        fields = request.arg("fields") or default
        if fields:
            try:
                mask = parse_fields(fields)
            except ValueError:
                return google_error(400, "invalidParameter", "Invalid field selection",
                                    location="fields")
            body = apply_mask(body, mask)
        return Response.json(body)

    # -- Drive: files --------------------------------------------------------------------------
    def render(self, entry: JsonObject, email: str) -> JsonObject:
        """A file resource as the caller gets it (every field; masks cut it down)."""
        out: JsonObject = {"kind": "drive#file", "id": entry["id"], "name": entry["name"],
                           "mimeType": entry["mimeType"], "trashed": self.trashed(entry),
                           "explicitlyTrashed": bool(entry.get("trashed")),
                           "version": str(entry.get("version", "1")),
                           "createdTime": entry.get("createdTime", "2024-01-01T00:00:00.000Z"),
                           "modifiedTime": entry.get("modifiedTime",
                                                     "2024-01-01T00:00:00.000Z"),
                           "parents": list(entry.get("parents", [])),
                           "webViewLink": entry.get("webViewLink",
                                                    self._link(entry)),
                           "spaces": ["drive"]}
        perms = self.effective_permissions(entry)
        out["permissionIds"] = [p["id"] for p in perms]
        if entry.get("driveId"):
            out["driveId"] = entry["driveId"]
        else:
            out["owners"] = [{"kind": "drive#user", "emailAddress": entry["owners"][0],
                              "me": entry["owners"][0].lower() == email.lower()}]
            out["ownedByMe"] = entry["owners"][0].lower() == email.lower()
            if self.role_of(entry, email) in SHARERS:
                out["permissions"] = perms
        if not entry["mimeType"].startswith(NATIVE_PREFIX):
            data = self._content(entry)
            out["size"] = str(len(data))
        if entry["mimeType"] == SHORTCUT:
            out["shortcutDetails"] = dict(entry.get("shortcutDetails", {}))
        return out

    def trashed(self, entry: JsonObject) -> bool:
        """Trashed itself or under a trashed folder (Drive trashes the whole subtree)."""
        files = self._files()
        todo, seen = [entry], set()
        while todo:
            current = todo.pop()
            if current.get("trashed"):
                return True
            seen.add(current["id"])
            todo.extend(files[p] for p in current.get("parents", [])
                        if p in files and p not in seen)
        return False

    @staticmethod
    def _link(entry: JsonObject) -> str:
        kind = {DOC: "document", SHEET: "spreadsheets", SLIDES: "presentation"}.get(
            entry["mimeType"])
        if kind:
            return f"https://docs.google.com/{kind}/d/{entry['id']}/edit"
        if entry["mimeType"] == FOLDER:
            return f"https://drive.google.com/drive/folders/{entry['id']}"
        return f"https://drive.google.com/file/d/{entry['id']}/view"

    @staticmethod
    def _content(entry: JsonObject) -> bytes:
        if "content_b64" in entry:
            return base64.b64decode(entry["content_b64"])
        return str(entry.get("content", "")).encode()

    def _q_admits(self, terms: list[tuple[str, str, str]], entry: JsonObject,
                  email: str) -> bool:
        for fld, op, value in terms:
            if fld in ("parents", "owners", "writers", "readers"):
                if fld == "parents":
                    if value not in entry.get("parents", []):
                        return False
                elif fld == "owners":
                    who = email if value == "me" else value
                    if entry.get("driveId") or entry["owners"][0].lower() != who.lower():
                        return False
                else:
                    return False
                continue
            have: Any
            if fld == "trashed":
                have = "true" if self.trashed(entry) else "false"
            elif fld == "starred":
                have = "true" if entry.get("starred") else "false"
            elif fld == "modifiedTime":
                have = entry.get("modifiedTime", "2024-01-01T00:00:00.000Z")
            else:
                have = entry.get(fld, "")
            ok = {"=": have == value, "!=": have != value, ">": have > value,
                  ">=": have >= value, "<": have < value, "<=": have <= value}[op]
            if not ok:
                return False
        return True

    def _files_list(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        corpora = request.arg("corpora", "user")
        drive_id = request.arg("driveId")
        all_drives = _flag(request, "includeItemsFromAllDrives") and \
            _flag(request, "supportsAllDrives")
        if corpora not in ("user", "drive", "domain", "allDrives"):
            return google_error(400, "invalid", "Invalid Value", location="corpora")
        if corpora == "drive":
            if not drive_id:
                return google_error(400, "required", "The driveId parameter is required "
                                    "for corpora=drive", location="driveId")
            if not all_drives:
                return google_error(403, "teamDrivesParameterRequired",
                                    "includeItemsFromAllDrives and supportsAllDrives must be "
                                    "true with corpora=drive", location="corpora")
            if self._drive(drive_id) is None or not self._member_of_drive(
                    drive_id, caller, self.groups_of(caller)):
                return google_error(404, "notFound", f"Shared drive not found: {drive_id}",
                                    location="driveId")
        elif drive_id:
            return google_error(400, "invalid", "driveId needs corpora=drive",
                                location="driveId")
        try:
            terms = parse_q(request.arg("q") or "") if request.arg("q") else []
        except ValueError:
            return google_error(400, "invalid", "Invalid Value", location="q")
        out: list[JsonObject] = []
        for entry in self.tenant["files"]:
            if corpora == "drive":
                if entry.get("driveId") != drive_id:
                    continue
            elif entry.get("driveId") and not (all_drives and corpora == "allDrives"):
                continue
            if corpora == "domain" or corpora == "allDrives":
                visible = self.in_view(entry, caller) or self.role_of(
                    entry, caller, links=False) is not None
            else:
                visible = self.in_view(entry, caller)
            if visible and self._q_admits(terms, entry, caller):
                out.append(self.render(entry, caller))
        out.sort(key=lambda f: str(f["id"]))
        extra = {"kind": "drive#fileList", "incompleteSearch": False}
        return self._page(request, out, "files", 1000, extra) if request.arg("fields") else \
            self._page_default(request, out, extra)

    def _page_default(self, request: Request, out: list[JsonObject],
                      extra: JsonObject) -> Response:
        mask = f"kind,incompleteSearch,nextPageToken,files({DEFAULT_FILE_FIELDS})"
        query = dict(request.query)
        query["fields"] = [mask]
        return self._page(Request(request.method, request.path, query, request.headers,
                                  request.body), out, "files", 1000, extra)

    def _visible_file(self, request: Request, caller: str, *,
                      all_drives: bool = False) -> JsonObject | Response:
        """The file if the caller may open it; shared-drive items need supportsAllDrives
        (files.export has no such parameter: `all_drives`)."""
        entry = self._file(request.params["file"])
        if entry is not None and entry.get("driveId") and not (
                all_drives or _flag(request, "supportsAllDrives")):
            entry = None
        if entry is None or self.role_of(entry, caller) is None:
            return google_error(404, "notFound", f"File not found: {request.params['file']}.",
                                location="fileId")
        return entry

    def _files_get(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        entry = self._visible_file(request, caller)
        if isinstance(entry, Response):
            return entry
        if request.arg("alt") == "media":
            if entry["mimeType"].startswith(NATIVE_PREFIX):
                return google_error(403, "fileNotDownloadable", "Only files with binary "
                                    "content can be downloaded. Use Export with Docs Editors "
                                    "files.", location="alt")
            return Response(200, self._content(entry),
                            {"Content-Type": entry["mimeType"]})
        return self._masked(request, self.render(entry, caller), default=DEFAULT_FILE_FIELDS)

    def _export(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        entry = self._visible_file(request, caller, all_drives=True)
        if isinstance(entry, Response):
            return entry
        wanted = request.arg("mimeType") or ""
        if wanted not in EXPORTS.get(entry["mimeType"], ()):
            return google_error(400, "badRequest", "The requested conversion is not "
                                "supported.", location="mimeType")
        exports = entry.get("exports", {})
        if wanted in exports:
            data = str(exports[wanted]).encode()
        elif wanted == "text/html":
            paragraphs = "".join(f"<p>{line}</p>" for line in
                                 str(entry.get("content", "")).splitlines() if line.strip())
            data = (f"<html><head><title>{entry['name']}</title></head><body>"
                    f"<h1>{entry['name']}</h1>{paragraphs}</body></html>").encode()
        elif wanted == "application/pdf":
            return google_error(400, "badRequest", "The emulator does not render PDF "
                                "exports.", location="mimeType")
        else:
            data = self._content(entry)
        if len(data) > int(self.tenant.get("export_limit_bytes", 10 * 1024 * 1024)):
            return google_error(403, "exportSizeLimitExceeded", "This file is too large to "
                                "be exported.")
        return Response(200, data, {"Content-Type": wanted})

    def _permissions(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        fid = request.params["file"]
        drive = self._drive(fid)
        if drive is not None:  # a shared drive's id as a fileId: its members
            admin = self._user(caller) or {}
            allowed = (_flag(request, "useDomainAdminAccess") and admin.get("isAdmin")) or \
                self._member_of_drive(fid, caller, self.groups_of(caller)) in SHARERS
            if not _flag(request, "supportsAllDrives") or not allowed:
                return google_error(404 if not allowed else 403, "notFound" if not allowed
                                    else "teamDrivesParameterRequired",
                                    f"File not found: {fid}.", location="fileId")
            perms = [{**m, "id": self._pid(m), "kind": "drive#permission",
                      "permissionDetails": [{"permissionType": "member",
                                             "role": m.get("role", "reader"),
                                             "inherited": False}]}
                     for m in drive.get("members", [])]
            return self._page(request, perms, "permissions", 100,
                              {"kind": "drive#permissionList"})
        entry = self._visible_file(request, caller)
        if isinstance(entry, Response):
            return entry
        if self.role_of(entry, caller) not in SHARERS:
            return google_error(403, "insufficientFilePermissions", "The user does not have "
                                "sufficient permissions for this file.")
        return self._page(request, self.effective_permissions(entry), "permissions", 100,
                          {"kind": "drive#permissionList"})

    # -- Drive: changes ------------------------------------------------------------------------
    def _start_token(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        return Response.json({"kind": "drive#startPageToken", "startPageToken": str(self.seq)})

    def _change_entries(self, caller: str, start: int, drive_id: str | None,
                        all_drives: bool) -> Iterator[tuple[int, JsonObject]]:
        latest: dict[str, tuple[int, frozenset[str], str]] = {}
        for seq, fid, before, when in self.log:
            if seq >= start:
                prior = latest.pop(fid, None)
                viewers = before | (prior[1] if prior else frozenset())
                latest[fid] = (seq, viewers, when)
        for fid, (seq, before, when) in sorted(latest.items(), key=lambda kv: kv[1][0]):
            entry = self._file(fid)
            now_sees = entry is not None and self.in_view(entry, caller)
            in_drive = entry.get("driveId") if entry is not None else None
            if entry is not None and in_drive and not all_drives:
                now_sees = False
            if drive_id is not None and in_drive != drive_id:
                now_sees = False
            if not now_sees and caller.lower() not in before:
                continue
            change: JsonObject = {"kind": "drive#change", "changeType": "file", "time": when,
                                  "fileId": fid, "removed": not now_sees}
            if now_sees and entry is not None:
                change["file"] = self.render(entry, caller)
                if in_drive:
                    change["driveId"] = in_drive
            yield seq, change

    def _changes(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        token = request.arg("pageToken")
        if not token:
            return google_error(400, "required", "Required parameter: pageToken",
                                location="pageToken")
        if not token.isdigit() or int(token) < self.floor or int(token) > self.seq:
            return google_error(400, "invalid", "Invalid Value", location="pageToken")
        try:
            size = min(int(request.arg("pageSize") or 100), 1000)
        except ValueError:
            return google_error(400, "invalid", "Invalid value for pageSize", location="pageSize")
        drive_id = request.arg("driveId")
        all_drives = _flag(request, "includeItemsFromAllDrives") and \
            _flag(request, "supportsAllDrives")
        if drive_id and not all_drives:
            return google_error(403, "teamDrivesParameterRequired", "includeItemsFromAllDrives "
                                "and supportsAllDrives must be true with driveId",
                                location="driveId")
        include_removed = (request.arg("includeRemoved") or "true").lower() == "true"
        found = [(seq, ch) for seq, ch in self._change_entries(caller, int(token), drive_id,
                                                               all_drives)
                 if include_removed or not ch["removed"]]
        page = found[:size]
        body: JsonObject = {"kind": "drive#changeList", "changes": [c for _, c in page]}
        if len(found) > size:
            body["nextPageToken"] = str(found[size][0])
        else:
            body["newStartPageToken"] = str(self.seq)
        return self._masked(request, body)

    def _drives(self, request: Request) -> Response:
        caller = self._caller(request, DRIVE_SCOPES)
        if isinstance(caller, Response):
            return caller
        person = self._user(caller) or {}
        if _flag(request, "useDomainAdminAccess"):
            if not person.get("isAdmin"):
                return google_error(403, "forbidden", "The user does not have sufficient "
                                    "permissions: useDomainAdminAccess needs an administrator.")
            drives = list(self.tenant["drives"])
        else:
            groups = self.groups_of(caller)
            drives = [d for d in self.tenant["drives"]
                      if self._member_of_drive(d["id"], caller, groups)]
        out = [{"kind": "drive#drive", "id": d["id"], "name": d.get("name", d["id"])}
               for d in sorted(drives, key=lambda d: str(d["id"]))]
        return self._page(request, out, "drives", 100, {"kind": "drive#driveList"})

    # -- Directory -----------------------------------------------------------------------------
    def _admin_caller(self, request: Request, wanted: tuple[str, ...]) -> str | Response:
        caller = self._caller(request, wanted)
        if isinstance(caller, Response):
            return caller
        person = self._user(caller)
        if person is None or not person.get("isAdmin"):
            return google_error(403, "forbidden", "Not Authorized to access this "
                                "resource/api")
        scope_ok = request.arg("customer") in ("my_customer", self.tenant.get("customer_id")) \
            or (request.arg("domain") or "").lower() == str(self.tenant["domain"]).lower()
        if request.params.get("group") is None and not scope_ok:
            return google_error(400, "badRequest", "Bad Request: customer or domain is "
                                "required", location="customer")
        return caller

    def _users(self, request: Request) -> Response:
        caller = self._admin_caller(request, USER_SCOPES)
        if isinstance(caller, Response):
            return caller
        out = [{"kind": "admin#directory#user", "id": u.get("id", u["primaryEmail"]),
                "primaryEmail": u["primaryEmail"], "aliases": list(u.get("aliases", [])),
                "isAdmin": bool(u.get("isAdmin")), "suspended": bool(u.get("suspended")),
                "name": {"fullName": u.get("name", u["primaryEmail"].split("@")[0])}}
               for u in sorted(self.tenant["users"], key=lambda u: str(u["primaryEmail"]))]
        return self._page(request, out, "users", 500, {"kind": "admin#directory#users"})

    def _groups(self, request: Request) -> Response:
        caller = self._admin_caller(request, GROUP_SCOPES)
        if isinstance(caller, Response):
            return caller
        out = [{"kind": "admin#directory#group", "id": g.get("id", g["email"]),
                "email": g["email"], "name": g.get("name", g["email"]),
                "aliases": list(g.get("aliases", [])),
                "directMembersCount": str(len(g.get("members", [])))}
               for g in sorted(self.tenant["groups"], key=lambda g: str(g["email"]))]
        return self._page(request, out, "groups", 200, {"kind": "admin#directory#groups"})

    def _members(self, request: Request) -> Response:
        caller = self._admin_caller(request, GROUP_SCOPES)
        if isinstance(caller, Response):
            return caller
        group = self._group(request.params["group"])
        if group is None:
            return google_error(404, "notFound", "Resource Not Found: groupKey",
                                location="groupKey")
        derived = _flag(request, "includeDerivedMembership")
        out: list[JsonObject] = []
        seen: set[str] = set()
        todo = [group]
        visited: set[str] = set()
        while todo:
            current = todo.pop(0)
            if current["email"].lower() in visited:
                continue
            visited.add(current["email"].lower())
            for member in current.get("members", []):
                kind = member.get("type", "USER")
                rendered: JsonObject = {"kind": "admin#directory#member", "type": kind,
                                        "role": member.get("role", "MEMBER"),
                                        "status": "ACTIVE"}
                if kind == "CUSTOMER":
                    rendered["id"] = self.tenant.get("customer_id", "C0emulator")
                else:
                    rendered["email"] = member["email"]
                    rendered["id"] = member.get("id", member["email"])
                key = json.dumps(rendered, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    out.append(rendered)
                if derived and kind == "GROUP":
                    nested = self._group(str(member.get("email", "")))
                    if nested is not None:
                        todo.append(nested)
        return self._page(request, out, "members", 200, {"kind": "admin#directory#members"})
