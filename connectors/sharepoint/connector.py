"""SharePoint Online / OneDrive for Business over Microsoft Graph, with effective read access.

Who may read a file (ACL_APIS 2.5), from the item's `/permissions` (direct plus inherited):
- `grantedToV2.user`: the Entra user's email (the directory's `mail`; a member's UPN when it
  has none; a guest's `#EXT#` UPN is never an address). Unknown: left out and reported.
- `grantedToV2.group`: `group:entra:<id>`, expanded by the identity pass (transitiveMembers).
- `grantedToV2.siteGroup`: `group:spsite:<site>:<id>`. Graph cannot list its members; with a
  client secret SharePoint REST refuses app-only calls, so it grants nothing (reported).
- `siteUser` claims: `spo-grid-all-users` ("Everyone except external users") is the tenant's
  internal domains (`domain:<d>`, guests excluded); `c:0(.s|true` ("Everyone") is `everyone`.
- sharing links: `users` -> the people listed; `organization` / `anonymous` are link-only
  access and grant nothing unless `organization_links = "domain"` / `anonymous_links =
  "everyone"`; `existingAccess` grants nothing new; an expired link grants nothing.
- `invitation.email`: the invited address. Roles that are only "Limited Access" admit nobody.
- A OneDrive's owner always reads; site admins come as `owner` grants.
A permission list that cannot be read closes the file (Acl.nobody, reported).

Content pass: per drive, `/root/delta` with the Prefer headers for removals and sharing
changes. The cursor holds each drive's deltaLink, and per file its ACL key, cTag and parent:
an incremental pass reads `/permissions` only for new files, moved ones and those carrying
`@microsoft.graph.sharedChanged`; an unchanged cTag with changed sharing is an AclUpdate (no
download). A 410 `resyncRequired` raises CursorExpired: the pipeline re-enumerates and
reconciles.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

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
from connectors.extract import NoText, extract_bytes, supported
from connectors.extract.limits import Limits
from connectors.http import HttpStats
from connectors.sharepoint.client import Credential, GraphClient, JsonObject
from core import principals as P
from core.acl import Acl
from core.errors import (
    ConfigError,
    CursorExpired,
    MalformedDocument,
    SourceError,
    SourceNotFound,
)
from core.models import Alias, Membership, make_document

log = logging.getLogger(__name__)

_CURSOR_VERSION = 1
LIMITED = frozenset({"limited access", "sp.limited access", "limitedaccess", "restricted view"})
EVERYONE_CLAIM = "c:0(.s|true"
ALL_USERS_CLAIM = "spo-grid-all-users"
MEMBER_CLAIM = "i:0#.f|membership|"


class SharePointOptions(HttpConnectorOptions):
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_env: str | None = Field(default=None, min_length=1)
    certificate_path: str | None = Field(default=None, min_length=1)  # PEM: private key
    certificate_thumbprint: str | None = Field(default=None, min_length=1)
    sites: list[str] | None = None  # site ids; default: every site the app can see
    include_onedrive: bool = False
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    organization_links: Literal["none", "domain"] = "none"
    anonymous_links: Literal["none", "everyone"] = "none"
    internal_domains: list[str] | None = None  # default: the tenant's verified domains
    page_size: int = Field(default=200, ge=1, le=999)
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # SharePoint REST host override (`https://contoso.sharepoint.com` is read from each site's
    # webUrl); used only with a certificate, for site-group members.
    sharepoint_url: str | None = None

    @field_validator("authority_host", "graph_url", "sharepoint_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("https://") or "@" in value.split("/")[2]:
            raise ValueError("must be an https URL without credentials in it")
        return value.rstrip("/")

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(isinstance(s, str) and s.strip()
                                                       for s in value)):
            raise ValueError("a non-empty list of site ids")
        return value

    @field_validator("internal_domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            bad = [d for d in value if not P.is_valid(P.domain(d))]
            if bad:
                raise ValueError(f"{bad[0]!r} is not a DNS domain")
        return value


@dataclass
class _Pass(PassNotes):
    """What one pass learnt: the directory, each drive's owner, warnings said once."""

    emails: dict[str, str | None] = field(default_factory=dict)  # oid -> email
    by_upn: dict[str, str] = field(default_factory=dict)  # upn (lower) -> email
    domains: tuple[str, ...] = ()


