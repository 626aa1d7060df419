"""Google Drive (My Drives and shared drives) with effective read access, through a service
account with domain-wide delegation.

Scope: one *stream* per My Drive (`my_drives`: every active user of the Directory, or the
listed addresses), listed as its owner (`'me' in owners`: a file is indexed once, in its
owner's stream; files owned outside the scope are not indexed at all), and one per shared
drive (`shared_drives`), listed as one of its members (the delegated admin when a member who
can share, else the highest-ranked member of the domain).

Who may read a file (ACL_APIS 3 and 5.3), from `permissions.list` (read as the stream's user,
with `permissionDetails` on shared drives: drive members arrive there as inherited `member`
entries, folder shares as inherited `file` entries; in a My Drive a folder's shares appear in
each child's list):
- `user` -> `user:<email>`; `group` -> `group:google:<email>` (expanded by the identity pass);
- `domain` -> `domain:<domain>` and `anyone` -> `everyone` only when `allowFileDiscovery` is
  true: "anyone with the link" grants nothing unless `domain_links = "domain"` /
  `anyone_links = "everyone"`;
- `deleted` grantees and expired (`expirationTime`) permissions grant nothing; every role reads.
- A permission of a type the connector does not know, or a list it cannot read (a reader
  member of a shared drive may not list permissions), closes the file (Acl.nobody, reported).

Content: Docs exported as HTML (headings kept) or text, Sheets as CSV, Slides as text;
pdf/docx/pptx/xlsx/txt/md/html downloaded within `max_file_bytes`; trashed files, folders and
shortcuts are not indexed (a shortcut's target is indexed in its own stream when in scope).
Citations use `webViewLink`.

Incremental: per stream a `changes.getStartPageToken` taken before its listing, then
`changes.list` (removals included). A file that left its stream (removed, trashed, moved, a
new owner) is deleted; a changed file's permissions are re-read: same content key
(modifiedTime, checksum, size, name) and a new ACL is an AclUpdate (no download). A changed
folder re-reads the ACLs of everything under it (Drive reports a folder's sharing change on the
folder only). An invalid page token raises CursorExpired: the pipeline re-enumerates.
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
from typing import Literal

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
from connectors.extract import NoText, extract_bytes, format_of, supported
from connectors.extract.limits import Limits
from connectors.gdrive.client import DriveClient, JsonObject, ServiceAccountKey
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
)
from core.models import Alias, Membership, make_document

log = logging.getLogger(__name__)

_CURSOR_VERSION = 1
FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
DOC = "application/vnd.google-apps.document"
SHEET = "application/vnd.google-apps.spreadsheet"
SLIDES = "application/vnd.google-apps.presentation"
ROLES = frozenset({"owner", "organizer", "fileOrganizer", "writer", "commenter", "reader"})
SHARERS = ("organizer", "fileOrganizer", "writer")  # best first: may list permissions
BINARY_SUFFIX = {
    "application/pdf": ".pdf", "text/plain": ".txt", "text/markdown": ".md",
    "text/html": ".html",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}


class GoogleDriveOptions(HttpConnectorOptions):
    service_account_file: str | None = Field(default=None, min_length=1)  # the JSON key
    # or: the name of an environment variable holding the key file's JSON (containers)
    service_account_json_env: str | None = Field(default=None, min_length=1)
    delegated_admin: str = Field(min_length=3)  # impersonated for the Directory API
    domain: str = Field(min_length=3)  # the Workspace primary domain
    shared_drives: bool = True
    my_drives: Literal["all"] | list[str] = "all"
    api_endpoint: str | None = None  # e.g. an emulator; default Google's endpoints
    domain_links: Literal["none", "domain"] = "none"  # "anyone at the domain with the link"
    anyone_links: Literal["none", "everyone"] = "none"  # "anyone with the link"
    docs_format: Literal["html", "text"] = "html"
    page_size: int = Field(default=100, ge=1, le=1000)
    max_file_bytes: int = Field(default=64 * 1024 * 1024, ge=1)

    @field_validator("delegated_admin")
    @classmethod
    def _admin(cls, value: str) -> str:
        if P.domain_of(value) is None:
            raise ValueError("must be an email address")
        return P.normalize_email(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not P.is_valid(P.domain(value)):
            raise ValueError(f"{value!r} is not a DNS domain")
        return P.fold(value.strip())

    @field_validator("my_drives")
    @classmethod
    def _my_drives(cls, value: Literal["all"] | list[str]) -> Literal["all"] | list[str]:
        if isinstance(value, list):
            bad = [v for v in value if not isinstance(v, str) or P.domain_of(v) is None]
            if bad:
                raise ValueError(f"{bad[0]!r} is not an email address")
            return sorted({P.normalize_email(v) for v in value})
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("https://") or "@" in value.split("/")[2]:
            raise ValueError("must be an https URL without credentials in it")
        return value.rstrip("/")


@dataclass(frozen=True)
class Stream:
    key: str  # "u:<email>" (a My Drive) or "d:<drive id>" (a shared drive)
    subject: str  # the user impersonated to read it
    drive_id: str | None = None
    name: str = ""


@dataclass
class _Pass(PassNotes):
    streams: dict[str, Stream] = field(default_factory=dict)


def _acl_key(acl: Acl) -> str:
    return hashlib.sha256(acl.key().encode()).hexdigest()[:16]


def _content_key(item: JsonObject) -> str:
    return "|".join(str(item.get(k, "")) for k in ("modifiedTime", "md5Checksum", "size",
                                                    "name", "mimeType"))


def _expired(perm: JsonObject, now: datetime) -> bool:
    value = perm.get("expirationTime")
    if value is None:
        return False
    if not isinstance(value, str):
        return True
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return True  # unreadable: fail closed
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= now


class GoogleDriveConnector:
    kind = "gdrive"
    capabilities = Capabilities(change_feed=True, identities_each_pass=True)
    options_model = GoogleDriveOptions

    def __init__(self, name: str, client: DriveClient, *, shared_drives: bool = True,
                 my_drives: Literal["all"] | list[str] = "all",
                 domain_links: Literal["none", "domain"] = "none",
                 anyone_links: Literal["none", "everyone"] = "none",
                 docs_format: Literal["html", "text"] = "html",
                 limits: Limits | None = None) -> None:
        self.name = name
        self.client = client
        self.shared_drives = shared_drives
        self.my_drives = my_drives
        self.domain_links = domain_links
        self.anyone_links = anyone_links
        self.docs_format = docs_format
        self.limits = limits or Limits(max_bytes=client.max_bytes)
        self.permission_calls = 0

    @classmethod
    def from_options(cls, name: str, options: ConnectorOptions, base_dir: Path,
                     environ: Mapping[str, str] | None = None) -> GoogleDriveConnector:
        if not isinstance(options, GoogleDriveOptions):
            raise TypeError(f"gdrive options must be GoogleDriveOptions, not "
                            f"{type(options).__name__}")
        env = os.environ if environ is None else environ
        if (options.service_account_file is None) == (options.service_account_json_env is None):
            raise ConfigError(f"connector {name!r}: exactly one of 'service_account_file' and "
                              "'service_account_json_env' is required")
        if options.service_account_file is not None:
            path = (base_dir / Path(options.service_account_file).expanduser()).resolve()
            where = f"service account file {path}"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"connector {name!r}: {where}: cannot be read "
                                  f"({type(exc).__name__})") from None
        else:
            variable = str(options.service_account_json_env)
            where = f"the service account key in {variable}"
            text = env.get(variable, "")
            if not text.strip():
                raise ConfigError(f"connector {name!r}: 'service_account_json_env' names "
                                  f"{variable}, which is not set")
        try:
            key = ServiceAccountKey.parse(text)
        except ValueError as exc:
            raise ConfigError(f"connector {name!r}: {where}: {exc}") from None
        ca_bundle = options.ca_bundle
        if ca_bundle is not None:
            ca_bundle = str((base_dir / Path(ca_bundle).expanduser()).resolve())
        policy = options.model_copy(update={"ca_bundle": ca_bundle}).http_policy(name)
        client = DriveClient(policy, key, delegated_admin=options.delegated_admin,
                             domain=options.domain, api_endpoint=options.api_endpoint,
                             page_size=options.page_size, max_bytes=options.max_file_bytes)
        return cls(name, client, shared_drives=options.shared_drives,
                   my_drives=options.my_drives, domain_links=options.domain_links,
                   anyone_links=options.anyone_links, docs_format=options.docs_format)

    @property
    def http_stats(self) -> HttpStats:
        return self.client.policy.stats

    def doc_id(self, stream: str, file_id: str) -> str:
        return f"{self.name}:{stream}:{file_id}"

    # -- scope -------------------------------------------------------------------------------
    def _streams(self, run: _Pass) -> list[Stream]:
        """Every stream in scope, sorted by key (a resumed pass walks them in the same
        order). A shared drive nobody of the domain can be impersonated for is reported."""
        out: list[Stream] = []
        if self.my_drives == "all":
            emails = sorted(P.normalize_email(str(u["primaryEmail"]))
                            for u in self.client.users()
                            if isinstance(u.get("primaryEmail"), str) and not u.get("suspended"))
        else:
            emails = list(self.my_drives)
        out.extend(Stream(f"u:{e}", e) for e in emails)
        if self.shared_drives:
            for drive in self.client.shared_drives():
                did = str(drive.get("id", ""))
                if not did:
                    continue
                subject = self._drive_subject(did, run)
                if subject is None:
                    continue
                out.append(Stream(f"d:{did}", subject, did, str(drive.get("name", did))))
        run.streams = {s.key: s for s in out}
        return sorted(out, key=lambda s: s.key)

    def _drive_subject(self, drive_id: str, run: _Pass) -> str | None:
        try:
            members = self.client.drive_members(drive_id)
        except SourceError as exc:
            run.failures.append(Failure(f"drive {drive_id}", f"shared drive {drive_id}: its "
                                        f"members could not be read ({exc})", scope="listing",
                                        unlisted_prefix=f"{self.name}:d:{drive_id}:"))
            return None
        ranked: list[tuple[int, str]] = []
        for member in members:
            address = member.get("emailAddress")
            if member.get("type") != "user" or not isinstance(address, str) \
                    or member.get("deleted") or P.domain_of(address) != self.client.domain:
                continue
            role = str(member.get("role", ""))
            rank = SHARERS.index(role) if role in SHARERS else len(SHARERS)
            email = P.normalize_email(address)
            if email == self.client.delegated_admin and rank < len(SHARERS):
                return email
            ranked.append((rank, email))
        if not ranked:
            run.failures.append(Failure(f"drive {drive_id}", f"shared drive {drive_id}: no "
                                        "member of the domain to read it as", scope="listing",
                                        unlisted_prefix=f"{self.name}:d:{drive_id}:"))
            return None
        return min(ranked)[1]

    def _in_stream(self, stream: Stream, item: JsonObject) -> bool:
        if stream.drive_id is not None:
            return item.get("driveId") == stream.drive_id
        if item.get("driveId"):
            return False
        owners = item.get("owners")
        return isinstance(owners, list) and len(owners) == 1 and isinstance(owners[0], dict) \
            and P.normalize_email(str(owners[0].get("emailAddress", ""))) == stream.subject

    # -- ACL -----------------------------------------------------------------------------------
    def readers(self, perms: list[JsonObject], run: PassNotes) -> Acl:
        now = datetime.now(UTC)
        out: set[str] = set()
        for perm in perms:
            kind = perm.get("type")
            if kind not in ("user", "group", "domain", "anyone"):
                return Acl.nobody(f"a permission of type {str(kind)[:40]!r}, which Clearance "
                                  "does not evaluate")
            if perm.get("deleted") is True or _expired(perm, now):
                continue
            role = perm.get("role")
            if role not in ROLES:
                run.warn(f"role:{role}", f"a permission with role {str(role)[:40]!r} grants "
                         "nothing through Clearance")
                continue
            discoverable = perm.get("allowFileDiscovery") is True
            if kind in ("user", "group"):
                address = perm.get("emailAddress")
                if not isinstance(address, str) or P.domain_of(address) is None:
                    run.warn(f"noaddress:{perm.get('id')}", f"a {kind} permission without an "
                             "email address grants nothing (fail closed)")
                    continue
                out.add(P.user(address) if kind == "user"
                        else P.group(P.normalize_email(address), source="google"))
            elif kind == "domain":
                name = perm.get("domain")
                principal = P.domain(str(name)) if isinstance(name, str) else ""
                if not P.is_valid(principal):
                    run.warn(f"domain:{name}", "a domain permission without a domain grants "
                             "nothing")
                elif discoverable or self.domain_links == "domain":
                    out.add(principal)
            elif discoverable or self.anyone_links == "everyone":
                out.add(P.EVERYONE)
        return Acl.single(out)

    def acl(self, stream: Stream, item: JsonObject, run: PassNotes) -> tuple[Acl, str | None]:
        fid = str(item["id"])
        self.permission_calls += 1
        try:
            perms = self.client.permissions(stream.subject, fid)
        except SourceError as exc:
            problem = f"file {fid}: permissions could not be read as {stream.subject} ({exc})"
            return Acl.nobody(problem), problem
        acl = self.readers(perms, run)
        return acl, (f"file {fid}: {acl.unknown_reason}" if acl.unknown_reason else None)

    # -- documents -----------------------------------------------------------------------------
    def _format(self, item: JsonObject) -> tuple[str, str | None] | None:
        """(suffix for the extractor, export mime type or None) of a file to index."""
        mime = str(item.get("mimeType", ""))
        if mime == DOC:
            return (".html", "text/html") if self.docs_format == "html" else \
                (".txt", "text/plain")
        if mime == SHEET:
            return ".txt", "text/csv"
        if mime == SLIDES:
            return ".txt", "text/plain"
        if mime.startswith("application/vnd.google-apps."):
            return None  # folders, shortcuts, forms, drawings...
        name = str(item.get("name", ""))
        if supported(name):
            return format_of(name), None
        suffix = BINARY_SUFFIX.get(mime)
        return (suffix, None) if suffix else None

    def _wanted(self, stream: Stream, item: JsonObject) -> bool:
        return isinstance(item.get("id"), str) and item.get("trashed") is not True \
            and self._in_stream(stream, item) and self._format(item) is not None

    def _document(self, stream: Stream, item: JsonObject, acl: Acl) -> Upsert | Failure:
        fid = str(item["id"])
        name = str(item.get("name") or fid)
        doc_id = self.doc_id(stream.key, fid)
        fmt = self._format(item)
        assert fmt is not None
        suffix, export = fmt
        size = item.get("size")
        if isinstance(size, str) and size.isdigit() and int(size) > self.limits.max_bytes:
            return Failure(fid, f"{name}: {size} bytes, more than the {self.limits.max_bytes} "
                           "allowed", doc_id, acl)
        try:
            data = self.client.export(stream.subject, fid, export) if export else \
                self.client.download(stream.subject, fid)
            sections = list(extract_bytes(data, name, fmt=suffix, limits=self.limits).sections)
        except NoText as exc:
            return Failure(fid, str(exc), doc_id, acl)
        except (SourceForbidden, SourceNotFound) as exc:
            return Failure(fid, f"{name}: could not be read ({exc})", doc_id, acl)
        except SourceError as exc:
            return Failure(fid, f"{name}: could not be downloaded ({exc})", doc_id, acl,
                           transient=True)
        except MalformedDocument as exc:
            return Failure(fid, str(exc), doc_id, acl, transient=True)
        updated = None
        if isinstance(item.get("modifiedTime"), str):
            try:
                updated = datetime.fromisoformat(item["modifiedTime"].replace("Z", "+00:00"))
            except ValueError:
                updated = None
        metadata = {"stream": stream.key, "drive": stream.drive_id or "",
                    "drive_name": stream.name, "owner": stream.subject
                    if stream.drive_id is None else "", "mime_type": str(item.get("mimeType"))}
        return Upsert(make_document(doc_id, name, str(item.get("webViewLink", "")), sections,
                                    acl, updated, metadata))

    def _take(self, stream: Stream, item: JsonObject, state: JsonObject, run: _Pass,
              ops: list[Operation], *, incremental: bool) -> None:
        """One live, wanted file: its ACL, then an upsert, an ACL update or nothing."""
        items: dict[str, list[str]] = state["items"]
        doc_id = self.doc_id(stream.key, str(item["id"]))
        acl, problem = self.acl(stream, item, run)
        if problem:
            run.failures.append(Failure(str(item["id"]), problem, scope="acl"))
        akey = _acl_key(acl)
        state["acls"].setdefault(akey, acl.to_json())
        ckey = _content_key(item)
        known = items.get(doc_id)
        if incremental and known is not None and known[1] == ckey:
            if known[0] != akey:
                ops.append(AclUpdate(doc_id, acl))
            items[doc_id] = [akey, ckey]
            return
        got = self._document(stream, item, acl)
        if isinstance(got, Failure):
            run.failures.append(got)
        else:
            ops.append(got)
        items[doc_id] = [akey, ckey]

    def _drop(self, doc_id: str, state: JsonObject, ops: list[Operation]) -> None:
        if doc_id in state["items"]:
            del state["items"][doc_id]
            ops.append(Delete(doc_id))

    def _gc_acls(self, state: JsonObject) -> None:
        used = {v[0] for v in state["items"].values()}
        for stale in [k for k in state["acls"] if k not in used]:
            del state["acls"][stale]

    # -- content pass --------------------------------------------------------------------------
    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        state: JsonObject = _parse_cursor(cursor) if cursor else _new_state("list")
        if state["phase"] == "feed":  # a new incremental pass from the stored page tokens
            state = {**_new_state("inc"), "old": state["tokens"], "items": state["items"],
                     "acls": state["acls"]}
        run = _Pass()
        streams = self._streams(run)
        if state["todo"] is None:
            todo = [s.key for s in streams]
            state["todo"] = todo
            gone = sorted(set(state["old"]) - set(todo))
            ops: list[Operation] = []
            for key in gone:  # streams no longer in scope: their documents leave the index
                prefix = f"{self.name}:{key}:"
                for doc_id in sorted(d for d in state["items"] if d.startswith(prefix)):
                    self._drop(doc_id, state, ops)
            failures, said = run.drain()
            if ops or failures or said:
                self._gc_acls(state)
                yield ContentPage(tuple(ops), failures, _dump(state), said)
        while state["todo"]:
            stream = run.streams.get(state["todo"][0])
            if stream is None:  # vanished mid-pass: the next pass deletes its documents
                state["todo"].pop(0)
                state["at"], state["how"] = None, None
                continue
            follow = state["how"] == "changes" or (
                state["how"] is None and stream.key in state["old"])
            if follow:
                yield from self._follow(stream, state, run)
            else:
                yield from self._enumerate(stream, state, run)
        if state["phase"] != "feed":
            state["phase"] = "feed"
            failures, said = run.drain()
            yield ContentPage(failures=failures, cursor=_dump(state), warnings=said)

    def _finish_stream(self, stream: Stream, state: JsonObject, token: str) -> None:
        state["tokens"][stream.key] = token
        state["todo"].pop(0)
        state["at"], state["how"], state["start"] = None, None, None
        if not state["todo"]:
            state["phase"] = "feed"

    def _enumerate(self, stream: Stream, state: JsonObject, run: _Pass) -> Iterator[ContentPage]:
        if state["how"] != "list":
            # The feed starts before the listing: nothing changed during it is missed.
            state["start"] = self.client.start_token(stream.subject, stream.drive_id)
            state["how"], state["at"] = "list", None
        for entries, following in self.client.list_files(stream.subject, stream.drive_id,
                                                         state["at"]):
            ops: list[Operation] = []
            for item in entries:
                if self._wanted(stream, item):
                    self._take(stream, item, state, run, ops, incremental=False)
            if following is None:
                self._finish_stream(stream, state, str(state["start"]))
            else:
                state["at"] = following
            self._gc_acls(state)
            failures, said = run.drain()
            yield ContentPage(tuple(ops), failures, _dump(state), said)

    def _follow(self, stream: Stream, state: JsonObject, run: _Pass) -> Iterator[ContentPage]:
        start = state["at"] if state["how"] == "changes" and state["at"] else \
            state["old"][stream.key]
        state["how"] = "changes"
        for entries, following, new_start in self.client.changes(stream.subject,
                                                                 stream.drive_id, start):
            ops: list[Operation] = []
            latest: dict[str, JsonObject] = {}
            for change in entries:  # a file may come more than once: the last one wins
                fid = change.get("fileId")
                if isinstance(fid, str):
                    latest.pop(fid, None)
                    latest[fid] = change
            for fid, change in latest.items():
                item = change.get("file")
                doc_id = self.doc_id(stream.key, fid)
                if change.get("removed") is True or not isinstance(item, dict):
                    self._drop(doc_id, state, ops)
                    continue
                if item.get("mimeType") == FOLDER and item.get("trashed") is not True \
                        and self._in_stream(stream, item):
                    self._recheck_under(stream, fid, state, run, ops)
                    continue
                if not self._wanted(stream, item):
                    self._drop(doc_id, state, ops)  # trashed, moved away, a new owner
                    continue
                self._take(stream, item, state, run, ops, incremental=True)
            if following is None:
                self._finish_stream(stream, state, new_start or start)
            else:
                state["at"] = following
            self._gc_acls(state)
            failures, said = run.drain()
            yield ContentPage(tuple(ops), failures, _dump(state), said)

    def _recheck_under(self, stream: Stream, folder: str, state: JsonObject, run: _Pass,
                       ops: list[Operation]) -> None:
        """A folder changed (its sharing, its place): Drive reports its descendants only when
        they change themselves, so every file under it has its ACL read again."""
        todo, seen = [folder], {folder}
        while todo:
            current = todo.pop()
            for entries, _ in self.client.list_children(stream.subject, stream.drive_id,
                                                        current):
                for item in entries:
                    fid = item.get("id")
                    if not isinstance(fid, str) or fid in seen:
                        continue
                    seen.add(fid)
                    if item.get("mimeType") == FOLDER:
                        todo.append(fid)
                    elif self._wanted(stream, item):
                        self._take(stream, item, state, run, ops, incremental=True)

    # -- permission pass -----------------------------------------------------------------------
    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        state = _parse_cursor(cursor) if cursor else _new_state("perm")
        if state["phase"] != "perm":
            raise CursorExpired("not a gdrive permission cursor")
        run = _Pass()
        streams = self._streams(run)
        if state["todo"] is None:
            state["todo"] = [s.key for s in streams]
        if not state["todo"]:
            failures, said = run.drain()
            yield PermissionPage((), failures, None, said)
            return
        while state["todo"]:
            stream = run.streams.get(state["todo"][0])
            if stream is None:
                state["todo"].pop(0)
                state["at"] = None
                continue
            for entries, following in self.client.list_files(stream.subject, stream.drive_id,
                                                             state["at"]):
                acls: list[tuple[str, Acl]] = []
                for item in entries:
                    if self._wanted(stream, item):
                        acl, problem = self.acl(stream, item, run)
                        if problem:
                            run.failures.append(Failure(str(item["id"]), problem, scope="acl"))
                        acls.append((self.doc_id(stream.key, str(item["id"])), acl))
                state["at"] = following
                if following is None:
                    state["todo"].pop(0)
                failures, said = run.drain()
                yield PermissionPage(tuple(acls), failures,
                                     _dump(state) if state["todo"] else None, said)

    # -- identity pass -------------------------------------------------------------------------
    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        """Directory groups and their members: users (and EXTERNAL addresses) by email,
        nested groups as group members (the store expands them), CUSTOMER as every active
        user of the domain; users' aliases."""
        try:
            aliases: list[Alias] = []
            everyone: list[str] = []
            for person in self.client.users():
                primary = person.get("primaryEmail")
                if not isinstance(primary, str) or P.domain_of(primary) is None:
                    continue
                if not person.get("suspended"):
                    everyone.append(P.user(primary))
                for alias in person.get("aliases") or []:
                    if isinstance(alias, str) and P.domain_of(alias) and \
                            P.normalize_email(alias) != P.normalize_email(primary):
                        aliases.append(Alias(alias=P.user(alias), primary=P.user(primary)))
            yield IdentityPage(aliases=tuple(aliases))
            for group in self.client.groups():
                email = group.get("email")
                if not isinstance(email, str) or P.domain_of(email) is None:
                    continue
                principal = P.group(P.normalize_email(email), source="google")
                memberships: set[Membership] = set()
                for member in self.client.members(email):
                    kind = member.get("type")
                    address = member.get("email")
                    if kind == "CUSTOMER":
                        memberships |= {Membership(group=principal, member=u) for u in everyone}
                    elif not isinstance(address, str) or P.domain_of(address) is None:
                        continue
                    elif kind in ("USER", "EXTERNAL"):
                        memberships.add(Membership(group=principal, member=P.user(address)))
                    elif kind == "GROUP":
                        memberships.add(Membership(group=principal, member=P.group(
                            P.normalize_email(address), source="google")))
                yield IdentityPage(tuple(sorted(memberships, key=lambda m: m.member)))
        except SourceError as exc:
            yield IdentityPage(failures=(Failure("groups", f"groups could not be read ({exc})",
                                                 scope="identities", transient=True),))


