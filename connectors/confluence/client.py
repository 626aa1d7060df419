"""HTTP only: the Confluence Cloud v1 REST calls the connector makes, through the one policy.

atlassian-python-api's `AtlassianRestAPI` carries the auth (Basic email + API token, or Bearer
for `https://api.atlassian.com/ex/confluence/{cloudId}/wiki`) over the policy's session; its
own paging is not used (it drops `/wiki` from `next` links, ACL_APIS 1.6): `_links.next` is
followed exactly, joined with the wiki base, and an empty page ends a listing even when a
`next` link comes with it. Errors arrive as `core.errors` types (the session raises them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from atlassian.rest_client import AtlassianRestAPI

from connectors.http import HttpPolicy
from core.errors import SourceAuthError, SourceError

JsonObject = dict[str, Any]
T = TypeVar("T")

PAGE_EXPAND = ("body.storage,version,ancestors,space,container,"
               "restrictions.read.restrictions.user,restrictions.read.restrictions.group")
ACL_EXPAND = "version,ancestors,space,restrictions.read.restrictions.user," \
             "restrictions.read.restrictions.group"
RESTRICTION_EXPAND = "restrictions.read.restrictions.user,restrictions.read.restrictions.group"
Auth = Literal["basic", "oauth"]


@dataclass(frozen=True)
class ServiceAccount:
    """OAuth 2.0 client credentials of an Atlassian service account."""

    client_id: str
    client_secret: str
    token_url: str = "https://api.atlassian.com/oauth/token"


class ConfluenceClient:
    """One site (`url` ends in `/wiki`, the site's or the OAuth gateway's)."""

    def __init__(self, url: str, policy: HttpPolicy, *, auth: Auth, token: str = "",
                 username: str | None = None, page_size: int = 25,
                 service_account: ServiceAccount | None = None,
                 site: str | None = None) -> None:
        self.base = url.rstrip("/")
        # The site's own wiki base, for web links when an answer carries no `_links.base`
        # (through the OAuth gateway, `base` is api.atlassian.com's, not the site's).
        self.site = (site or url).rstrip("/")
        self.policy = policy
        self.page_size = page_size
        self.service_account = service_account
        self._expires = 0.0
        session = policy.session()
        if auth == "basic":
            self.api = AtlassianRestAPI(self.base, username=username, password=token,
                                        session=session, cloud=True)
        else:
            self.api = AtlassianRestAPI(self.base, token=token, session=session, cloud=True)
        # The library's own checks run after the session's: keep them from double-raising.
        self.api.raise_for_status = lambda response: None  # type: ignore[method-assign]

    def _mint(self, session: requests.Session) -> str:
        """A Bearer from the token endpoint (client_credentials), minted at the first call and
        again a minute before it expires; the secret goes in the body only."""
        account = self.service_account
        assert account is not None
        response = session.post(account.token_url, json={
            "grant_type": "client_credentials", "client_id": account.client_id,
            "client_secret": account.client_secret})
        try:
            answer = response.json()
            token = str(answer["access_token"])
            lifetime = float(answer.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise SourceAuthError(f"POST {account.token_url}: no access token in the "
                                  "answer") from None
        self._expires = time.monotonic() + max(0.0, lifetime - 60)
        return token

    def _fresh(self) -> None:
        if self.service_account is not None and time.monotonic() >= self._expires:
            self.api._create_token_session(self._mint(self.api.session))

    def _call(self, request: Callable[[], T]) -> T:
        """One request with a valid Bearer. A minted Bearer the site refuses (401: expired
        early or revoked) is minted again once and the request tried once more; a second
        401 is the answer."""
        self._fresh()
        try:
            return request()
        except SourceAuthError:
            if self.service_account is None:
                raise
        self._expires = 0.0
        self._fresh()
        return request()

    # -- raw ---------------------------------------------------------------------------------
    def get(self, path: str, params: dict[str, str] | None = None) -> JsonObject:
        """One GET of a path under the wiki base (`rest/api/...`), a JSON object back."""
        answer = self._call(lambda: self.api.get(path.lstrip("/"), params=params or {}))
        if not isinstance(answer, dict):
            raise SourceError(f"GET {path}: not a JSON object")
        return answer

    def next_path(self, page: JsonObject) -> str | None:
        """`_links.next` relative to the wiki base (real sites answer `/rest/api/...`)."""
        links = page.get("_links", {})
        link = links.get("next") if isinstance(links, dict) else None
        if link is not None and not isinstance(link, str):
            # Ending here would make the rest of the listing look deleted: refuse instead.
            raise SourceError(f"a '_links.next' that is not a link ({type(link).__name__})")
        if not link:
            return None
        if "://" in link:
            parts = urlsplit(link)
            base_path = urlsplit(self.base).path
            link = parts.path[len(base_path):] if parts.path.startswith(base_path) \
                else parts.path
            link += f"?{parts.query}" if parts.query else ""
        else:
            base_path = urlsplit(self.base).path
            if base_path and link.startswith(base_path + "/"):
                link = link[len(base_path):]
            elif base_path.endswith("/wiki") and link.startswith("/wiki/"):
                # v2 links are relative to the site (`/wiki/api/v2/...`), also through the
                # OAuth gateway, whose base path is `/ex/confluence/<cloudId>/wiki`.
                link = link[len("/wiki"):]
        return link.lstrip("/")

    def pages(self, path: str, params: dict[str, str] | None = None,
              resume: str | None = None) -> Iterator[tuple[JsonObject, str | None]]:
        """Every page of a listing with the path of the page after it (None: the last)."""
        current: tuple[str, dict[str, str] | None] = (resume, None) if resume else \
            (path, {**(params or {}), "limit": str(self.page_size)})
        while True:
            page = self.get(*current)
            results = page.get("results")
            if not isinstance(results, list):
                raise SourceError(f"GET {current[0].split('?')[0]}: no 'results' list")
            following = self.next_path(page) if results else None  # empty page: the end
            yield page, following
            if following is None:
                return
            current = (following, None)

    # -- the calls ---------------------------------------------------------------------------
    def search(self, cql: str, expand: str, resume: str | None = None
               ) -> Iterator[tuple[JsonObject, str | None]]:
        return self.pages("rest/api/content/search", {"cql": cql, "expand": expand}, resume)

    def content(self, content_id: str, expand: str) -> JsonObject:
        """One content item (a page whose body the search left out)."""
        return self.get(f"rest/api/content/{content_id}", {"expand": expand})

    def spaces(self) -> Iterator[JsonObject]:
        for page, _ in self.pages("rest/api/space", {"status": "current"}):
            yield from page["results"]

    def space_permissions(self, key: str) -> JsonObject:
        return self.get(f"rest/api/space/{key}", {"expand": "permissions"})

    # -- v2 (role-aware space permissions) ----------------------------------------------------
    def v2_spaces(self, keys: list[str]) -> Iterator[JsonObject]:
        for page, _ in self.pages("api/v2/spaces", {"keys": ",".join(keys)} if keys else {}):
            yield from page["results"]

    def v2_space_permissions(self, space_id: str) -> Iterator[JsonObject]:
        for page, _ in self.pages(f"api/v2/spaces/{space_id}/permissions", {}):
            yield from page["results"]

    def users_bulk(self, account_ids: list[str]) -> list[JsonObject]:
        """The users of up to 250 accountIds (`POST /api/v2/users-bulk`); unknown ones are
        absent from the answer."""
        answer = self._call(lambda: self.api.post("api/v2/users-bulk",
                                                  json={"accountIds": account_ids}))
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list):
            raise SourceError("POST api/v2/users-bulk: no 'results' list")
        return [r for r in results if isinstance(r, dict)]

    def read_restriction(self, content_id: str) -> tuple[list[JsonObject], list[JsonObject]]:
        """Every user and group of a content's read restriction, paged by start/limit."""
        users: list[JsonObject] = []
        groups: list[JsonObject] = []
        start = 0
        while True:
            page = self.get(f"rest/api/content/{content_id}/restriction/byOperation/read",
                            {"expand": "restrictions.user,restrictions.group",
                             "start": str(start), "limit": str(self.page_size)})
            got_users = page.get("restrictions", {}).get("user", {}).get("results", [])
            got_groups = page.get("restrictions", {}).get("group", {}).get("results", [])
            users.extend(got_users)
            groups.extend(got_groups)
            if len(got_users) < self.page_size and len(got_groups) < self.page_size:
                return users, groups
            start += self.page_size

    def download(self, link: str) -> bytes:
        """An attachment's bytes from its `_links.download` (a 302 to the media service,
        followed on the same session with its auth)."""
        if not link:
            raise SourceError("attachment without a download link")
        path = self.next_path({"_links": {"next": link}}) or ""
        data = self._call(lambda: self.api.get(path, not_json_response=True))
        if not isinstance(data, bytes):
            raise SourceError(f"GET {path.split('?')[0]}: no bytes")
        return data

    def groups(self, resume: str | None = None) -> Iterator[tuple[JsonObject, str | None]]:
        return self.pages("rest/api/group", {}, resume)

    def members(self, group_id: str) -> Iterator[JsonObject]:
        for page, _ in self.pages(f"rest/api/group/{group_id}/membersByGroupId", {}):
            yield from page["results"]
