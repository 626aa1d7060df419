"""Files connector: documents from a folder tree, ACLs from `.access.json` per folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.base import DocumentPage, Failure, IdentitySnapshot, PermissionPage
from connectors.files import access, extract
from core.errors import ConfigError, MalformedDocument
from core.models import Document, make_document


@dataclass(frozen=True)
class _Entry:
    rel: str
    path: Path
    access: access.FolderAccess


class FilesConnector:
    kind = "files"

    def __init__(self, name: str, root: Path, page_size: int = 64) -> None:
        self.name = name
        self.root = root
        self.page_size = page_size

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], base_dir: Path) -> FilesConnector:
        unknown = sorted(set(options) - {"root", "page_size"})
        if unknown:
            raise ConfigError(f"connector {name!r}: unknown key {unknown[0]!r} for kind 'files'")
        root = options.get("root")
        if not isinstance(root, str) or not root:
            raise ConfigError(f"connector {name!r}: 'root' (a folder path) is required")
        page_size = options.get("page_size", 64)
        if not isinstance(page_size, int) or page_size < 1:
            raise ConfigError(f"connector {name!r}: 'page_size' must be a positive integer")
        return cls(name, (base_dir / Path(root).expanduser()).resolve(), page_size)

    # -- listing ---------------------------------------------------------------------------
    def check_root(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"connector {self.name!r}: root folder not found: {self.root}")

    def _walk(self) -> tuple[list[_Entry], list[Failure]]:
        """Every supported file under the root, sorted by relative path, with folder access."""
        self.check_root()
        entries: list[_Entry] = []
        failures: list[Failure] = []
        folder_access: dict[str, access.FolderAccess] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            folder = Path(dirpath)
            rel_dir = folder.relative_to(self.root).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            parent = (folder_access.get(rel_dir.rpartition("/")[0], access.FolderAccess())
                      if rel_dir else access.FolderAccess())
            here = access.child_access(parent, folder, rel_dir)
            if here.broken and not parent.broken:
                failures.append(Failure(f"{rel_dir}/" if rel_dir else "/", here.broken))
            folder_access[rel_dir] = here
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                                 and not (folder / d).is_symlink())
            for filename in sorted(filenames):
                path = folder / filename
                if filename.startswith(".") or path.is_symlink():
                    continue
                if path.suffix.lower() in extract.EXTRACTORS:
                    rel = f"{rel_dir}/{filename}" if rel_dir else filename
                    entries.append(_Entry(rel, path, here))
        entries.sort(key=lambda e: e.rel)
        return entries, failures

    def _pages(self, checkpoint: str | None
               ) -> Iterator[tuple[list[_Entry], list[Failure], str | None]]:
        entries, failures = self._walk()
        after = json.loads(checkpoint)["after"] if checkpoint else None
        if after is not None:
            entries = [e for e in entries if e.rel > after]
            failures = []  # reported by the run that made the checkpoint
        if not entries:
            yield [], failures, None
            return
        for start in range(0, len(entries), self.page_size):
            page = entries[start:start + self.page_size]
            last = start + self.page_size >= len(entries)
            cursor = None if last else json.dumps({"after": page[-1].rel})
            yield page, failures if start == 0 else [], cursor

    # -- protocol --------------------------------------------------------------------------
    def documents(self, checkpoint: str | None = None) -> Iterator[DocumentPage]:
        for entries, failures, cursor in self._pages(checkpoint):
            docs: list[Document] = []
            failed = list(failures)
            for entry in entries:
                try:
                    docs.append(self._document(entry))
                except (MalformedDocument, OSError) as exc:
                    failed.append(Failure(entry.rel, str(exc), self.doc_id(entry.rel),
                                          entry.access.acl()))
            yield DocumentPage(tuple(docs), tuple(failed), cursor)

    def permissions(self, checkpoint: str | None = None) -> Iterator[PermissionPage]:
        for entries, failures, cursor in self._pages(checkpoint):
            acls = tuple((self.doc_id(e.rel), e.access.acl()) for e in entries)
            yield PermissionPage(acls, tuple(failures), cursor)

    def identities(self) -> IdentitySnapshot:
        self.check_root()
        memberships, aliases, failures = [], [], []
        for name, parse, sink in ((access.GROUPS_FILE, access.parse_groups, memberships),
                                  (access.ALIASES_FILE, access.parse_aliases, aliases)):
            path = self.root / name
            if not path.is_file():
                continue
            try:
                sink.extend(parse(path))  # type: ignore[operator]
            except (MalformedDocument, OSError) as exc:
                failures.append(Failure(name, str(exc)))
        return IdentitySnapshot(tuple(memberships), tuple(aliases), tuple(failures))

    # -- mapping ---------------------------------------------------------------------------
    def doc_id(self, rel: str) -> str:
        return f"{self.name}:{rel}"

    def _document(self, entry: _Entry) -> Document:
        title, sections = extract.EXTRACTORS[entry.path.suffix.lower()](entry.path)
        if not sections:
            raise MalformedDocument(f"{entry.rel}: no text")
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
