"""HTTP only: the Microsoft Graph v1.0 calls the SharePoint connector makes, through the policy.

App-only sign-in with msal's `ConfidentialClientApplication` (client secret, or a certificate's
private key and thumbprint) over the policy's session (`instance_discovery=False`: msal would
otherwise ask the public cloud about any authority host, ACL_APIS 2.6). The token is kept with
its expiry and renewed five minutes before it runs out, never per request; a 401 from Graph
renews it once. `@odata.nextLink` is followed exactly. Errors arrive as `core.errors` types.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from connectors.extract.limits import TooLarge
from connectors.http import HttpPolicy, redact_text
from core.errors import SourceAuthError, SourceError

JsonObject = dict[str, Any]
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
# Removals, permission gaps and sharing changes (the first two are required for the third).
DELTA_PREFER = "deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges"
RENEW_BEFORE = 300.0  # seconds before expiry a token is renewed


@dataclass(frozen=True)
class Credential:
    tenant_id: str
    client_id: str
    secret: str | None = None
    private_key_pem: str | None = None
    thumbprint: str | None = None

    @property
    def certificate(self) -> bool:
        return self.private_key_pem is not None


class GraphClient:
    def __init__(self, policy: HttpPolicy, credential: Credential, *,
                 authority_host: str = "https://login.microsoftonline.com",
                 graph_url: str = "https://graph.microsoft.com/v1.0", page_size: int = 200,
                 max_bytes: int = 64 * 1024 * 1024, sharepoint_url: str | None = None) -> None:
        self.policy = policy
        self.credential = credential
        self.authority = f"{authority_host.rstrip('/')}/{credential.tenant_id}"
        self.graph = graph_url.rstrip("/")
        self.page_size = page_size
        self.max_bytes = max_bytes
        self.sharepoint_url = sharepoint_url.rstrip("/") if sharepoint_url else None
        self.session = policy.session()
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, renew at)
        self._lock = threading.Lock()
        self._app: Any = None
        self.token_requests = 0

    # -- auth --------------------------------------------------------------------------------
    def _msal(self) -> Any:
        if self._app is None:
            import msal

            cred = self.credential
            secret: Any = cred.secret if not cred.certificate else {
                "private_key": cred.private_key_pem, "thumbprint": cred.thumbprint}
            try:
                self._app = msal.ConfidentialClientApplication(
                    cred.client_id, client_credential=secret, authority=self.authority,
                    http_client=self.policy.session(raise_errors=False),
                    instance_discovery=False, token_cache=msal.TokenCache())
            except (ValueError, SourceError, requests.RequestException) as exc:
                raise SourceAuthError(f"sign-in at {self.authority}: "
                                      f"{redact_text(str(exc)).splitlines()[0][:300]}") from None
        return self._app

    def token(self, *, renew: bool = False, scope: str = GRAPH_SCOPE) -> str:
        with self._lock:
            held = self._tokens.get(scope)
            if not renew and held and time.monotonic() < held[1]:
                return held[0]
            app = self._msal()
            self.token_requests += 1
            if renew:
                for account in app.get_accounts():
                    app.remove_account(account)
                app.token_cache = type(app.token_cache)()
            try:
                result = app.acquire_token_for_client(scopes=[scope])
            except (ValueError, TypeError, jwt.PyJWTError) as exc:  # a key msal cannot sign with
                raise SourceAuthError(f"sign-in for client {self.credential.client_id}: the "
                                      f"credential cannot be used ({type(exc).__name__})"
                                      ) from None
            token = result.get("access_token") if isinstance(result, dict) else None
            if not isinstance(token, str) or not token:
                error = result.get("error", "no token") if isinstance(result, dict) else "?"
                detail = str(result.get("error_description", "")) \
                    if isinstance(result, dict) else ""
                first = redact_text(detail).splitlines()[0][:200] if detail else ""
                raise SourceAuthError(f"sign-in for client {self.credential.client_id} at "
                                      f"{self.authority} refused: {error}"
                                      f"{f' ({first})' if first else ''}")
            lifetime = float(result.get("expires_in", 3599))
            self._tokens[scope] = (token, time.monotonic() + max(0.0, lifetime - RENEW_BEFORE))
            return token

    # -- raw ---------------------------------------------------------------------------------
    def _url(self, path_or_url: str) -> str:
        return path_or_url if "://" in path_or_url else f"{self.graph}/{path_or_url.lstrip('/')}"

    def request(self, path_or_url: str, params: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, *, stream: bool = False,
                scope: str = GRAPH_SCOPE) -> requests.Response:
        url = self._url(path_or_url)
        for attempt in (0, 1):
            sent = {"Authorization": f"Bearer {self.token(renew=attempt == 1, scope=scope)}",
                    **(headers or {})}
            try:
                return self.session.get(url, params=params, headers=sent, stream=stream)
            except SourceAuthError:
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def get(self, path_or_url: str, params: dict[str, str] | None = None,
            headers: dict[str, str] | None = None, *, scope: str = GRAPH_SCOPE) -> JsonObject:
        response = self.request(path_or_url, params, headers, scope=scope)
        self.policy.check(response, every_error=True)
        try:
            answer = response.json()
        except ValueError:
            raise SourceError(f"GET {path_or_url.split('?')[0]}: not JSON") from None
        if not isinstance(answer, dict):
            raise SourceError(f"GET {path_or_url.split('?')[0]}: not a JSON object")
        return answer

    def pages(self, path_or_url: str, params: dict[str, str] | None = None,
              headers: dict[str, str] | None = None
              ) -> Iterator[tuple[list[JsonObject], str | None, str | None]]:
        """(entries, nextLink, deltaLink) of every page; nextLink followed exactly."""
        current: str | None = path_or_url
        query = params
        seen: set[str] = set()
        while current is not None:
            page = self.get(current, query, headers)
            value = page.get("value")
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise SourceError(f"GET {current.split('?')[0]}: no 'value' list")
            following = page.get("@odata.nextLink")
            delta = page.get("@odata.deltaLink")
            if following is not None and (not isinstance(following, str) or following in seen):
                raise SourceError(f"GET {current.split('?')[0]}: a nextLink that loops")
            yield value, following, delta if isinstance(delta, str) else None
            if following:
                seen.add(following)
            current, query = following, None

    def listing(self, path: str, params: dict[str, str] | None = None) -> Iterator[JsonObject]:
        for value, _, _ in self.pages(path, {"$top": str(self.page_size), **(params or {})}):
            yield from value

    # -- the calls ---------------------------------------------------------------------------
    def sites(self) -> Iterator[JsonObject]:
        return self.listing("sites", {"search": "*"})

    def site(self, site_id: str) -> JsonObject:
        return self.get(f"sites/{site_id}")

    def drives(self, site_id: str) -> Iterator[JsonObject]:
        return self.listing(f"sites/{site_id}/drives")

    def delta(self, drive_id: str, link: str | None = None
              ) -> Iterator[tuple[list[JsonObject], str | None, str | None]]:
        """A drive's delta from the start (no link) or from a stored next/delta link."""
        headers = {"Prefer": DELTA_PREFER}
        if link:
            return self.pages(link, None, headers)
        return self.pages(f"drives/{drive_id}/root/delta", {"$top": str(self.page_size)},
                          headers)

    def permissions(self, drive_id: str, item_id: str) -> list[JsonObject]:
        out: list[JsonObject] = []
        for value, _, _ in self.pages(f"drives/{drive_id}/items/{item_id}/permissions"):
            out.extend(value)
        return out

    def content(self, drive_id: str, item_id: str, max_bytes: int | None = None) -> bytes:
        """The bytes (the 302 to the pre-authenticated URL is followed), at most `max_bytes`
        (the client's own limit by default). Past it: `TooLarge`, which no retry fixes, so a
        file whose listing gave no size (or a wrong one) is reported once, not retried forever."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        response = self.request(f"drives/{drive_id}/items/{item_id}/content", stream=True)
        self.policy.check(response, every_error=True)
        data = bytearray()
        for chunk in response.iter_content(65536):
            data.extend(chunk)
            if len(data) > limit:
                response.close()
                raise TooLarge(f"item {item_id}: more than the {limit} bytes allowed")
        return bytes(data)

    def organization_domains(self) -> list[str]:
        answer = self.get("organization")
        out: list[str] = []
        for org in answer.get("value", []):
            for dom in org.get("verifiedDomains", []) if isinstance(org, dict) else []:
                if isinstance(dom, dict) and isinstance(dom.get("name"), str):
                    out.append(dom["name"])
        return out

    def users(self) -> Iterator[JsonObject]:
        return self.listing("users", {"$select": "id,userPrincipalName,mail,otherMails,userType"})

    def groups(self) -> Iterator[JsonObject]:
        return self.listing("groups", {"$select": "id,displayName"})

    def transitive_members(self, group_id: str) -> Iterator[JsonObject]:
        return self.listing(f"groups/{group_id}/transitiveMembers",
                            {"$select": "id,userPrincipalName,mail,otherMails,userType"})

    # -- SharePoint REST (certificate credentials only) --------------------------------------
    def rest_site(self, web_url: str) -> tuple[str, str]:
        """(REST base of a site, its token scope) from the site's webUrl; `sharepoint_url`
        replaces the host (tests, unusual tenants)."""
        parts = urlsplit(web_url)
        if parts.scheme != "https" or not parts.netloc:
            raise SourceError("a site without an https webUrl")
        host = self.sharepoint_url or f"https://{parts.netloc}"
        return f"{host}{parts.path.rstrip('/')}", f"https://{parts.netloc}/.default"

    def site_groups(self, web_url: str) -> list[JsonObject]:
        base, scope = self.rest_site(web_url)
        answer = self.get(f"{base}/_api/web/sitegroups", {"$select": "Id,Title"},
                          {"Accept": "application/json;odata=nometadata"}, scope=scope)
        value = answer.get("value")
        if not isinstance(value, list):
            raise SourceError("sitegroups: no 'value' list")
        return [v for v in value if isinstance(v, dict)]

    def site_group_members(self, web_url: str, group_id: str) -> list[JsonObject]:
        base, scope = self.rest_site(web_url)
        answer = self.get(f"{base}/_api/web/sitegroups/GetById({int(group_id)})/users", None,
                          {"Accept": "application/json;odata=nometadata"}, scope=scope)
        value = answer.get("value")
        if not isinstance(value, list):
            raise SourceError(f"site group {group_id}: no 'value' list")
        return [v for v in value if isinstance(v, dict)]
