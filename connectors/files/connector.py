"""Files connector: documents from a folder tree, ACLs from `.access.json` per folder."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field

from connectors.base import (
    Capabilities,
    ConnectorFactory,
    ConnectorOptions,
    ContentPage,
    DocumentPage,
    Failure,
    IdentityPage,
    PermissionPage,
    Upsert,
)
from connectors.files import access, extract
from connectors.files.extract import NoText
from core.errors import ConfigError, CursorExpired, MalformedDocument
from core.models import Alias, Document, Membership, make_document


@dataclass(frozen=True)
class _Entry:
    rel: str
    path: Path
    access: access.FolderAccess


@dataclass
class _Listing:
    entries: list[_Entry] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Page:
    entries: list[_Entry]
    failures: tuple[Failure, ...]
    warnings: tuple[str, ...]
    cursor: str | None


def _regular_or_unknown(path: Path) -> bool:
    """False for a FIFO, device or socket; True for a regular file and for one that cannot be
    stat'ed (reading it then fails and is reported as that document's failure)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return True


# Pages start small and double up to `page_size`: the pipelined sync embeds a page while the
# next one is read and extracted, and nothing overlaps the reading of the first page, so a
# small first page lets a small tree (the whole Acme tenant is one 64-document page) start
# embedding after 8 documents instead of after all of them.
FIRST_PAGE = 8


class FilesOptions(ConnectorOptions):
    root: str = Field(min_length=1)  # relative to the config file's folder
    page_size: int = Field(default=64, ge=1, strict=True)  # most documents a page (one cursor each)


def _after(cursor: str) -> str:
    """The relative path a content or permission cursor resumes after."""
    try:
        saved = json.loads(cursor)
    except ValueError:
        raise CursorExpired("not a files cursor (not JSON)") from None
    after = saved.get("after") if isinstance(saved, dict) else None
    if not isinstance(after, str):
        raise CursorExpired("not a files cursor (no 'after' path)")
    return after


