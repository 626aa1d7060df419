"""The files connector passes the connector contract (tests/contract/connector_contract.py).

The tenant is a plain model of a folder tree (folders with their read/deny lists, documents,
groups) written to disk after every change; its reference evaluator below reads the model, not
the tree, and shares no code with connectors/files or core.acl.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from connectors.base import Connector
from connectors.files.connector import FilesConnector
from indexer.sync import Pipeline
from tests.contract.connector_contract import (
    ConnectorContract,
    ConnectorHarness,
    DiesAfter,
    Killed,
    Tenant,
    Truth,
)

pytestmark = pytest.mark.integration

ANN, BOB, CARL, DANA, EVE = ("ann@acme.example", "bob@acme.example", "carl@acme.example",
                             "dana@partner.example", "eve@acme.example")
MALLORY = "mallory@outside.example"  # reads nothing


@dataclass
class Folder:
    read: list[str] | None = None  # None: no .access.json in this folder
    deny: list[str] = field(default_factory=list)


class FilesTenant(Tenant):
    """A small company tree: everyone's handbook, HR (a group), finance (users, a deny), an
    engineering area gated twice (a group, then a domain), drafts nobody may read."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name
        self.folders: dict[str, Folder] = {
            "handbook": Folder(["domain:acme.example", "group:platform"]),
            "hr": Folder(["group:hr"]),
            "finance": Folder([f"user:{ANN}", f"user:{BOB}", "group:auditors"],
                              deny=[f"user:{BOB}"]),
            "eng": Folder(["group:eng"]),
            "eng/secret": Folder(["domain:acme.example"], deny=["group:contractors"]),
            "drafts": Folder(None),
        }
        self.texts: dict[str, str] = {}
        for folder, count in (("handbook", 3), ("hr", 2), ("finance", 2), ("eng", 2),
                              ("eng/secret", 2), ("drafts", 1)):
            for n in range(count):
                self.texts[f"{folder}/doc{n}.md"] = f"{folder} document {n}"
        self.groups: dict[str, list[str]] = {
            "hr": [f"user:{CARL}"],
            "eng": [f"user:{ANN}", "group:platform"],
            "platform": [f"user:{BOB}", f"user:{DANA}"],
            "contractors": [f"user:{DANA}"],
            "auditors": [],
        }
        self.groups_broken = False
        self.write()

    # -- the source on disk --------------------------------------------------------------------
    def write(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        for rel, folder in self.folders.items():
            (self.root / rel).mkdir(parents=True, exist_ok=True)
            if folder.read is not None:
                (self.root / rel / ".access.json").write_text(
                    json.dumps({"read": folder.read, "deny": folder.deny}), encoding="utf-8")
        for rel, text in self.texts.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"# {rel}\n\n{text}, {self.marker}.\n", encoding="utf-8")
        groups = "{not json" if self.groups_broken else json.dumps(self.groups)
        (self.root / ".groups.json").write_text(groups, encoding="utf-8")

    # -- reference evaluator ------------------------------------------------------------------
    @property
    def users(self) -> Sequence[str]:
        return (ANN, BOB, CARL, DANA, EVE, MALLORY)

    def _groups_of(self, email: str) -> set[str]:
        held = {f"user:{email}"}
        changed = True
        while changed:  # nesting: a member of a member group is a member
            changed = False
            for group, members in self.groups.items():
                if f"group:{group}" not in held and held & set(members):
                    held.add(f"group:{group}")
                    changed = True
        return held

    def _held(self, email: str) -> set[str]:
        return self._groups_of(email) | {"everyone", f"domain:{email.split('@')[1]}"}

    def _readable(self, rel: str, held: set[str]) -> bool:
        parts = rel.split("/")[:-1]
        chain = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        found = [self.folders[f] for f in chain if f in self.folders
                 and self.folders[f].read is not None]
        if not found:
            return False  # no .access.json above: nobody
        known = ("user:", "group:", "domain:")
        for folder in found:
            for p in [*(folder.read or []), *folder.deny]:
                if p != "everyone" and not p.startswith(known):
                    return False  # a principal nobody can be mapped to: closed
        if any(held & set(f.deny) for f in found):
            return False
        return all(held & set(f.read or []) for f in found)

    def truth(self) -> Truth:
        out = {}
        for email in self.users:
            held = self._held(email)
            out[email] = frozenset(f"{self.name}:{rel}" for rel in self.texts
                                   if self._readable(rel, held))
        return out

    def doc_ids(self) -> frozenset[str]:
        return frozenset(f"{self.name}:{rel}" for rel in self.texts)

    # -- changes between syncs ----------------------------------------------------------------
    def edit_content(self) -> None:
        self.texts["handbook/doc0.md"] = "handbook document zero, rewritten"
        self.texts["eng/doc1.md"] = "engineering notes, second edition"
        self.texts["hr/new.md"] = "a new hr policy"
        self.write()

    def delete_document(self) -> str:
        del self.texts["finance/doc1.md"]
        self.write()
        return f"{self.name}:finance/doc1.md"

    def move_out_of_scope(self) -> str:
        text = self.texts.pop("handbook/doc2.md")
        self.write()
        hidden = self.root / ".archive"  # hidden folders are not indexed
        hidden.mkdir()
        (hidden / "doc2.md").write_text(f"# moved\n\n{text}, {self.marker}.\n", encoding="utf-8")
        return f"{self.name}:handbook/doc2.md"

    def change_permission(self) -> None:
        self.folders["finance"] = Folder([f"user:{BOB}", f"user:{EVE}"])  # ann out, bob in
        self.folders["hr"] = Folder(["group:hr"], deny=[f"user:{CARL}"])  # carl denied
        self.write()

    def change_group(self) -> None:
        self.groups["platform"] = [f"user:{DANA}"]  # bob leaves: eng closes to him
        self.groups["hr"] = [f"user:{CARL}", f"user:{EVE}"]
        self.write()

    def add_unmappable_principal(self) -> str:
        self.folders["handbook"] = Folder(["domain:acme.example"], deny=["role:interns"])
        self.write()
        return f"{self.name}:handbook/doc0.md"

    def break_identities(self) -> None:
        self.groups_broken = True
        self.write()


class FilesHarness(ConnectorHarness):
    def __init__(self, tenant: FilesTenant) -> None:
        super().__init__(tenant)
        self.root = tenant.root

    def connector(self) -> Connector:
        return FilesConnector(self.name, self.root, page_size=3)

    def expire_cursor(self, pipeline: Pipeline) -> None:
        """Files have no change feed; the cursor they issue is the resume point of a run. Kill an
        incremental run after a page, then make its cursor one the connector rejects."""
        with pytest.raises(Killed):
            pipeline.incremental_sync(DiesAfter(self.connector(), pages=1))
        key = f"sync:{self.name}:incremental:checkpoint"
        saved = pipeline.store.get_state(key)
        assert saved is not None and saved["cursor"]
        pipeline.store.set_state(key, {**saved, "cursor": "{\"format\": \"older\"}"})


class TestFilesConnectorContract(ConnectorContract):
    makes_http_calls: ClassVar[bool] = False
    no_http_reason: ClassVar[str] = ("the files connector makes no HTTP calls: there is nothing "
                                     "to throttle")

    @pytest.fixture
    def harness(self, tmp_path: Path) -> ConnectorHarness:
        return FilesHarness(FilesTenant(tmp_path / "tenant", ConnectorHarness.name))
