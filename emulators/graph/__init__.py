"""A Microsoft Graph v1.0 + Entra ID emulator: what a SharePoint/OneDrive connector reads.

One TLS server (msal refuses a non-https authority) serves both audiences:
- Entra: `/{tenant}/v2.0/.well-known/openid-configuration` and `/{tenant}/oauth2/v2.0/token`
  (client credentials; a signed RS256 JWT with `exp`; 401 `invalid_client` on a bad secret).
- Graph: `/v1.0/sites`, `/v1.0/sites/{id}`, `/v1.0/sites/{id}/drives`, `/v1.0/drives/{id}`,
  `/v1.0/drives/{id}/root/delta` (nextLink/deltaLink, 410 `resyncRequired` on a stale token,
  the Prefer headers for removals and sharing changes), `/items/{id}`, `/items/{id}/content`
  (302 to a pre-authenticated download URL), `/items/{id}/permissions` (effective: own plus
  inherited down to the nearest broken inheritance), `/groups`, `/groups/{id}/transitiveMembers`,
  `/users`, `/organization`.
- SharePoint REST: `/sites/{name}/_api/web/sitegroups/GetById({id})/users` (certificate
  tokens only, as the real service: a secret's token gets 401 "Unsupported app only token").

The tenant format is documented in emulators/graph/README.md; `emulators/tenants/graph.json` is
an example and `emulators.graph.generate.generate_tenant` makes a large one. The Python handle
(`edit`, `add`, `delete`, `move`, `set_permissions`, `set_members`, `expire_tokens`) changes the
tenant between syncs and records the change for the delta feed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any, ClassVar
from urllib.parse import urlencode

from emulators.base import Emulator, JsonObject, Request, Response

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
LIMITED = ("limited access", "sp.limited access", "limitedaccess")


def _b64(data: JsonObject) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, sort_keys=True).encode()).decode().rstrip("=")


def _unb64(text: str) -> JsonObject | None:
    try:
        got = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        return None
    return got if isinstance(got, dict) else None


class GraphEmulator(Emulator):
    name: ClassVar[str] = "graph"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.seq = 0  # the change sequence the delta tokens count in
        self.floor: dict[str, int] = {}  # drive id -> oldest token sequence still accepted
        self.changed: dict[tuple[str, str], int] = {}  # (drive, item) -> seq of last change
        self.shared: dict[tuple[str, str], int] = {}  # (drive, item) -> seq of sharing change
        self.downloads: dict[str, tuple[str, str]] = {}
        from emulators.graph.signin import EntraSignIn

        self.signin = EntraSignIn(self)  # user sign-in (auth-code flow): emulators/graph/signin.py
        super().__init__(tenant)

    # -- tenant ------------------------------------------------------------------------------
    def validate(self, tenant: JsonObject) -> None:
        if not tenant:
            return
        for key in ("tenant_id", "apps", "users", "groups", "sites"):
            if key not in tenant:
                raise ValueError(f"graph tenant: {key!r} is required")
        for key in ("apps", "users", "groups", "sites"):
            if not isinstance(tenant[key], list):
                raise ValueError(f"graph tenant: {key!r} must be a list")
        seen: set[str] = set()
        for user in tenant["users"]:
            if not isinstance(user, dict) or not isinstance(user.get("id"), str) \
                    or not isinstance(user.get("userPrincipalName"), str):
                raise ValueError("graph tenant: every user needs an 'id' and a "
                                 "'userPrincipalName'")
            seen.add(user["id"])
        for group in tenant["groups"]:
            if not isinstance(group, dict) or not isinstance(group.get("id"), str) \
                    or not isinstance(group.get("members", []), list):
                raise ValueError("graph tenant: every group needs an 'id' and a 'members' list")
        for site in tenant["sites"]:
            if not isinstance(site, dict) or not isinstance(site.get("id"), str) \
                    or not isinstance(site.get("drives"), list):
                raise ValueError("graph tenant: every site needs an 'id' and a 'drives' list")
            for drive in site["drives"]:
                if not isinstance(drive, dict) or not isinstance(drive.get("id"), str) \
                        or not isinstance(drive.get("items"), list):
                    raise ValueError("graph tenant: every drive needs an 'id' and 'items'")
                ids = [i.get("id") for i in drive["items"] if isinstance(i, dict)]
                if len(ids) != len(drive["items"]) or len(set(ids)) != len(ids) \
                        or not all(isinstance(i, str) for i in ids):
                    raise ValueError(f"graph tenant: drive {drive['id']}: item ids must be "
                                     "unique strings")
                if "root" not in ids:
                    raise ValueError(f"graph tenant: drive {drive['id']}: no 'root' item")
                for entry in drive["items"]:
                    perms = entry.get("permissions", [])
                    if not isinstance(perms, list) or not all(isinstance(p, dict)
                                                              for p in perms):
                        raise ValueError(f"graph tenant: item {entry['id']}: 'permissions' "
                                         "must be a list of permission objects")
                    if entry["id"] != "root" and entry.get("parent", "root") not in ids:
                        raise ValueError(f"graph tenant: item {entry['id']}: parent "
                                         f"{entry.get('parent')!r} is not an item of the drive")
        for app in tenant["apps"]:
            if not isinstance(app, dict) or not isinstance(app.get("client_id"), str):
                raise ValueError("graph tenant: every app needs a 'client_id'")
        if len(seen) != len(tenant["users"]):
            raise ValueError("graph tenant: user ids must be unique")

    @property
    def page_size(self) -> int:
        return int(self.tenant.get("page_size", 200))

    def _drive(self, drive_id: str) -> tuple[JsonObject, JsonObject] | None:
        for site in self.tenant["sites"]:
            for drive in site["drives"]:
                if drive["id"] == drive_id:
                    return site, drive
        return None

    def _site(self, site_id: str) -> JsonObject | None:
        return next((s for s in self.tenant["sites"] if s["id"] == site_id), None)

    @staticmethod
    def _items(drive: JsonObject) -> dict[str, JsonObject]:
        return {i["id"]: i for i in drive["items"]}

    def _user(self, uid: str) -> JsonObject | None:
        return next((u for u in self.tenant["users"] if u["id"] == uid), None)

    # -- the test's handle -------------------------------------------------------------------
    def _touch(self, drive_id: str, item_id: str, *, shared: bool = False) -> None:
        self.seq += 1
        self.changed[(drive_id, item_id)] = self.seq
        if shared:
            self.shared[(drive_id, item_id)] = self.seq

    def _touch_inheriting(self, drive: JsonObject, item_id: str) -> None:
        """Sharing changed at `item_id`: it and every descendant that inherits from it."""
        items = self._items(drive)
        kids: dict[str, list[str]] = {}
        for item in drive["items"]:
            if item.get("parent"):
                kids.setdefault(item["parent"], []).append(item["id"])
        todo = [item_id]
        while todo:
            current = todo.pop()
            self._touch(drive["id"], current, shared=True)
            todo.extend(k for k in kids.get(current, [])
                        if not items[k].get("inheritanceBroken") and not items[k].get("deleted"))

    def edit(self, drive_id: str, item_id: str, **fields: Any) -> None:
        with self.lock:
            found = self._drive(drive_id)
            assert found is not None
            item = self._items(found[1])[item_id]
            item.update(fields)
            item["version"] = int(item.get("version", 1)) + 1
            self._touch(drive_id, item_id)

    def add(self, drive_id: str, item: JsonObject) -> None:
        with self.lock:
            found = self._drive(drive_id)
            assert found is not None
            found[1]["items"].append(item)
            self._touch(drive_id, item["id"])

    def delete(self, drive_id: str, item_id: str, *, report_children: bool = True) -> None:
        """The item and everything under it get the `deleted` facet (`report_children=False`:
        the delta reports the folder alone, as SharePoint may)."""
        with self.lock:
            found = self._drive(drive_id)
            assert found is not None
            drive = found[1]
            todo = [item_id]
            while todo:
                current = todo.pop()
                self._items(drive)[current]["deleted"] = True
                if report_children or current == item_id:
                    self._touch(drive_id, current)
                todo.extend(i["id"] for i in drive["items"] if i.get("parent") == current
                            and not i.get("deleted"))

    def move(self, drive_id: str, item_id: str, *, parent: str | None = None,
             to_drive: str | None = None) -> None:
        """Within the drive (a new parent: its sharing follows the new parent) or to another
        drive (Graph reports it deleted in the old one and new in the other)."""
        with self.lock:
            found = self._drive(drive_id)
            assert found is not None
            drive = found[1]
            item = self._items(drive)[item_id]
            if to_drive is None:
                item["parent"] = parent or "root"
                self._touch_inheriting(drive, item_id)
                return
            target = self._drive(to_drive)
            assert target is not None
            copy_item = {**item, "parent": parent or "root"}
            target[1]["items"].append(copy_item)
            self._touch(to_drive, item_id)
            item["deleted"] = True
            self._touch(drive_id, item_id)

    def set_permissions(self, drive_id: str, item_id: str, permissions: list[JsonObject],
                        *, broken: bool | None = None) -> None:
        with self.lock:
            found = self._drive(drive_id)
            assert found is not None
            item = self._items(found[1])[item_id]
            item["permissions"] = permissions
            if broken is not None:
                item["inheritanceBroken"] = broken
            self._touch_inheriting(found[1], item_id)

    def set_members(self, group_id: str, members: list[str]) -> None:
        with self.lock:
            group = next(g for g in self.tenant["groups"] if g["id"] == group_id)
            group["members"] = list(members)

    def rotate_signing_key(self) -> None:
        """Every access token issued so far stops being accepted (401), as after a revocation."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        with self.lock:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def expire_tokens(self, drive_id: str | None = None) -> None:
        """Every delta token issued so far (for one drive or all) now answers 410."""
        with self.lock:
            self.seq += 1
            for site in self.tenant["sites"]:
                for drive in site["drives"]:
                    if drive_id in (None, drive["id"]):
                        self.floor[drive["id"]] = self.seq

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "expire-delta" and request.method == "POST":
            self.expire_tokens(request.arg("drive"))
            return Response.json({"expired": True})
        return None

    # -- routes ------------------------------------------------------------------------------
    def setup(self) -> None:
        self.route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._oidc)
        self.route("POST", "/{tenant}/oauth2/v2.0/token", self._token)
        self.signin.routes()
        self.route("GET", "/_download/{ticket}", self._download)
        g = "/v1.0"
        self.route("GET", f"{g}/organization", self._organization)
        self.route("GET", f"{g}/sites", self._sites)
        self.route("GET", f"{g}/sites/getAllSites", self._sites)
        self.route("GET", f"{g}/sites/{{site}}", self._site_get)
        self.route("GET", f"{g}/sites/{{site}}/drives", self._drives)
        self.route("GET", f"{g}/drives/{{drive}}", self._drive_get)
        self.route("GET", f"{g}/drives/{{drive}}/root/delta", self._delta)
        self.route("GET", f"{g}/drives/{{drive}}/items/{{item}}", self._item_get)
        self.route("GET", f"{g}/drives/{{drive}}/items/{{item}}/content", self._content)
        self.route("GET", f"{g}/drives/{{drive}}/items/{{item}}/permissions", self._permissions)
        self.route("GET", f"{g}/groups", self._groups)
        self.route("GET", f"{g}/groups/{{group}}/transitiveMembers", self._transitive)
        self.route("GET", f"{g}/users", self._users)
        self.route("GET", f"{g}/users/{{user}}", self._user_get)
        self.route("GET", f"{g}/users/{{user}}/drive", self._user_drive)
        self.route("GET", "/sites/{site}/_api/web/sitegroups", self._sp_groups)
        self.route("GET", "/sites/{site}/_api/web/sitegroups/{which}/users", self._sp_members)

    def _base(self, request: Request) -> str:
        return f"https://{request.headers.get('host', '127.0.0.1')}"

    # -- Entra -------------------------------------------------------------------------------
    def _oidc(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if tenant != self.tenant.get("tenant_id"):
            return Response.json({"error": "invalid_tenant",
                                  "error_description": f"AADSTS90002: Tenant '{tenant}' not "
                                  "found."}, 400)
        base = f"{self._base(request)}/{tenant}"
        return Response.json({"token_endpoint": f"{base}/oauth2/v2.0/token",
                              "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                              "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/keys",
                              "token_endpoint_auth_methods_supported": [
                                  "client_secret_post", "private_key_jwt"]})

    def _token(self, request: Request) -> Response:
        from urllib.parse import parse_qs

        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if request.params["tenant"] != self.tenant.get("tenant_id"):
            return Response.json({"error": "invalid_request",
                                  "error_description": "AADSTS90002: Tenant not found."}, 400)
        if form.get("grant_type") == "authorization_code":
            return self.signin.token(request, form)
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        app = next((a for a in self.tenant["apps"]
                    if a.get("client_id") == form.get("client_id")), None)
        if app is None:
            return Response.json({"error": "unauthorized_client", "error_description":
                                  "AADSTS700016: Application not found in the directory."}, 400)
        via = "secret"
        if "client_assertion" in form:
            if not self._assertion_ok(app, form["client_assertion"]):
                return Response.json({"error": "invalid_client", "error_description":
                                      "AADSTS700027: Client assertion failed validation."}, 401)
            via = "certificate"
        elif not app.get("client_secret") or form.get("client_secret") != app["client_secret"]:
            return Response.json({"error": "invalid_client", "error_description":
                                  "AADSTS7000215: Invalid client secret provided."}, 401)
        scope = form.get("scope", "")
        audience = scope.split(" ")[0].removesuffix("/.default")
        lifetime = int(self.tenant.get("token_lifetime", 3599))
        now = int(time.time())
        import jwt

        claims = {"aud": audience or "https://graph.microsoft.com", "iat": now, "nbf": now,
                  "exp": now + lifetime, "appid": app["client_id"],
                  "tid": self.tenant["tenant_id"], "roles": app.get("roles", []),
                  "appidacr": "2" if via == "certificate" else "1", "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": "emu"})
        return Response.json({"token_type": "Bearer", "expires_in": lifetime,
                              "ext_expires_in": lifetime, "access_token": token})

    def _assertion_ok(self, app: JsonObject, assertion: str) -> bool:
        import jwt
        from cryptography.x509 import load_pem_x509_certificate

        pem = app.get("certificate_pem")
        if not isinstance(pem, str):
            return False
        try:
            cert = load_pem_x509_certificate(pem.encode())
            jwt.decode(assertion, cert.public_key(),  # type: ignore[arg-type]
                       algorithms=["RS256", "PS256"], options={"verify_aud": False})
        except (jwt.PyJWTError, ValueError):
            return False
        return True

    def _claims(self, request: Request) -> JsonObject | None:
        import jwt

        token = request.bearer
        if not token:
            return None
        try:
            claims: JsonObject = jwt.decode(token, self._key.public_key(), algorithms=["RS256"],
                                            options={"verify_aud": False})
        except jwt.PyJWTError:
            return None
        return claims

    def _auth(self, request: Request) -> Response | None:
        claims = self._claims(request)
        if claims is None:
            return Response.error(401, "InvalidAuthenticationToken",
                                  "Access token is empty, expired or invalid.")
        if "graph.microsoft.com" not in str(claims.get("aud", "")):
            return Response.error(401, "InvalidAuthenticationToken", "Invalid audience.")
        return None

    # -- paging ------------------------------------------------------------------------------
    def _paged(self, request: Request, entries: list[JsonObject]) -> Response:
        top = min(int(request.arg("$top") or self.page_size), 999)
        skip = int(request.arg("$skiptoken") or 0)
        page = entries[skip:skip + top]
        body: JsonObject = {"@odata.context": "emulator", "value": page}
        if skip + top < len(entries):
            query = {k: v[0] for k, v in request.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = str(skip + top)
            body["@odata.nextLink"] = f"{self._base(request)}{request.path}?{urlencode(query)}"
        return Response.json(body)

    # -- sites and drives --------------------------------------------------------------------
    def _site_json(self, request: Request, site: JsonObject) -> JsonObject:
        return {"id": site["id"], "name": site.get("name", site["id"]),
                "displayName": site.get("displayName", site.get("name", site["id"])),
                "webUrl": site.get("webUrl", f"{self._base(request)}/sites/"
                                           f"{site.get('name', site['id'])}")}

    def _organization(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        domains = [{"name": d, "isDefault": i == 0}
                   for i, d in enumerate(self.tenant.get("domains", []))]
        return Response.json({"value": [{"id": self.tenant["tenant_id"],
                                         "verifiedDomains": domains}]})

    def _sites(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return self._paged(request, [self._site_json(request, s)
                                     for s in self.tenant["sites"] if not s.get("personal")])

    def _site_get(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        site = self._site(request.params["site"])
        if site is None:
            return Response.error(404, "itemNotFound", "The site was not found.")
        return Response.json(self._site_json(request, site))

    def _drive_json(self, request: Request, site: JsonObject, drive: JsonObject) -> JsonObject:
        out: JsonObject = {"id": drive["id"], "name": drive.get("name", "Documents"),
                           "driveType": drive.get("driveType", "documentLibrary"),
                           "webUrl": drive.get("webUrl", self._site_json(request, site)["webUrl"]
                                               + f"/{drive.get('name', 'Documents')}")}
        if drive.get("owner"):
            user = self._user(drive["owner"]) or {"id": drive["owner"]}
            out["owner"] = {"user": {"id": user["id"], "email": user.get("mail"),
                                     "displayName": user.get("displayName")}}
        return out

    def _drives(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        site = self._site(request.params["site"])
        if site is None:
            return Response.error(404, "itemNotFound", "The site was not found.")
        return self._paged(request, [self._drive_json(request, site, d) for d in site["drives"]])

    def _drive_get(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._drive(request.params["drive"])
        if found is None:
            return Response.error(404, "itemNotFound", "The drive was not found.")
        return Response.json(self._drive_json(request, *found))

    # -- items -------------------------------------------------------------------------------
    def _path(self, drive: JsonObject, item: JsonObject) -> str:
        items = self._items(drive)
        names: list[str] = []
        node = items.get(item.get("parent") or "")
        while node is not None and node["id"] != "root":
            names.append(str(node.get("name", node["id"])))
            node = items.get(node.get("parent") or "")
        return "/".join(reversed(names))

    def _item_json(self, request: Request, site: JsonObject, drive: JsonObject,
                   item: JsonObject, *, shared_changed: bool = False) -> JsonObject:
        did, iid = drive["id"], item["id"]
        if item.get("deleted"):
            return {"id": iid, "deleted": {"state": "deleted"},
                    "parentReference": {"driveId": did}}
        version = int(item.get("version", 1))
        drive_url = self._drive_json(request, site, drive)["webUrl"]
        folder = self._path(drive, item)
        out: JsonObject = {
            "id": iid, "name": item.get("name", iid), "eTag": f'"{{{iid}}},{version}"',
            "cTag": f'"c:{{{iid}}},{version}"',
            "lastModifiedDateTime": item.get("modified", "2026-01-01T08:00:00Z"),
            "createdDateTime": item.get("created", "2026-01-01T08:00:00Z"),
            "parentReference": {"driveId": did, "driveType": drive.get("driveType",
                                                                       "documentLibrary"),
                                "id": item.get("parent"), "siteId": site["id"],
                                "path": f"/drives/{did}/root:" + (f"/{folder}" if folder else "")},
        }
        if iid == "root":
            out["root"] = {}
            out.pop("name")
            out["parentReference"] = {"driveId": did}
        if item.get("folder") or iid == "root":
            out["folder"] = {"childCount": sum(1 for i in drive["items"]
                                               if i.get("parent") == iid
                                               and not i.get("deleted"))}
            out["webUrl"] = f"{drive_url}/{folder}".rstrip("/")
        else:
            data = str(item.get("content", "")).encode()
            out["size"] = int(item.get("size", len(data)))
            out["file"] = {"mimeType": item.get("mimeType", "text/plain"),
                           "hashes": {"quickXorHash": base64.b64encode(
                               hashlib.sha1(data).digest()[:20]).decode()}}
            out["webUrl"] = f"{drive_url}/{folder + '/' if folder else ''}{item.get('name', iid)}"
        if shared_changed:
            out["@microsoft.graph.sharedChanged"] = "True"
        if self._effective(drive, item):
            out["shared"] = {"scope": "users"}
        return out

    def _delta(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._drive(request.params["drive"])
        if found is None:
            return Response.error(404, "itemNotFound", "The drive was not found.")
        site, drive = found
        did = drive["id"]
        prefer = request.headers.get("prefer", "").lower()
        sharing = "deltashowsharingchanges" in prefer
        token = request.arg("token")
        state: JsonObject | None = None
        if token is not None and token != "latest":
            state = _unb64(token)
            if state is None or state.get("drive") != did or not isinstance(state.get("seq"), int):
                return Response.error(400, "invalidRequest", "Invalid token.")
            issued = state.get("issued", state["seq"])
            if not isinstance(issued, int) or issued < self.floor.get(did, 0):
                return Response.json({"error": {"code": "resyncRequired", "message":
                                                "Resync required. Replace any local items with "
                                                "the server's version."}}, 410)
        if token == "latest":
            link = f"{self._base(request)}/v1.0/drives/{did}/root/delta?token=" + \
                _b64({"drive": did, "seq": self.seq})
            return Response.json({"value": [], "@odata.deltaLink": link})
        since = int(state["seq"]) if state else -1
        upto = int(state["upto"]) if state and "upto" in state else self.seq
        skip = int(state.get("skip", 0)) if state else 0
        entries: list[JsonObject] = []
        for item in drive["items"]:
            key = (did, item["id"])
            if since < 0:
                if item.get("deleted"):
                    continue
                entries.append(self._item_json(request, site, drive, item))
                continue
            changed = since < self.changed.get(key, 0) <= upto
            shared_changed = since < self.shared.get(key, 0) <= upto
            if item.get("deleted"):
                if changed:
                    entries.append(self._item_json(request, site, drive, item))
                continue
            if changed and not (shared_changed and not sharing and
                                self.changed.get(key, 0) == self.shared.get(key, 0)):
                entries.append(self._item_json(request, site, drive, item,
                                               shared_changed=sharing and shared_changed))
        top = min(int(request.arg("$top") or self.page_size), 999)
        page = entries[skip:skip + top]
        body: JsonObject = {"@odata.context": "emulator", "value": page}
        base = f"{self._base(request)}/v1.0/drives/{did}/root/delta?token="
        if skip + top < len(entries):
            body["@odata.nextLink"] = base + _b64({"drive": did, "seq": since, "upto": upto,
                                                   "skip": skip + top, "issued": self.seq})
        else:
            body["@odata.deltaLink"] = base + _b64({"drive": did, "seq": upto})
        return Response.json(body)

    def _find(self, request: Request) -> tuple[JsonObject, JsonObject, JsonObject] | Response:
        if (denied := self._auth(request)) is not None:
            return denied
        found = self._drive(request.params["drive"])
        item = self._items(found[1]).get(request.params["item"]) if found else None
        if found is None or item is None or item.get("deleted"):
            return Response.error(404, "itemNotFound", "The resource could not be found.")
        return found[0], found[1], item

    def _item_get(self, request: Request) -> Response:
        got = self._find(request)
        if isinstance(got, Response):
            return got
        return Response.json(self._item_json(request, *got))

    def _content(self, request: Request) -> Response:
        got = self._find(request)
        if isinstance(got, Response):
            return got
        _, drive, item = got
        if item.get("folder") or item["id"] == "root":
            return Response.error(404, "itemNotFound", "A folder has no content.")
        ticket = uuid.uuid4().hex
        self.downloads[ticket] = (drive["id"], item["id"])
        return Response(302, b"", {"Location": f"{self._base(request)}/_download/{ticket}"
                                               f"?tempauth={ticket}"})

    def _download(self, request: Request) -> Response:
        where = self.downloads.get(request.params["ticket"])
        if where is None or request.arg("tempauth") != request.params["ticket"]:
            return Response.error(401, "unauthenticated", "The download URL has expired.")
        found = self._drive(where[0])
        item = self._items(found[1]).get(where[1]) if found else None
        if item is None or item.get("deleted"):
            return Response.error(404, "itemNotFound")
        raw = item.get("content_b64")
        data = base64.b64decode(raw) if isinstance(raw, str) else \
            str(item.get("content", "")).encode()
        return Response(200, data, {"Content-Type": "application/octet-stream"})

    # -- permissions -------------------------------------------------------------------------
    def _effective(self, drive: JsonObject, item: JsonObject
                   ) -> list[tuple[JsonObject, str | None]]:
        """(permission, id of the ancestor it is inherited from or None) of an item."""
        items = self._items(drive)
        out: list[tuple[JsonObject, str | None]] = []
        node: JsonObject | None = item
        while node is not None:
            for perm in node.get("permissions", []):
                out.append((perm, None if node is item else node["id"]))
            if node.get("inheritanceBroken") or node["id"] == "root":
                break
            node = items.get(node.get("parent") or "root")
        return out

    def _identity(self, ref: Any) -> JsonObject:
        """A permission's identity set with the directory's fields filled in."""
        if not isinstance(ref, dict):
            return {}
        out: JsonObject = {}
        for kind, value in ref.items():
            if kind == "user" and isinstance(value, dict) and "id" in value:
                user = self._user(str(value["id"]))
                full = dict(value)
                if user is not None:
                    full.setdefault("displayName", user.get("displayName"))
                    if user.get("mail"):
                        full.setdefault("email", user["mail"])
                    out["siteUser"] = {"id": str(abs(hash(user["id"])) % 1000),
                                       "loginName": f"i:0#.f|membership|"
                                                    f"{user['userPrincipalName'].lower()}"}
                out["user"] = full
            elif kind == "group" and isinstance(value, dict):
                group = next((g for g in self.tenant["groups"]
                              if g["id"] == value.get("id")), None)
                out["group"] = {**value, "displayName": (group or {}).get("displayName")}
            else:
                out[kind] = value
        return out

    def _permissions(self, request: Request) -> Response:
        got = self._find(request)
        if isinstance(got, Response):
            return got
        site, drive, item = got
        value: list[JsonObject] = []
        # Site collection admins hold every item (Graph lists them as owner grants).
        admins = [({"id": f"admin-{a}", "roles": ["owner"], "grantedToV2": {"user": {"id": a}}},
                   "root") for a in site.get("admins", [])]
        for n, (perm, inherited) in enumerate([*admins, *self._effective(drive, item)]):
            entry = {k: v for k, v in perm.items() if k not in ("grantedToV2",
                                                                  "grantedToIdentitiesV2")}
            entry.setdefault("id", f"p{n}")
            entry.setdefault("roles", ["read"])
            if "grantedToV2" in perm:
                entry["grantedToV2"] = self._identity(perm["grantedToV2"])
            if "grantedToIdentitiesV2" in perm:
                entry["grantedToIdentitiesV2"] = [self._identity(i)
                                                  for i in perm["grantedToIdentitiesV2"]]
            entry["inheritedFrom"] = {"driveId": drive["id"], "id": inherited} \
                if inherited else {}
            value.append(entry)
        return Response.json({"@odata.context": "emulator", "value": value})

    # -- directory ---------------------------------------------------------------------------
    @staticmethod
    def _user_json(user: JsonObject) -> JsonObject:
        return {"@odata.type": "#microsoft.graph.user", "id": user["id"],
                "userPrincipalName": user["userPrincipalName"], "mail": user.get("mail"),
                "otherMails": user.get("otherMails", []),
                "displayName": user.get("displayName"),
                "userType": user.get("userType", "Member"),
                "accountEnabled": user.get("accountEnabled", True)}

    def _groups(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return self._paged(request, [
            {"id": g["id"], "displayName": g.get("displayName"),
             "groupTypes": g.get("groupTypes", []), "securityEnabled": True,
             "mailEnabled": False} for g in self.tenant["groups"]])

    def _transitive(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        groups = {g["id"]: g for g in self.tenant["groups"]}
        start = groups.get(request.params["group"])
        if start is None:
            return Response.error(404, "Request_ResourceNotFound",
                                  f"Resource '{request.params['group']}' does not exist.")
        seen: list[str] = []
        todo = list(start.get("members", []))
        while todo:
            member = todo.pop(0)
            if member in seen:
                continue
            seen.append(member)
            if member in groups:
                todo.extend(groups[member].get("members", []))
        entries: list[JsonObject] = []
        for member in seen:
            if member in groups:
                entries.append({"@odata.type": "#microsoft.graph.group", "id": member,
                                "displayName": groups[member].get("displayName")})
            elif (user := self._user(member)) is not None:
                entries.append(self._user_json(user))
            else:
                entries.append({"@odata.type": "#microsoft.graph.device", "id": member})
        return self._paged(request, entries)

    def _users(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        return self._paged(request, [self._user_json(u) for u in self.tenant["users"]])

    def _user_get(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        key = request.params["user"].lower()
        user = next((u for u in self.tenant["users"] if u["id"] == request.params["user"]
                     or u["userPrincipalName"].lower() == key), None)
        if user is None:
            return Response.error(404, "Request_ResourceNotFound", "User not found.")
        return Response.json(self._user_json(user))

    def _user_drive(self, request: Request) -> Response:
        if (denied := self._auth(request)) is not None:
            return denied
        for site in self.tenant["sites"]:
            for drive in site["drives"]:
                if site.get("personal") and drive.get("owner") == request.params["user"]:
                    return Response.json(self._drive_json(request, site, drive))
        return Response.error(404, "ResourceNotFound", "User's mysite not found.")

    # -- SharePoint REST ---------------------------------------------------------------------
    def _sp_auth(self, request: Request) -> Response | None:
        claims = self._claims(request)
        if claims is None:
            return Response.error(401, "invalid_token", "Invalid JWT token.")
        if claims.get("appidacr") != "2":
            return Response.error(401, "Unsupported", "Unsupported app only token.")
        if "sharepoint" not in str(claims.get("aud", "")):
            return Response.error(401, "invalid_token", "Invalid audience.")
        return None

    def _sp_groups(self, request: Request) -> Response:
        if (denied := self._sp_auth(request)) is not None:
            return denied
        site = next((s for s in self.tenant["sites"]
                     if s.get("name") == request.params["site"]), None)
        if site is None:
            return Response.error(404, "itemNotFound", "Site cannot be found.")
        return Response.json({"value": [{"Id": int(g["id"]), "Title": g.get("displayName")}
                                        for g in site.get("siteGroups", [])]})

    def _sp_members(self, request: Request) -> Response:
        if (denied := self._sp_auth(request)) is not None:
            return denied
        site = next((s for s in self.tenant["sites"]
                     if s.get("name") == request.params["site"]), None)
        which = request.params["which"]
        gid = which.removeprefix("GetById(").removesuffix(")")
        group = next((g for g in (site or {}).get("siteGroups", []) if str(g["id"]) == gid),
                     None)
        if site is None or group is None:
            return Response.error(404, "itemNotFound", "Group cannot be found.")
        results: list[JsonObject] = []
        for member in group.get("members", []):
            user = self._user(member)
            if user is not None:
                results.append({"PrincipalType": 1, "Email": user.get("mail") or "",
                                "UserPrincipalName": user["userPrincipalName"],
                                "LoginName": f"i:0#.f|membership|{user['userPrincipalName']}",
                                "Title": user.get("displayName", "")})
            else:
                results.append({"PrincipalType": 4, "LoginName":
                                f"c:0t.c|tenant|{member}", "Title": member})
        return Response.json({"value": results})