def email_of(user: JsonObject) -> str | None:
    """A directory user's address: `mail`, else a guest's first `otherMails`, else a member's
    UPN. A `#EXT#` UPN is never an address (it names the guest's home in this tenant)."""
    for candidate in (user.get("mail"), *(user.get("otherMails") or [])[:1]):
        if isinstance(candidate, str) and P.domain_of(candidate) and "#EXT#" not in candidate:
            return P.normalize_email(candidate)
    upn = user.get("userPrincipalName")
    if isinstance(upn, str) and "#ext#" not in upn.lower() and P.domain_of(upn) \
            and user.get("userType", "Member") != "Guest":
        return P.normalize_email(upn)
    return None


def _expired(perm: JsonObject, now: datetime) -> bool:
    value = perm.get("expirationDateTime")
    if not isinstance(value, str) or value.startswith("0001-01-01"):
        return False
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return True  # unreadable: fail closed
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= now


def _acl_key(acl: Acl) -> str:
    return hashlib.sha256(acl.key().encode()).hexdigest()[:16]


class SharePointConnector:
    kind = "sharepoint"
    capabilities = Capabilities(change_feed=True, identities_each_pass=True)
    options_model = SharePointOptions

    def __init__(self, name: str, client: GraphClient, *, sites: list[str] | None = None,
                 include_onedrive: bool = False,
                 organization_links: Literal["none", "domain"] = "none",
                 anonymous_links: Literal["none", "everyone"] = "none",
                 internal_domains: list[str] | None = None,
                 limits: Limits | None = None) -> None:
        self.name = name
        self.client = client
        self.sites = sites
        self.include_onedrive = include_onedrive
        self.organization_links = organization_links
        self.anonymous_links = anonymous_links
        self.internal_domains = internal_domains
        self.limits = limits or Limits(max_bytes=client.max_bytes)
        self.permission_calls = 0

    @classmethod
    def from_options(cls, name: str, options: ConnectorOptions, base_dir: Path,
                     environ: Mapping[str, str] | None = None) -> SharePointConnector:
        if not isinstance(options, SharePointOptions):
            raise TypeError(f"sharepoint options must be SharePointOptions, not "
                            f"{type(options).__name__}")
        env = os.environ if environ is None else environ
        secret: str | None = None
        pem: str | None = None
        if options.certificate_path:
            if not options.certificate_thumbprint:
                raise ConfigError(f"connector {name!r}: 'certificate_thumbprint' is required "
                                  "with 'certificate_path'")
            path = (base_dir / Path(options.certificate_path).expanduser()).resolve()
            try:
                pem = path.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"connector {name!r}: certificate {path}: cannot be read "
                                  f"({type(exc).__name__})") from None
        elif options.client_secret_env:
            secret = env.get(options.client_secret_env, "")
            if not secret:
                raise ConfigError(f"connector {name!r}: 'client_secret_env' names "
                                  f"{options.client_secret_env}, which is not set")
        else:
            raise ConfigError(f"connector {name!r}: 'client_secret_env' or "
                              "'certificate_path' is required")
        ca_bundle = options.ca_bundle
        if ca_bundle is not None:
            ca_bundle = str((base_dir / Path(ca_bundle).expanduser()).resolve())
        policy = options.model_copy(update={"ca_bundle": ca_bundle}).http_policy(name)
        credential = Credential(options.tenant_id, options.client_id, secret, pem,
                                options.certificate_thumbprint)
        client = GraphClient(policy, credential, authority_host=options.authority_host,
                             graph_url=options.graph_url, page_size=options.page_size,
                             max_bytes=options.max_file_bytes,
                             sharepoint_url=options.sharepoint_url)
        return cls(name, client, sites=options.sites, include_onedrive=options.include_onedrive,
                   organization_links=options.organization_links,
                   anonymous_links=options.anonymous_links,
                   internal_domains=options.internal_domains)

    @property
    def http_stats(self) -> HttpStats:
        return self.client.policy.stats

    def doc_id(self, drive_id: str, item_id: str) -> str:
        return f"{self.name}:{drive_id}:{item_id}"

    # -- scope -------------------------------------------------------------------------------
    def _drives(self) -> list[JsonObject]:
        """Every drive in scope, sorted by id (a resumed pass walks them in the same order)."""
        site_ids = self.sites if self.sites is not None else \
            sorted(str(s["id"]) for s in self.client.sites())
        drives: dict[str, JsonObject] = {}
        if self.include_onedrive:
            for user in self.client.users():
                try:
                    drive = self.client.get(f"users/{user.get('id')}/drive")
                except SourceNotFound:
                    continue  # no OneDrive provisioned
                drives[str(drive["id"])] = {**drive, "siteId": f"onedrive:{user.get('id')}"}
        for site_id in site_ids:
            for drive in self.client.drives(site_id):
                if drive.get("driveType") == "personal" and not self.include_onedrive:
                    continue
                drives[str(drive["id"])] = {**drive, "siteId": site_id}
        return [drives[k] for k in sorted(drives)]

    def _directory(self) -> _Pass:
        run = _Pass()
        for user in self.client.users():
            oid = str(user.get("id", ""))
            address = email_of(user)
            run.emails[oid] = address
            upn = user.get("userPrincipalName")
            if address and isinstance(upn, str):
                run.by_upn[upn.lower()] = address
        if self.internal_domains is not None:
            run.domains = tuple(self.internal_domains)
        else:
            run.domains = tuple(self.client.organization_domains())
        return run

    # -- principals --------------------------------------------------------------------------
    def _identity(self, ident: Any, site_id: str, run: _Pass) -> set[str]:
        if not isinstance(ident, dict):
            return set()
        out: set[str] = set()
        user = ident.get("user")
        group = ident.get("group")
        site_group = ident.get("siteGroup")
        site_user = ident.get("siteUser")
        if isinstance(user, dict):
            oid = str(user.get("id", ""))
            address = run.emails.get(oid) if oid in run.emails else None
            if address is None and oid not in run.emails:
                given = user.get("email")
                address = P.normalize_email(given) if isinstance(given, str) and \
                    P.domain_of(given) and "#EXT#" not in given else None
            if address:
                out.add(P.user(address))
            else:
                run.warn(f"user:{oid}", f"user {oid or '?'} has no address in the directory: "
                         "left out of every ACL (fail closed)")
        elif isinstance(group, dict) and group.get("id"):
            out.add(P.group(str(group["id"]), source="entra"))
        elif isinstance(site_group, dict) and site_group.get("id") is not None:
            out.add(P.group(f"{site_id}:{site_group['id']}", source="spsite"))
            if not self.client.credential.certificate:
                run.warn(f"sitegroup:{site_id}:{site_group['id']}",
                         f"site group {site_group.get('displayName') or site_group['id']} on "
                         f"site {site_id}: its members need SharePoint REST with a "
                         "certificate; it grants nobody")
        elif isinstance(site_user, dict):
            login = str(site_user.get("loginName", ""))
            if login == EVERYONE_CLAIM:
                out.add(P.EVERYONE)
            elif ALL_USERS_CLAIM in login:
                out |= {P.domain(d) for d in run.domains}
            elif login.lower().startswith(MEMBER_CLAIM):
                address = run.by_upn.get(login[len(MEMBER_CLAIM):].lower())
                if address:
                    out.add(P.user(address))
                else:
                    run.warn(f"login:{login}", "a site user unknown to the directory: left "
                             "out of every ACL (fail closed)")
            else:
                run.warn(f"login:{login}", f"site principal {login[:60]!r} not mapped: "
                         "grants nothing")
        elif ident:
            kinds = ",".join(sorted(k for k in ident if isinstance(k, str)))
            run.warn(f"kind:{kinds}", f"grants to {kinds} read nothing through Clearance")
        return out

    def readers(self, perms: list[JsonObject], site_id: str, owner: str | None,
                run: _Pass) -> frozenset[str]:
        now = datetime.now(UTC)
        readers: set[str] = set()
        if owner:
            readers.add(owner)
        for perm in perms:
            roles = [str(r).strip().lower() for r in perm.get("roles") or []]
            if not roles or all(r in LIMITED for r in roles):
                continue  # Limited Access opens the way to a shared child, not this item
            if _expired(perm, now):
                continue
            link = perm.get("link")
            if isinstance(link, dict):
                scope = link.get("scope")
                if scope == "users":
                    for ident in perm.get("grantedToIdentitiesV2") or []:
                        readers |= self._identity(ident, site_id, run)
                elif scope == "organization" and self.organization_links == "domain":
                    readers |= {P.domain(d) for d in run.domains}
                elif scope == "anonymous" and self.anonymous_links == "everyone":
                    readers.add(P.EVERYONE)
                continue
            invitation = perm.get("invitation")
            if isinstance(invitation, dict) and "grantedToV2" not in perm:
                address = invitation.get("email")
                if isinstance(address, str) and P.domain_of(address):
                    readers.add(P.user(address))
                continue
            readers |= self._identity(perm.get("grantedToV2"), site_id, run)
        return frozenset(readers)

    def _owner(self, drive: JsonObject, run: _Pass) -> str | None:
        if drive.get("driveType") != "personal":
            return None
        oid = str(drive.get("owner", {}).get("user", {}).get("id", ""))
        address = run.emails.get(oid)
        return P.user(address) if address else None

    def acl(self, drive: JsonObject, item: JsonObject, run: _Pass) -> tuple[Acl, str | None]:
        did, iid = str(drive["id"]), str(item["id"])
        self.permission_calls += 1
        try:
            perms = self.client.permissions(did, iid)
        except SourceError as exc:
            problem = f"item {iid}: permissions could not be read ({exc})"
            return Acl.nobody(problem), problem
        return Acl.single(self.readers(perms, str(drive.get("siteId", "")),
                                       self._owner(drive, run), run)), None

    # -- documents ---------------------------------------------------------------------------
    @staticmethod
    def _wanted(item: JsonObject) -> bool:
        return "file" in item and "deleted" not in item and supported(str(item.get("name", "")))

    def _document(self, drive: JsonObject, item: JsonObject, acl: Acl) -> Upsert | Failure:
        did, iid = str(drive["id"]), str(item["id"])
        name = str(item.get("name") or iid)
        doc_id = self.doc_id(did, iid)
        size = item.get("size")
        if isinstance(size, int) and size > self.limits.max_bytes:
            return Failure(iid, f"{name}: {size} bytes, more than the {self.limits.max_bytes} "
                           "allowed", doc_id, acl)
        try:
            data = self.client.content(did, iid, self.limits.max_bytes)
            sections = list(extract_bytes(data, name, limits=self.limits).sections)
        except NoText as exc:
            return Failure(iid, str(exc), doc_id, acl)
        except SourceError as exc:
            return Failure(iid, f"{name}: could not be downloaded ({exc})", doc_id, acl,
                           transient=True)
        except MalformedDocument as exc:
            return Failure(iid, str(exc), doc_id, acl, transient=True)
        parent = item.get("parentReference", {})
        updated = None
        if isinstance(item.get("lastModifiedDateTime"), str):
            try:
                updated = datetime.fromisoformat(item["lastModifiedDateTime"].replace(
                    "Z", "+00:00"))
            except ValueError:
                updated = None
        path = str(parent.get("path", "")).partition("root:")[2]
        metadata = {"site": str(drive.get("siteId", "")), "drive": did,
                    "drive_name": str(drive.get("name", "")), "path": path}
        return Upsert(make_document(doc_id, name, str(item.get("webUrl", "")), sections, acl,
                                    updated, metadata))

    # -- content pass ------------------------------------------------------------------------
    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        state = _parse_cursor(cursor) if cursor else _new_state("list")
        if state["phase"] == "feed":  # a new incremental pass over the stored deltaLinks
            state = {**_new_state("inc"), "old": state["links"], "items": state["items"],
                     "acls": state["acls"], "folders": state.get("folders", {})}
        run = self._directory()
        drives = self._drives()
        if state["todo"] is None:
            todo = [str(d["id"]) for d in drives]
            state["todo"] = todo
            gone = sorted(set(state["old"]) - set(todo))
            if gone:  # drives no longer in scope: everything of theirs leaves the index
                ops: list[Operation] = []
                for key in sorted(state["items"]):
                    if key.split("\x00")[0] in gone:
                        ops.append(Delete(self.doc_id(*key.split("\x00"))))
                        del state["items"][key]
                yield ContentPage(tuple(ops), cursor=_dump(state))
        by_id = {str(d["id"]): d for d in drives}
        while state["todo"]:
            did = state["todo"][0]
            drive = by_id.get(did)
            if drive is None:  # vanished mid-pass: the next pass deletes its items
                state["todo"].pop(0)
                continue
            start = state["at"] or state["old"].get(did)
            for entries, following, delta in self.client.delta(did, start):
                ops = self._apply(drive, entries, state, run, incremental=start is not None)
                failures, said = run.drain()
                if following is not None:
                    state["at"] = following
                else:
                    state["at"] = None
                    state["links"][did] = delta or ""
                    state["todo"].pop(0)
                    if not state["todo"]:
                        state["phase"] = "feed"
                yield ContentPage(tuple(ops), failures, _dump(state), said)
        if state["phase"] != "feed":
            state["phase"] = "feed"
            yield ContentPage(cursor=_dump(state))

    def _apply(self, drive: JsonObject, entries: list[JsonObject], state: JsonObject,
               run: _Pass, *, incremental: bool) -> list[Operation]:
        did = str(drive["id"])
        items: dict[str, list[str]] = state["items"]
        acls: dict[str, Any] = state["acls"]
        ops: list[Operation] = []
        last: dict[str, JsonObject] = {}
        for entry in entries:  # an item may come more than once: the last one wins
            if isinstance(entry.get("id"), str):
                last.pop(entry["id"], None)
                last[entry["id"]] = entry
        folders: dict[str, str] = state.setdefault("folders", {})
        for iid, item in last.items():
            key = f"{did}\x00{iid}"
            known = items.get(key)
            if "folder" in item and "deleted" not in item:
                folders[key] = str(item.get("parentReference", {}).get("id") or "")
            if "deleted" in item and key in folders:
                # A deleted folder: Graph may not list what was under it. Whatever was known
                # below it leaves the index too (a later live report brings it back).
                for below in self._under(did, iid, items, folders):
                    ops.append(Delete(self.doc_id(*below.split("\x00"))))
                    del items[below]
                for sub in [k for k in folders if k == key or
                            self._below(did, k.split("\x00")[1], iid, folders)]:
                    del folders[sub]
            if not self._wanted(item):
                if known is not None:  # deleted, moved out, renamed to a format not read
                    ops.append(Delete(self.doc_id(did, iid)))
                    del items[key]
                continue
            ctag = str(item.get("cTag", ""))
            parent = str(item.get("parentReference", {}).get("id", ""))
            shared = str(item.get("@microsoft.graph.sharedChanged", "")).lower() == "true"
            acl: Acl | None = None
            if known is not None and incremental and not shared and known[2] == parent \
                    and known[0] in acls:
                acl = Acl.from_json(acls[known[0]])
            if acl is None:
                acl, problem = self.acl(drive, item, run)
                if problem:
                    run.failures.append(Failure(iid, problem, scope="acl"))
            akey = _acl_key(acl)
            acls.setdefault(akey, acl.to_json())
            if known is not None and known[1] == ctag and incremental:
                if known[0] != akey:
                    ops.append(AclUpdate(self.doc_id(did, iid), acl))
                items[key] = [akey, ctag, parent]
                continue
            got = self._document(drive, item, acl)
            if isinstance(got, Failure):
                run.failures.append(got)
            else:
                ops.append(got)
            items[key] = [akey, ctag, parent]
        used = {v[0] for v in items.values()}
        for stale in [k for k in acls if k not in used]:
            del acls[stale]
        return ops

    @staticmethod
    def _below(did: str, node: str, ancestor: str, folders: dict[str, str]) -> bool:
        """Whether folder/parent id `node` is `ancestor` or lies under it."""
        seen: set[str] = set()
        while node and node not in seen:
            if node == ancestor:
                return True
            seen.add(node)
            node = folders.get(f"{did}\x00{node}", "")
        return False

    def _under(self, did: str, folder: str, items: dict[str, list[str]],
               folders: dict[str, str]) -> list[str]:
        return sorted(k for k, v in items.items() if k.split("\x00")[0] == did
                      and self._below(did, v[2], folder, folders))

    # -- permission pass ---------------------------------------------------------------------
    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        state = _parse_cursor(cursor) if cursor else _new_state("perm")
        run = self._directory()
        drives = self._drives()
        if state["todo"] is None:
            state["todo"] = [str(d["id"]) for d in drives]
        by_id = {str(d["id"]): d for d in drives}
        if not state["todo"]:
            yield PermissionPage(())
            return
        while state["todo"]:
            did = state["todo"][0]
            drive = by_id.get(did)
            if drive is None:
                state["todo"].pop(0)
                continue
            for entries, following, _ in self.client.delta(did, state["at"]):
                acls: list[tuple[str, Acl]] = []
                for item in entries:
                    if self._wanted(item):
                        acl, problem = self.acl(drive, item, run)
                        if problem:
                            run.failures.append(Failure(str(item["id"]), problem, scope="acl"))
                        acls.append((self.doc_id(did, str(item["id"])), acl))
                state["at"] = following
                if following is None:
                    state["todo"].pop(0)
                failures, said = run.drain()
                yield PermissionPage(tuple(acls), failures,
                                     _dump(state) if state["todo"] else None, said)

    def _site_group_pages(self) -> Iterator[IdentityPage]:
        """Site groups of every site in scope, through SharePoint REST (certificate only)."""
        site_ids = self.sites if self.sites is not None else \
            sorted(str(s["id"]) for s in self.client.sites())
        for site_id in site_ids:
            web_url = str(self.client.site(site_id).get("webUrl", ""))
            memberships: list[Membership] = []
            for group in self.client.site_groups(web_url):
                gid = str(group.get("Id", ""))
                if not gid.isdigit():
                    continue
                principal = P.group(f"{site_id}:{gid}", source="spsite")
                for entry in self.client.site_group_members(web_url, gid):
                    member = _site_member(entry)
                    if member is None:
                        log.warning("sharepoint %s: a member of site group %s on %s is not "
                                    "mapped (grants nothing)", self.name, gid, site_id)
                        continue
                    memberships.append(Membership(group=principal, member=member))
            yield IdentityPage(tuple(memberships))

    # -- identity pass -----------------------------------------------------------------------
    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        try:
            aliases: list[Alias] = []
            for user in self.client.users():
                primary = email_of(user)
                upn = user.get("userPrincipalName")
                if primary and isinstance(upn, str) and "#ext#" not in upn.lower() \
                        and P.domain_of(upn) and P.normalize_email(upn) != primary:
                    aliases.append(Alias(alias=P.user(upn), primary=P.user(primary)))
            yield IdentityPage(aliases=tuple(aliases))
            for group in self.client.groups():
                gid = str(group.get("id", ""))
                if not gid:
                    continue
                principal = P.group(gid, source="entra")
                memberships: list[Membership] = []
                for member in self.client.transitive_members(gid):
                    if member.get("@odata.type") != "#microsoft.graph.user":
                        continue  # nested groups are already flattened; devices read nothing
                    address = email_of(member)
                    if address:
                        memberships.append(Membership(group=principal, member=P.user(address)))
                yield IdentityPage(tuple(memberships))
            if self.client.credential.certificate:
                yield from self._site_group_pages()
        except SourceError as exc:
            yield IdentityPage(failures=(Failure("groups", f"groups could not be read ({exc})",
                                                 scope="identities", transient=True),))


