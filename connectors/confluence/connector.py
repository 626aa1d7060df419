"""Confluence Cloud connector: pages and blog posts, with their effective read access.

Who may read a page (ACL_APIS 5.1), as separate gates, all of which must admit a person:
    the space's read permission  ∩  the page's own read restriction (if any)
                                 ∩  every restricted ancestor's read restriction
Never the nearest restriction alone (it over-grants). Users are accountIds: one whose email is
hidden is mapped through `account_emails` or left out and reported (a gate only narrows); app
accounts are skipped. A permission or restriction that cannot be read closes the page
(Acl.nobody, reported). Groups are `group:<connector>:<group id>`; an anonymous space adds
`everyone` to its space gate.

Content pass: an enumeration is a CQL search of the scope (`_links.next` followed exactly);
its last page's cursor is the feed: `{"since": <start of the pass>, "acls": {id: acl key}}`.
An incremental pass searches `lastmodified >= since - overlap` (minute resolution, in the
configured time zone), then lists the scope without bodies: ACLs that changed become
AclUpdate, ids no longer listed (deleted, trashed, archived, moved out of scope: Confluence has
no delete feed) become Delete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from connectors.base import (
    AclUpdate,
    Capabilities,
    ConnectorOptions,
    ContentPage,
    Delete,
    Failure,
    HttpConnectorOptions,
    IdentityPage,
    Operation,
    PassNotes,
    PermissionPage,
    Upsert,
)
from connectors.confluence.client import (
    ACL_EXPAND,
    PAGE_EXPAND,
    RESTRICTION_EXPAND,
    ConfluenceClient,
    JsonObject,
    ServiceAccount,
)
from connectors.extract import NoText, extract_bytes, supported
from connectors.extract.confluence import extract_storage
from connectors.http import HttpStats
from core import principals as P
from core.acl import Acl
from core.errors import (
    ConfigError,
    CursorExpired,
    MalformedDocument,
    SourceError,
    SourceForbidden,
    SourceNotFound,
    SourceUnavailable,
)
from core.models import Membership, make_document

log = logging.getLogger(__name__)

_SPACE_KEY = re.compile(r"^[A-Za-z0-9_~-]+$")
_CURSOR_VERSION = 1
GROUP_SOURCE = "confluence"  # groups are `group:confluence:<group id>` (issue 9, DESIGN)


def zone(name: str) -> tzinfo:
    """`UTC`, an IANA name (`Europe/Berlin`) or a fixed offset (`+02:00`)."""
    match = re.fullmatch(r"([+-])(\d\d):(\d\d)", name)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(match.group(2)), minutes=int(match.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


class ConfluenceOptions(HttpConnectorOptions):
    url: str = Field(min_length=1)  # https://<site>.atlassian.net/wiki
    username: str | None = None  # the account's email (Basic auth); not with auth = "oauth"
    # The variable holding the API token (basic) or a Bearer access token (oauth).
    token_env: str | None = Field(default=None, min_length=1)
    auth: Literal["basic", "oauth"] = "basic"
    # oauth with a service account: client credentials, exchanged at oauth_url for a Bearer.
    client_id: str | None = Field(default=None, min_length=1)
    client_secret_env: str | None = Field(default=None, min_length=1)
    # oauth: requests go through {api_url}/ex/confluence/{cloud_id}/wiki (the site's cloudId).
    cloud_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]+$")
    api_url: str = "https://api.atlassian.com"
    oauth_url: str | None = None  # the token endpoint; default {api_url}/oauth/token
    spaces: list[str] | None = None  # space keys; default: every space the account can see
    include_attachments: bool = False
    timezone: str = "UTC"  # the account's time zone: CQL dates are read in it
    overlap_minutes: int = Field(default=60, ge=1)
    account_emails: dict[str, str] = Field(default_factory=dict)  # accountId -> email
    page_size: int = Field(default=25, ge=1, le=250)
    # v1: `space?expand=permissions` (users, groups, anonymous access); v2:
    # `/api/v2/spaces/{id}/permissions` (users and groups; role principals are reported and
    # grant nothing; v2 does not show anonymous access, so it is not granted).
    space_permissions: Literal["v1", "v2"] = "v1"

    @model_validator(mode="after")
    def _oauth_needs_a_cloud_id(self) -> ConfluenceOptions:
        if self.auth == "oauth" and not self.cloud_id:
            raise ValueError("'cloud_id' is required with auth = \"oauth\" (requests go "
                             "through the gateway, <api_url>/ex/confluence/<cloud_id>/wiki)")
        return self

    @property
    def api_base(self) -> str:
        """Where requests go: the site's wiki (basic) or the OAuth gateway's (oauth)."""
        if self.auth == "oauth":
            return f"{self.api_url}/ex/confluence/{self.cloud_id}/wiki"
        return self.url

    @field_validator("url", "api_url", "oauth_url")
    @classmethod
    def _wiki_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or "@" in value.split("/")[2]:
            raise ValueError("must be an http(s) URL without credentials in it")
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("spaces")
    @classmethod
    def _keys(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(_SPACE_KEY.match(k) for k in value)):
            raise ValueError("a non-empty list of space keys")
        return value

    @field_validator("account_emails")
    @classmethod
    def _emails(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k, v in value.items() if P.domain_of(v) is None)
        if bad:
            raise ValueError(f"account {bad[0]!r}: not an email address")
        return value


@dataclass
class _Pass(PassNotes):
    """What one pass learnt (caches, warnings said once)."""

    spaces: dict[str, tuple[frozenset[str], str | None]] = field(default_factory=dict)
    restrictions: dict[str, tuple[frozenset[str] | None, str | None]] = field(
        default_factory=dict)
    space_ids: dict[str, str] | None = None  # space key -> v2 id
    unsearchable: set[str] = field(default_factory=set)  # ancestors a search did not return
    accounts: dict[str, JsonObject] = field(default_factory=dict)  # accountId -> v2 user


def _acl_key(acl: Acl) -> str:
    return hashlib.sha256(acl.key().encode()).hexdigest()[:16]


class ConfluenceConnector:
    kind = "confluence"
    # Groups are read before every pass: the contract (and a fresh index) needs them to grant.
    capabilities = Capabilities(change_feed=True, identities_each_pass=True)
    options_model = ConfluenceOptions

    def __init__(self, name: str, client: ConfluenceClient, *, spaces: list[str] | None = None,
                 time_zone: str = "UTC", overlap_minutes: int = 60,
                 account_emails: Mapping[str, str] | None = None,
                 include_attachments: bool = False,
                 space_permissions: Literal["v1", "v2"] = "v1") -> None:
        self.name = name
        self.space_permissions = space_permissions
        self.include_attachments = include_attachments
        self.client = client
        self.spaces = spaces
        self.zone = zone(time_zone)
        self.overlap = timedelta(minutes=overlap_minutes)
        self.account_emails = {k: P.normalize_email(v) for k, v in (account_emails or {}).items()}

    @classmethod
    def from_options(cls, name: str, options: ConnectorOptions, base_dir: Path,
                     environ: Mapping[str, str] | None = None) -> ConfluenceConnector:
        if not isinstance(options, ConfluenceOptions):
            raise TypeError(f"confluence options must be ConfluenceOptions, not "
                            f"{type(options).__name__}")
        # Secrets are read here, at the boundary, from the variables the config names.
        env = os.environ if environ is None else environ
        account: ServiceAccount | None = None
        token = ""
        if options.auth == "oauth" and options.client_id:
            secret = env.get(options.client_secret_env or "", "")
            if not options.client_secret_env or not secret:
                raise ConfigError(f"connector {name!r}: 'client_secret_env' must name a set "
                                  "environment variable holding the service account's "
                                  f"secret ({options.client_secret_env or 'none given'})")
            account = ServiceAccount(options.client_id, secret,
                                     options.oauth_url or f"{options.api_url}/oauth/token")
        else:
            token = env.get(options.token_env or "", "")
            if not options.token_env or not token:
                raise ConfigError(f"connector {name!r}: 'token_env' must name a set "
                                  f"environment variable ({options.token_env or 'none given'})")
        if options.auth == "basic" and not options.username:
            raise ConfigError(f"connector {name!r}: 'username' (the account's email) is "
                              "required with auth = \"basic\"")
        ca_bundle = options.ca_bundle
        if ca_bundle is not None:
            ca_bundle = str((base_dir / Path(ca_bundle).expanduser()).resolve())
        policy = options.model_copy(update={"ca_bundle": ca_bundle}).http_policy(name)
        client = ConfluenceClient(options.api_base, policy, auth=options.auth, token=token,
                                  username=options.username, page_size=options.page_size,
                                  service_account=account, site=options.url)
        return cls(name, client, spaces=options.spaces, time_zone=options.timezone,
                   overlap_minutes=options.overlap_minutes, account_emails=options.account_emails,
                   include_attachments=options.include_attachments,
                   space_permissions=options.space_permissions)

    @property
    def http_stats(self) -> HttpStats:
        """The policy's counters (requests, retries, throttled seconds) for the sync report."""
        return self.client.policy.stats

    def doc_id(self, content_id: str) -> str:
        return f"{self.name}:{content_id}"

    # -- scope -------------------------------------------------------------------------------
    def _scope_cql(self, keys: list[str]) -> str:
        quoted = ",".join(f'"{k}"' for k in keys)
        types = "page, blogpost, attachment" if self.include_attachments else "page, blogpost"
        return f"space in ({quoted}) AND type in ({types})"

    def _wanted(self, item: JsonObject) -> bool:
        """Pages and blog posts; attachments in a format the shared extraction reads."""
        if item.get("type") != "attachment":
            return True
        return self.include_attachments and supported(str(item.get("title", "")))

    def _space_keys(self) -> list[str]:
        if self.spaces is not None:
            return sorted(self.spaces)
        return sorted(str(s["key"]) for s in self.client.spaces())

    # -- principals --------------------------------------------------------------------------
    def _user(self, user: JsonObject, run: _Pass) -> str | None:
        account = str(user.get("accountId", ""))
        if user.get("accountType") == "app":
            return None  # bots read nothing through Clearance
        email = self.account_emails.get(account) or str(user.get("email") or "")
        if not email or P.domain_of(email) is None:
            run.warn(f"hidden:{account}", f"account {account} has no visible email and no "
                     "account_emails mapping: left out of every ACL and group (fail closed)")
            return None
        return P.user(email)

    def _group(self, group: JsonObject) -> str | None:
        gid = group.get("id")
        return P.group(str(gid), source=GROUP_SOURCE) if gid else None

    def _set(self, users: list[JsonObject], groups: list[JsonObject], run: _Pass
             ) -> frozenset[str]:
        found = {self._user(u, run) for u in users} | {self._group(g) for g in groups}
        return frozenset(p for p in found if p is not None)

    # -- space gate --------------------------------------------------------------------------
    def _space_gate(self, key: str, run: _Pass) -> tuple[frozenset[str], str | None]:
        if key in run.spaces:
            return run.spaces[key]
        got: tuple[frozenset[str], str | None]
        try:
            if self.space_permissions == "v2":
                got = self._space_readers_v2(key, run)
            else:
                got = self._space_readers(key, self.client.space_permissions(key), run)
        except SourceError as exc:
            got = (frozenset(), f"space {key}: permissions could not be read ({exc})")
        except MALFORMED as exc:
            got = (frozenset(), f"space {key}: permissions answer malformed "
                                f"({type(exc).__name__})")
        run.spaces[key] = got
        return got

    def _space_readers(self, key: str, space: JsonObject, run: _Pass
                       ) -> tuple[frozenset[str], str | None]:
        perms = space.get("permissions")
        if not isinstance(perms, list):
            return frozenset(), (f"space {key}: no permissions in the answer (the account "
                                 "needs to be a space or site admin)")
        readers: set[str] = set()
        for perm in perms:
            op = perm.get("operation", {})
            if op.get("operation") != "read" or op.get("targetType") != "space":
                continue
            if perm.get("anonymousAccess"):
                readers.add(P.EVERYONE)
            if perm.get("unlicensedAccess"):
                run.warn(f"unlicensed:{key}", f"space {key} is open to unlicensed (Service "
                         "Management) users: they are not people of this index, that grant "
                         "is not mapped (the space's other readers are)")
            subjects = perm.get("subjects", {})
            readers |= self._set(subjects.get("user", {}).get("results", []),
                                 subjects.get("group", {}).get("results", []), run)
        return frozenset(readers), None

    def _space_readers_v2(self, key: str, run: _Pass) -> tuple[frozenset[str], str | None]:
        """Read grants of the v2 permission assignments: users (resolved in bulk) and groups.
        A role or any other principal is reported and grants nobody: never everyone."""
        if run.space_ids is None or key not in run.space_ids:
            # One listing for the pass: the configured keys, or every space.
            keys = sorted({*self.spaces, key}) if self.spaces else []
            run.space_ids = {**(run.space_ids or {}),
                             **{str(s.get("key")): str(s.get("id"))
                                for s in self.client.v2_spaces(keys)}}
        space_id = run.space_ids.get(key)
        if space_id is None:
            return frozenset(), f"space {key}: not in the v2 space listing"
        accounts: list[str] = []
        groups: list[JsonObject] = []
        for perm in self.client.v2_space_permissions(space_id):
            op = perm.get("operation", {})
            if op.get("key") != "read" or op.get("targetType") != "space":
                continue
            principal = perm.get("principal", {})
            kind, pid = principal.get("type"), str(principal.get("id", ""))
            if kind == "user" and pid:
                accounts.append(pid)
            elif kind == "group" and pid:
                groups.append({"id": pid})
            else:
                run.warn(f"principal:{kind}:{pid}", f"space {key}: read granted to a {kind} "
                         f"principal ({pid}) that this connector does not resolve: it grants "
                         "nobody here (fail closed)")
        users = self._accounts(accounts, run)
        for account in accounts:
            if account not in run.accounts:
                run.warn(f"unknown:{account}", f"space {key}: account {account} not found by "
                         "users-bulk: left out (fail closed)")
        readers = self._set(users, groups, run)
        if not readers:
            run.warn(f"empty:{key}", f"space {key}: no user or group may read it in its v2 "
                     "permissions (anonymous access is not shown there): its pages are "
                     "readable by nobody")
        return readers, None

    def _accounts(self, account_ids: list[str], run: _Pass) -> list[JsonObject]:
        """The users of these accountIds, from users-bulk (250 a request), cached per pass."""
        missing = sorted({a for a in account_ids if a not in run.accounts})
        for n in range(0, len(missing), 250):
            for user in self.client.users_bulk(missing[n:n + 250]):
                run.accounts[str(user.get("accountId"))] = user
        return [run.accounts[a] for a in account_ids if a in run.accounts]

    # -- restrictions ------------------------------------------------------------------------
    def _own(self, item: JsonObject, run: _Pass) -> tuple[frozenset[str] | None, str | None]:
        """The content's read set (None: not restricted), from the expansion when complete."""
        cid = str(item["id"])
        if cid in run.restrictions:
            return run.restrictions[cid]
        if self._learn(item, run):
            return run.restrictions[cid]
        return self._restriction(cid, run)

    def _learn(self, item: JsonObject, run: _Pass) -> bool:
        """Record the content's read set from its expansion, if the expansion is complete."""
        read = item.get("restrictions", {}).get("read", {}).get("restrictions")
        if not isinstance(read, dict) or "user" not in read or "group" not in read:
            return False
        users, groups = read["user"], read["group"]
        if not all(_complete(part) for part in (users, groups)):
            return False
        run.restrictions[str(item["id"])] = self._read_set(
            users.get("results", []), groups.get("results", []), run)
        return True

    def _learn_all(self, items: list[JsonObject], run: _Pass) -> None:
        for item in items:
            if item.get("type") != "attachment" and str(item["id"]) not in run.restrictions:
                self._learn(item, run)

    def _prefetch(self, items: list[JsonObject], run: _Pass) -> None:
        """Before a page of results is mapped: learn the restrictions its own expansions carry
        (a parent on the same page), then read every ancestor still unknown with one CQL
        search per 50 ids (`id in (...)`, restrictions expanded) instead of one restriction
        read per ancestor. What the search cannot give (a draft ancestor: not current) is
        left to the one-by-one read, where a 403 closes the page."""
        try:
            self._learn_all(items, run)
            missing = sorted({str(a["id"]) for item in items for a in item.get("ancestors", [])
                              if str(a["id"]) not in run.restrictions} - run.unsearchable)
        except MALFORMED:
            return  # each is then read on its own, where a bad answer closes its pages
        for n in range(0, len(missing), 50):
            batch = missing[n:n + 50]
            cql = f"id in ({','.join(json.dumps(c) for c in batch)})"
            try:
                for page, _ in self.client.search(cql, RESTRICTION_EXPAND):
                    self._learn_all(self._items(page, run), run)
            except (SourceError, *MALFORMED):
                pass  # each is then read on its own (and closes its pages if that fails)
            run.unsearchable.update(c for c in batch if c not in run.restrictions)

    def _read_set(self, users: list[JsonObject], groups: list[JsonObject], run: _Pass
                  ) -> tuple[frozenset[str] | None, str | None]:
        if not users and not groups:
            return None, None
        return self._set(users, groups, run), None

    def _restriction(self, cid: str, run: _Pass) -> tuple[frozenset[str] | None, str | None]:
        if cid in run.restrictions:
            return run.restrictions[cid]
        got: tuple[frozenset[str] | None, str | None]
        try:
            users, groups = self.client.read_restriction(cid)
            got = self._read_set(users, groups, run)
        except MALFORMED as exc:
            got = (frozenset(), f"content {cid}: read restriction answer malformed "
                                f"({type(exc).__name__})")
        except SourceError as exc:
            # 403 on someone else's draft ancestor is normal: unknown, so closed.
            got = (frozenset(), f"content {cid}: read restriction could not be read ({exc})")
        run.restrictions[cid] = got
        return got

    def acl(self, item: JsonObject, run: _Pass) -> tuple[Acl, str | None]:
        """Space gate, own gate, one gate per restricted ancestor; the first problem closes."""
        acl, problem, _ = self._acl(item, run)
        return acl, problem

    def _acl(self, item: JsonObject, run: _Pass) -> tuple[Acl, str | None, bool]:
        """The ACL, the problem that closed it, and whether that problem is the page's own
        (a restriction of it or of an ancestor that answered 403 or failed: skip the page)
        rather than its space's (every page of the space is closed: a partial sync)."""
        key = str(item.get("space", {}).get("key", ""))
        space, problem = self._space_gate(key, run)
        if problem:
            return Acl.nobody(problem), problem, False
        gates = [space]
        chain = [str(a["id"]) for a in item.get("ancestors", [])]
        for cid in chain:
            got, problem = self._restriction(cid, run)
            if problem:
                return Acl.nobody(problem), problem, True
            if got is not None:
                gates.append(got)
        if item.get("type") == "attachment":
            # No restriction of its own: the container is its last ancestor, already a gate.
            return Acl.of(gates), None, False
        own, problem = self._own(item, run)
        if problem:
            return Acl.nobody(problem), problem, True
        if own is not None:
            gates.append(own)
        return Acl.of(gates), None, False

    def _listed_acl(self, item: JsonObject, run: _Pass) -> Acl:
        """The ACL of a listed page (no body read): a problem closes it and is reported."""
        try:
            acl, problem = self.acl(item, run)
        except MALFORMED as exc:
            problem = f"content {item['id']}: malformed answer ({type(exc).__name__})"
            acl = Acl.nobody(problem)
        if problem:
            run.warn(f"closed:{problem}", f"{problem}: content {item['id']} (and any other "
                     "it closes) readable by nobody until it can be read")
        return acl

    # -- documents ---------------------------------------------------------------------------
    def _items(self, page: JsonObject, run: _Pass) -> list[JsonObject]:
        """The results of one API page that are content items (an object with an id); any
        other entry is reported and skipped (an indexed copy of it is pruned as gone)."""
        items = []
        for item in page["results"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str | int) \
                    and not isinstance(item.get("id"), bool) and str(item["id"]):
                items.append({**item, "id": str(item["id"])})
            else:
                run.warn("malformed-item", "the API answered a result that is not a content "
                         "item with an id: skipped")
        return items

    def _document(self, item: JsonObject, base: str, run: _Pass) -> Upsert | Failure:
        """One item mapped; an answer of the wrong shape skips it, closed (reported)."""
        try:
            return self._map(item, base, run)
        except MALFORMED as exc:
            cid = str(item["id"])
            reason = f"skipped: the API's answer for it is malformed ({type(exc).__name__})"
            return Failure(cid, reason, self.doc_id(cid), Acl.nobody(reason), transient=True)

    def _map(self, item: JsonObject, base: str, run: _Pass) -> Upsert | Failure:
        acl, problem, own_problem = self._acl(item, run)
        cid = str(item["id"])
        if problem and own_problem:
            # Skipped and reported; an indexed copy is closed to everyone (never left with a
            # wider ACL) and tried again next pass. The rest of the sync goes on.
            return Failure(cid, f"skipped: {problem}", self.doc_id(cid), acl, transient=True)
        if problem:
            run.failures.append(Failure(cid, problem, scope="acl"))
        site = base[: -len("/wiki")] if base.endswith("/wiki") else base
        title = str(item.get("title") or cid)
        try:
            if item.get("type") == "attachment":
                data = self.client.download(str(item.get("_links", {}).get("download", "")))
                sections = list(extract_bytes(data, title).sections)
            else:
                _, sections = extract_storage(self._body(item), f"{title} ({cid})", site)
        except SourceForbidden as exc:
            closed = Acl.nobody(f"content {cid}: 403")
            return Failure(cid, f"skipped: content could not be read ({exc})", self.doc_id(cid),
                           closed, transient=True)
        except SourceNotFound as exc:  # gone between the listing and the read
            return Failure(cid, f"content vanished ({exc})", self.doc_id(cid))
        except SourceError as exc:
            return Failure(cid, f"attachment could not be downloaded ({exc})", self.doc_id(cid),
                           acl, transient=True)
        except NoText as exc:
            return Failure(cid, str(exc), self.doc_id(cid), acl)
        except MalformedDocument as exc:
            return Failure(cid, str(exc), self.doc_id(cid), acl, transient=True)
        version = item.get("version", {})
        updated = _when(version.get("when"))
        author = version.get("by", {})
        space = item.get("space", {})
        metadata = {"space": str(space.get("key", "")), "type": str(item.get("type", "page")),
                    "version": str(version.get("number", "")),
                    "author": str(author.get("displayName") or author.get("accountId") or "")}
        url = f"{base}{item.get('_links', {}).get('webui', '')}"
        return Upsert(make_document(self.doc_id(cid), title, url, sections, acl, updated,
                                    metadata))

    def _body(self, item: JsonObject) -> str:
        """The storage body from the expansion; when the search left it out (`_expandable`),
        read the one page (a 403 there: skip it)."""
        storage = item.get("body", {}).get("storage")
        if not isinstance(storage, dict):
            storage = self.client.content(str(item["id"]), "body.storage").get(
                "body", {}).get("storage", {})
        value = storage.get("value", "") if isinstance(storage, dict) else ""
        return value if isinstance(value, str) else ""

    # -- content pass ------------------------------------------------------------------------
    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        state = _parse_cursor(cursor) if cursor else None
        if state is None or state.get("phase") == "list":
            yield from self._enumerate(state)
        else:
            yield from self._changes(state)

    def _enumerate(self, state: JsonObject | None) -> Iterator[ContentPage]:
        run = _Pass()
        keys = state["keys"] if state else self._space_keys()
        since = state["since"] if state else _now_minute()
        acls: dict[str, str] = dict(state["acls"]) if state else {}
        if not keys:
            yield ContentPage(cursor=_cursor("feed", since, acls, keys))
            return
        for page, following in self.client.search(self._scope_cql(keys), PAGE_EXPAND,
                                                  state.get("next") if state else None):
            base = str(page.get("_links", {}).get("base") or self.client.site)
            ops: list[Operation] = []
            failures: list[Failure] = []
            if _cut_short(page):
                # Trusting it would prune the rest of the scope as deleted: fail the pass
                # instead (nothing pruned; the next run resumes from the last page).
                raise SourceUnavailable(f"the content listing ended at an empty page that "
                                        f"still had a next link, at {page.get('start')} of "
                                        f"{page.get('totalSize')} results: not trusted")
            items = self._items(page, run)
            self._prefetch(items, run)
            for item in items:
                if not self._wanted(item):
                    continue
                got = self._document(item, base, run)
                acls[str(item["id"])] = _state_key(got)
                if isinstance(got, Failure):
                    failures.append(got)
                else:
                    ops.append(got)
            more, said = run.drain()
            cursor = _cursor("list", since, acls, keys, following) if following \
                else _cursor("feed", since, acls, keys)
            yield ContentPage(tuple(ops), (*failures, *more), cursor, said)

    def _changes(self, state: JsonObject) -> Iterator[ContentPage]:
        run = _Pass()
        keys = self._space_keys()
        started = _now_minute()
        old: dict[str, str] = dict(state["acls"])
        acls: dict[str, str] = {}
        if not keys:
            yield ContentPage(tuple(Delete(self.doc_id(c)) for c in sorted(old)),
                              cursor=_cursor("feed", started, {}, keys))
            return
        since = datetime.fromtimestamp(float(state["since"]), UTC) - self.overlap
        window = since.astimezone(self.zone).strftime("%Y-%m-%d %H:%M")
        cql = f'{self._scope_cql(keys)} AND lastmodified >= "{window}" ORDER BY lastmodified ASC'
        changed: set[tuple[str, str]] = set()  # (id, version): the overlap repeats some
        # Pages skipped last time (a 403, a failed download) are read again in full first.
        retry = sorted(c for c, k in old.items() if k == RETRY)
        listings = [f"{self._scope_cql(keys)} AND id in "
                    f"({','.join(json.dumps(c) for c in retry[n:n + 50])})"
                    for n in range(0, len(retry), 50)]
        for query in [*listings, cql]:
            for page, _ in self.client.search(query, PAGE_EXPAND):
                base = str(page.get("_links", {}).get("base") or self.client.site)
                ops: list[Operation] = []
                failures: list[Failure] = []
                items = self._items(page, run)
                self._prefetch(items, run)
                for item in items:
                    if not self._wanted(item):
                        continue
                    cid = str(item["id"])
                    version = item.get("version")
                    stamp = (cid, str(version.get("number", "") if isinstance(version, dict)
                                      else ""))
                    if stamp in changed:
                        continue
                    changed.add(stamp)
                    got = self._document(item, base, run)
                    acls[cid] = _state_key(got)
                    if isinstance(got, Failure):
                        failures.append(got)
                    else:
                        ops.append(got)
                more, said = run.drain()
                yield ContentPage(tuple(ops), (*failures, *more), None, said)
        # Restriction and space-permission edits do not touch lastmodified; deletions have no
        # feed: list the scope (no bodies) and compare with what the last pass saw.
        done = {cid for cid, _ in changed}
        complete = True
        for page, _ in self.client.search(self._scope_cql(keys), ACL_EXPAND):
            complete = complete and not _cut_short(page)
            ops = []
            items = self._items(page, run)
            self._prefetch(items, run)
            for item in items:
                cid = str(item["id"])
                if cid in done or not self._wanted(item):
                    continue
                acl = self._listed_acl(item, run)
                acls[cid] = _acl_key(acl)
                if old.get(cid) != acls[cid]:
                    ops.append(AclUpdate(self.doc_id(cid), acl))
            more, said = run.drain()
            yield ContentPage(tuple(ops), more, None, said)
        said = ()
        if not complete:
            # The listing stopped early (an empty page with a next link, fewer results than
            # its total): what it did not reach is not known to be gone. Keep it for now.
            unlisted = {c: k for c, k in old.items() if c not in acls}
            acls.update(unlisted)
            said = (f"the ids listing ended early (an empty page with a next link): "
                    f"{len(unlisted)} unlisted page(s) kept, not deleted, this pass",)
        gone = tuple(Delete(self.doc_id(c)) for c in sorted(set(old) - set(acls)))
        yield ContentPage(gone, cursor=_cursor("feed", started, acls, keys), warnings=said)

    # -- permission pass ---------------------------------------------------------------------
    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        run = _Pass()
        state = _parse_cursor(cursor) if cursor else None
        keys = state["keys"] if state else self._space_keys()
        if not keys:
            yield PermissionPage(())
            return
        for page, following in self.client.search(self._scope_cql(keys), ACL_EXPAND,
                                                  state.get("next") if state else None):
            items = self._items(page, run)
            self._prefetch(items, run)
            acls = tuple((self.doc_id(str(item["id"])), self._listed_acl(item, run))
                         for item in items if self._wanted(item))
            failures, said = run.drain()
            next_cursor = _cursor("perm", 0, {}, keys, following) if following else None
            yield PermissionPage(acls, failures, next_cursor, said)

    # -- identity pass -----------------------------------------------------------------------
    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        run = _Pass()
        resume = None
        if cursor:
            state = _parse_cursor(cursor)
            resume = state.get("next")
        try:
            for page, following in self.client.groups(resume):
                memberships: list[Membership] = []
                for group in page["results"]:
                    principal = self._group(group)
                    if principal is None:
                        continue
                    for member in self.client.members(str(group["id"])):
                        user = self._user(member, run)
                        if user is not None:
                            memberships.append(Membership(group=principal, member=user))
                for warning in run.warnings:
                    log.warning("confluence %s: %s", self.name, warning)
                run.warnings = []
                next_cursor = _cursor("groups", 0, {}, [], following) if following else None
                yield IdentityPage(tuple(memberships), cursor=next_cursor)
        except SourceError as exc:
            yield IdentityPage(failures=(Failure("groups", f"groups could not be read ({exc})",
                                                 scope="identities", transient=True),))
        except MALFORMED as exc:
            yield IdentityPage(failures=(Failure("groups", "groups answer malformed "
                                                 f"({type(exc).__name__})",
                                                 scope="identities", transient=True),))