class FilesConnector:
    kind = "files"
    # A folder walk lists everything in scope every time: its "change feed" is the full
    # listing, so every content pass is an enumeration that also finds what vanished.
    capabilities = Capabilities(complete_listing=True, identities_each_pass=True)
    complete_listing = True  # v1 name, read by wrappers written against it
    options_model = FilesOptions

    def __init__(self, name: str, root: Path, page_size: int = 64) -> None:
        self.name = name
        self.root = root
        self.page_size = page_size

    @classmethod
    def from_options(cls, name: str, options: ConnectorOptions,
                     base_dir: Path) -> FilesConnector:
        if not isinstance(options, FilesOptions):
            raise TypeError(f"files connector options must be FilesOptions, not "
                            f"{type(options).__name__}")
        return cls(name, (base_dir / Path(options.root).expanduser()).resolve(),
                   options.page_size)

    # -- listing ---------------------------------------------------------------------------
    def check_root(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"connector {self.name!r}: root folder not found: {self.root}")

    def _walk(self) -> _Listing:
        """Every supported file under the root, sorted by relative path, with folder access."""
        self.check_root()
        listing = _Listing()
        folder_access: dict[str, access.FolderAccess] = {}

        def unlistable(exc: OSError) -> None:
            # os.walk skips a folder it cannot list: its documents are not "vanished".
            rel = self._rel(Path(exc.filename)) if exc.filename else ""
            listing.failures.append(Failure(
                f"{rel}/" if rel else "/", f"could not list folder ({exc.strerror or exc})",
                scope="listing", unlisted_prefix=self.doc_id(f"{rel}/" if rel else ""),
                transient=True))

        for dirpath, dirnames, filenames in os.walk(self.root, onerror=unlistable,
                                                    followlinks=False):
            folder = Path(dirpath)
            rel_dir = self._rel(folder)
            parent = (folder_access.get(rel_dir.rpartition("/")[0], access.FolderAccess())
                      if rel_dir else access.FolderAccess())
            here = access.child_access(parent, folder, rel_dir, self.root, self.name)
            if here.broken and not parent.broken:
                listing.failures.append(Failure(f"{rel_dir}/" if rel_dir else "/", here.broken,
                                                scope="acl"))
            folder_access[rel_dir] = here
            where = f"{rel_dir}/" if rel_dir else ""
            listing.warnings.extend(f"{where}{w}" for w in access.near_misses(sorted(filenames)))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and not (folder / d).is_symlink())
            for filename in sorted(filenames):
                path = folder / filename
                if filename.startswith(".") or path.is_symlink():
                    continue
                if path.suffix.lower() not in extract.EXTRACTORS:
                    continue
                if not _regular_or_unknown(path):
                    # Reading a FIFO blocks and a device never ends: not a document.
                    listing.warnings.append(f"{where}{filename} is not a regular file "
                                            "(not indexed)")
                    continue
                listing.entries.append(_Entry(f"{where}{filename}", path, here))
        listing.entries.sort(key=lambda e: e.rel)
        return listing

    def _rel(self, folder: Path) -> str:
        rel = folder.relative_to(self.root).as_posix()
        return "" if rel == "." else rel

    def _pages(self, checkpoint: str | None) -> Iterator[_Page]:
        listing = self._walk()
        entries = listing.entries
        failures, warnings = tuple(listing.failures), tuple(listing.warnings)
        after = _after(checkpoint) if checkpoint else None
        if after is not None:
            entries = [e for e in entries if e.rel > after]
            # ACL failures were reported by the run that made the checkpoint; listing failures
            # go again, since a resumed run must also keep the documents it cannot list.
            failures = tuple(f for f in failures if f.scope == "listing")
        if not entries:
            yield _Page([], failures, warnings, None)
            return
        start, size = 0, min(FIRST_PAGE, self.page_size)
        while start < len(entries):
            page = entries[start:start + size]
            last = start + size >= len(entries)
            cursor = None if last else json.dumps({"after": page[-1].rel})
            first = start == 0
            yield _Page(page, failures if first else (), warnings if first else (), cursor)
            start, size = start + size, min(2 * size, self.page_size)

    # -- protocol --------------------------------------------------------------------------
    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        for page in self._pages(cursor):
            docs: list[Document] = []
            failed = list(page.failures)
            for entry in page.entries:
                try:
                    doc = self._document(entry)
                except NoText as exc:
                    failed.append(self._failure(entry, str(exc), transient=False))
                    continue
                except (MalformedDocument, OSError) as exc:
                    # I/O errors and parser crashes may pass: keep the last good text a while.
                    failed.append(self._failure(entry, str(exc), transient=True))
                    continue
                docs.append(doc)
            yield ContentPage(tuple(Upsert(d) for d in docs), tuple(failed), page.cursor,
                              page.warnings)

    def documents(self, checkpoint: str | None = None) -> Iterator[DocumentPage]:
        """v1 shape of content(), for wrappers written against the old protocol."""
        for page in self.content(checkpoint):
            yield DocumentPage(page.documents, page.failures, page.cursor, page.warnings)

    def _failure(self, entry: _Entry, reason: str, *, transient: bool) -> Failure:
        return Failure(entry.rel, reason, self.doc_id(entry.rel), entry.access.acl(),
                       transient=transient)

    def permissions(self, checkpoint: str | None = None) -> Iterator[PermissionPage]:
        for page in self._pages(checkpoint):
            acls = tuple((self.doc_id(e.rel), e.access.acl()) for e in page.entries)
            yield PermissionPage(acls, page.failures, page.cursor, page.warnings)

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        """One page: the root's `.groups.json` and `.aliases.json`."""
        self.check_root()
        memberships: list[Membership] = []
        aliases: list[Alias] = []
        failures: list[Failure] = []
        for name in (access.GROUPS_FILE, access.ALIASES_FILE):
            try:
                data = access.read_control_file(self.root / name, self.root)
                if data is None:
                    continue
                if name == access.GROUPS_FILE:
                    memberships.extend(access.parse_groups(data, self.name))
                else:
                    aliases.extend(access.parse_aliases(data))
            except access.UnreadableControlFile as exc:
                failures.append(Failure(name, f"{name} {exc}", scope="identities"))
            except MalformedDocument as exc:
                failures.append(Failure(name, str(exc), scope="identities"))
        yield IdentityPage(tuple(memberships), tuple(aliases), tuple(failures))

    # -- mapping ---------------------------------------------------------------------------
    def doc_id(self, rel: str) -> str:
        return f"{self.name}:{rel}"

    def _document(self, entry: _Entry) -> Document:
        title, sections = extract.EXTRACTORS[entry.path.suffix.lower()](entry.path)
        if not sections:
            raise NoText(f"{entry.rel}: no text")
        stat = entry.path.stat()
        return make_document(
            doc_id=self.doc_id(entry.rel),
            title=title or extract.title_from_name(entry.path),
            url=entry.path.as_uri(),
            sections=sections,
            acl=entry.access.acl(),
            updated=datetime.fromtimestamp(stat.st_mtime, tz=UTC),
            metadata={"format": entry.path.suffix.lower().lstrip(".")},
        )


_FACTORY: ConnectorFactory = FilesConnector  # mypy checks the entry point's class is a factory