def _site_member(entry: JsonObject) -> str | None:
    """A SharePoint REST site-group member as a principal (users and Entra groups)."""
    kind = entry.get("PrincipalType")
    login = str(entry.get("LoginName", ""))
    if kind == 1:
        for candidate in (entry.get("Email"), login.removeprefix(MEMBER_CLAIM)
                          if login.lower().startswith(MEMBER_CLAIM) else None):
            if isinstance(candidate, str) and P.domain_of(candidate) and "#ext#" not in \
                    candidate.lower():
                return P.user(candidate)
        return None
    if kind == 4 and "|" in login:
        gid = login.rsplit("|", 1)[1]
        if gid and not gid.endswith("_o") and "spo-grid-all-users" not in login:
            return P.group(gid, source="entra")
    return None


def _new_state(phase: str) -> JsonObject:
    return {"v": _CURSOR_VERSION, "phase": phase, "todo": None, "at": None, "links": {},
            "old": {}, "items": {}, "acls": {}, "folders": {}}


def _dump(state: JsonObject) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _parse_cursor(cursor: str) -> JsonObject:
    try:
        state = json.loads(cursor)
    except ValueError:
        raise CursorExpired("not a sharepoint cursor (not JSON)") from None
    if not isinstance(state, dict) or state.get("v") != _CURSOR_VERSION \
            or state.get("phase") not in ("list", "inc", "feed", "perm") \
            or not isinstance(state.get("links"), dict) \
            or not isinstance(state.get("items"), dict) \
            or not isinstance(state.get("acls"), dict) \
            or not isinstance(state.get("old"), dict) \
            or not isinstance(state.get("folders", {}), dict) \
            or not (state.get("todo") is None or isinstance(state.get("todo"), list)) \
            or not (state.get("at") is None or isinstance(state.get("at"), str)):
        raise CursorExpired("not a sharepoint cursor of this version")
    return state