def _new_state(phase: str) -> JsonObject:
    return {"v": _CURSOR_VERSION, "phase": phase, "todo": None, "at": None, "how": None,
            "start": None, "tokens": {}, "old": {}, "items": {}, "acls": {}}


def _dump(state: JsonObject) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _parse_cursor(cursor: str) -> JsonObject:
    try:
        state = json.loads(cursor)
    except ValueError:
        raise CursorExpired("not a gdrive cursor (not JSON)") from None
    if not isinstance(state, dict) or state.get("v") != _CURSOR_VERSION \
            or state.get("phase") not in ("list", "inc", "feed", "perm") \
            or not all(isinstance(state.get(k), dict) for k in ("tokens", "old", "items",
                                                                 "acls")) \
            or not all(isinstance(v, list) and len(v) == 2 for v in state["items"].values()) \
            or state.get("how") not in (None, "list", "changes") \
            or not (state.get("todo") is None or (isinstance(state.get("todo"), list) and all(
                isinstance(t, str) for t in state["todo"]))) \
            or not (state.get("at") is None or isinstance(state.get("at"), str)) \
            or not (state.get("start") is None or isinstance(state.get("start"), str)):
        raise CursorExpired("not a gdrive cursor of this version")
    if state["phase"] == "inc" and state["how"] == "changes" and state["todo"] \
            and state["todo"][0] not in state["old"]:
        raise CursorExpired("a gdrive cursor following a stream it has no token for")
    return state