# What a JSON answer of the wrong shape raises when it is mapped (a list for an object, a
# number for a list, a missing key): caught at each boundary and failed closed there.
MALFORMED = (AttributeError, TypeError, KeyError, ValueError)
RETRY = "retry"  # the cursor's mark of a page skipped this pass: read it again in full next


def _state_key(got: Upsert | Failure) -> str:
    """What the cursor remembers of a page: its ACL's key, or RETRY when it was skipped for a
    reason that may pass (a 403, a failed download): the ids listing alone would never
    bring its text back."""
    if isinstance(got, Upsert):
        return _acl_key(got.document.acl)
    return RETRY if got.transient else _acl_key(got.acl or Acl.nobody("failed"))


def _cut_short(page: JsonObject) -> bool:
    """An empty search page that still links onward while its `start` is short of its
    `totalSize`: a listing that stopped early, not its end (Cloud's quirk, mid-listing)."""
    links = page.get("_links")
    nxt = links.get("next") if isinstance(links, dict) else None
    start, total = page.get("start"), page.get("totalSize")
    return not page.get("results") and bool(nxt) and isinstance(start, int) \
        and isinstance(total, int) and start < total


def _complete(part: JsonObject) -> bool:
    """An expanded restriction list holds every entry: no next link, not cut at its limit,
    not fewer than its total. When in doubt the restriction is read on its own, in full."""
    results = part.get("results", [])
    if not isinstance(results, list) or part.get("_links", {}).get("next"):
        return False
    limit = part.get("limit")
    if isinstance(limit, int) and results and len(results) >= limit:
        return False
    total = part.get("totalSize", part.get("size", 0))
    return isinstance(total, int) and len(results) >= total


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _now_minute() -> float:
    return float(int(time.time()) // 60 * 60)


def _cursor(phase: str, since: float, acls: dict[str, str], keys: list[str],
            following: str | None = None) -> str:
    return json.dumps({"v": _CURSOR_VERSION, "phase": phase, "since": since, "keys": keys,
                       "next": following, "acls": acls}, sort_keys=True)


def _parse_cursor(cursor: str) -> JsonObject:
    try:
        state = json.loads(cursor)
    except ValueError:
        raise CursorExpired("not a confluence cursor (not JSON)") from None
    if not isinstance(state, dict) or state.get("v") != _CURSOR_VERSION \
            or not isinstance(state.get("acls"), dict) \
            or not isinstance(state.get("since"), int | float) \
            or not isinstance(state.get("keys"), list):
        raise CursorExpired("not a confluence cursor of this version")
    return state
