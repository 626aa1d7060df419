"""`.access.json`, `.groups.json` and `.aliases.json` of the files connector.

A document's gates are the `read` lists of every folder from the root down to it; denies add
up. A folder with no `.access.json` anywhere above it yields an Acl with no gates (nobody). A
malformed `.access.json` makes its whole subtree readable by nobody and is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core import principals as P
from core.acl import Acl
from core.errors import MalformedDocument
from core.models import Alias, Membership

ACCESS_FILE = ".access.json"
GROUPS_FILE = ".groups.json"
ALIASES_FILE = ".aliases.json"


@dataclass(frozen=True)
class FolderAccess:
    gates: tuple[tuple[str, ...], ...] = ()
    deny: tuple[str, ...] = ()
    broken: str | None = None  # reason when an .access.json on the path is malformed

    def acl(self) -> Acl:
        if self.broken:
            return Acl.nobody(self.broken)
        return Acl.of(self.gates, self.deny)


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedDocument(f"{what} must be a list of principal strings")
    return [v.strip() for v in value]


def parse_access(path: Path) -> tuple[list[str], list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedDocument(f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MalformedDocument("must be a JSON object with a 'read' list")
    unknown = sorted(set(data) - {"read", "deny"})
    if unknown:
        raise MalformedDocument(f"unknown key {unknown[0]!r} (allowed: read, deny)")
    if "read" not in data:
        raise MalformedDocument("missing 'read' list")
    return _string_list(data["read"], "'read'"), _string_list(data.get("deny", []), "'deny'")


def child_access(parent: FolderAccess, folder: Path, rel: str) -> FolderAccess:
    """The access of `folder`, given its parent's; a broken parent stays broken."""
    if parent.broken:
        return parent
    access_file = folder / ACCESS_FILE
    if not access_file.is_file():
        return parent
    try:
        read, deny = parse_access(access_file)
    except MalformedDocument as exc:
        where = f"{rel}/{ACCESS_FILE}" if rel else ACCESS_FILE
        return FolderAccess(broken=f"malformed {where}: {exc}")
    return FolderAccess(gates=(*parent.gates, tuple(read)), deny=(*parent.deny, *deny))


def _load_object(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedDocument(f"{path.name}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise MalformedDocument(f"{path.name}: must be a JSON object")
    return data


def parse_groups(path: Path) -> list[Membership]:
    """`{"<group>": ["user:a@x.com", "group:<other>"]}`; any bad entry fails the whole file."""
    memberships = []
    for name, members in _load_object(path).items():
        if not name.strip() or ":" in name:
            raise MalformedDocument(f"{path.name}: bad group name {name!r}")
        for member in _string_list(members, f"{path.name}: members of {name!r}"):
            member = P.canonical(member)
            if not P.is_valid(member) or not member.startswith(("user:", "group:")):
                raise MalformedDocument(f"{path.name}: {name!r} has a bad member {member!r}")
            memberships.append(Membership(group=P.group(name.strip()), member=member))
    return memberships


def parse_aliases(path: Path) -> list[Alias]:
    """`{"primary@x.com": ["other-address@y.com", ...]}`."""
    aliases = []
    for primary, others in _load_object(path).items():
        for other in _string_list(others, f"{path.name}: aliases of {primary!r}"):
            if "@" not in other or "@" not in primary:
                raise MalformedDocument(f"{path.name}: aliases must be email addresses")
            aliases.append(Alias(alias=P.normalize_email(other),
                                 primary=P.normalize_email(primary)))
    return aliases
