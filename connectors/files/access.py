"""`.access.json`, `.groups.json` and `.aliases.json` of the files connector.

A document's gates are the `read` lists of every folder from the root down to it; denies add
up. A folder with no `.access.json` anywhere above it yields an Acl with no gates (nobody). An
`.access.json` that is malformed, unreadable or not a regular file makes its whole subtree
readable by nobody and is reported.

Group principals are the connector's own: `group:hr` written in a file of connector `kb` is
`group:kb:hr` inside Clearance, so a `.groups.json` of one connector never admits anyone to
another connector's documents.
"""

from __future__ import annotations

import difflib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from core import principals as P
from core.acl import Acl
from core.errors import MalformedDocument
from core.models import Alias, Membership

ACCESS_FILE = ".access.json"
GROUPS_FILE = ".groups.json"
ALIASES_FILE = ".aliases.json"
CONTROL_FILES = (ACCESS_FILE, GROUPS_FILE, ALIASES_FILE)
# An ACL file is a few lines; anything bigger is not one (and is not read into memory).
MAX_CONTROL_BYTES = 1 << 20


class UnreadableControlFile(MalformedDocument):
    """A control file exists but cannot be read as one (not regular, outside the root, I/O)."""


@dataclass(frozen=True)
class FolderAccess:
    gates: tuple[tuple[str, ...], ...] = ()
    deny: tuple[str, ...] = ()
    broken: str | None = None  # reason when an .access.json on the path cannot be trusted

    def acl(self) -> Acl:
        if self.broken:
            return Acl.nobody(self.broken)
        return Acl.of(self.gates, self.deny)


def scoped(principal: str, source: str) -> str:
    """The principal as Clearance stores it: a valid `group:<name>` becomes the source's own
    `group:<source>:<name>`; users, domains, `everyone` (and invalid shapes, which fail closed
    anyway) are unchanged."""
    canon = P.canonical(principal)
    kind, _, rest = canon.partition(":")
    if kind == "group" and P.is_valid(canon):
        return P.group(rest, source=source)
    return canon


# -- reading a control file without trusting it ----------------------------------------------
def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedDocument(f"duplicate key {key!r}")
        out[key] = value
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def read_control_file(path: Path, root: Path) -> bytes | None:
    """The bytes of a control file, or None when there is none.

    lstat first: a FIFO, device, socket or directory is never opened (opening a FIFO blocks);
    a symlink is followed only to a regular file inside the root. Raises UnreadableControlFile.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableControlFile(f"cannot be read ({exc.strerror or exc})") from exc
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(path))
        if not _inside(target, Path(os.path.realpath(root))):
            raise UnreadableControlFile("is a symlink to outside the root")
        try:
            st = os.stat(target)
        except FileNotFoundError as exc:
            raise UnreadableControlFile("is a dangling symlink") from exc
        except OSError as exc:
            raise UnreadableControlFile(f"cannot be read ({exc.strerror or exc})") from exc
        path = target
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableControlFile(f"is not a regular file ({_file_type(st.st_mode)})")
    try:
        # O_NONBLOCK: should a FIFO replace the file after the check, opening it cannot hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnreadableControlFile("is not a regular file")
            data = os.read(fd, MAX_CONTROL_BYTES + 1)
        finally:
            os.close(fd)
    except UnreadableControlFile:
        raise
    except OSError as exc:
        raise UnreadableControlFile(f"cannot be read ({exc.strerror or exc})") from exc
    if len(data) > MAX_CONTROL_BYTES:
        raise UnreadableControlFile(f"is larger than {MAX_CONTROL_BYTES} bytes")
    return data


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def parse_json_object(data: bytes, what: str) -> dict[str, object]:
    """A JSON object; duplicate keys (at any depth) are rejected, a UTF-8 BOM is accepted."""
    prefix = f"{what}: " if what else ""
    try:
        parsed = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_reject_duplicates)
    except MalformedDocument as exc:
        raise MalformedDocument(f"{prefix}{exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MalformedDocument(f"{prefix}not valid JSON ({exc})") from exc
    if not isinstance(parsed, dict):
        raise MalformedDocument(f"{prefix}must be a JSON object")
    return parsed


def _string_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedDocument(f"{what} must be a list of principal strings")
    return [v.strip() for v in value]


# -- .access.json -----------------------------------------------------------------------------
def parse_access(data: bytes, source: str) -> tuple[list[str], list[str]]:
    obj = parse_json_object(data, "")
    unknown = sorted(set(obj) - {"read", "deny"})
    if unknown:
        raise MalformedDocument(f"unknown key {unknown[0]!r} (allowed: read, deny)")
    if "read" not in obj:
        raise MalformedDocument("missing 'read' list")
    read = _string_list(obj["read"], "'read'")
    deny = _string_list(obj.get("deny", []), "'deny'")
    return [scoped(p, source) for p in read], [scoped(p, source) for p in deny]


def child_access(parent: FolderAccess, folder: Path, rel: str, root: Path,
                 source: str) -> FolderAccess:
    """The access of `folder`, given its parent's; a broken parent stays broken."""
    if parent.broken:
        return parent
    where = f"{rel}/{ACCESS_FILE}" if rel else ACCESS_FILE
    try:
        data = read_control_file(folder / ACCESS_FILE, root)
        if data is None:
            return parent
        read, deny = parse_access(data, source)
    except UnreadableControlFile as exc:
        return FolderAccess(broken=f"{where} {exc}")
    except MalformedDocument as exc:
        return FolderAccess(broken=f"malformed {where}: {exc}")
    return FolderAccess(gates=(*parent.gates, tuple(read)), deny=(*parent.deny, *deny))


def _similar(a: str, b: str, cutoff: float = 0.9) -> bool:
    """SequenceMatcher ratio >= cutoff, testing its cheap upper bounds first (difflib's own
    idiom: real_quick_ratio >= quick_ratio >= ratio), so an ordinary file name costs no full
    match; the answer is the same as ratio() >= cutoff."""
    matcher = difflib.SequenceMatcher(None, a, b)
    return (matcher.real_quick_ratio() >= cutoff and matcher.quick_ratio() >= cutoff
            and matcher.ratio() >= cutoff)


def near_misses(names: list[str]) -> list[str]:
    """Names that look like a control file but are not one (`.Access.json`, `access.json`,
    `.access.json.bak`, `.acess.json`): they grant nothing, so an administrator should know."""
    out = []
    for name in names:
        if name in CONTROL_FILES:
            continue
        folded = name.lower().lstrip(".")
        for wanted in CONTROL_FILES:
            bare = wanted.lstrip(".")
            if folded == bare or folded.startswith(bare) or _similar(folded, bare):
                out.append(f"{name} is not {wanted} (grants nothing)")
                break
    return out


# -- .groups.json and .aliases.json -----------------------------------------------------------
def parse_groups(data: bytes, source: str) -> list[Membership]:
    """`{"<group>": ["user:a@x.com", "group:<other>"]}`; any bad entry fails the whole file."""
    memberships = []
    for name, members in parse_json_object(data, GROUPS_FILE).items():
        if not name.strip() or ":" in name:
            raise MalformedDocument(f"{GROUPS_FILE}: bad group name {name!r}")
        for raw in _string_list(members, f"{GROUPS_FILE}: members of {name!r}"):
            member = P.canonical(raw)
            if not P.is_valid(member) or not member.startswith(("user:", "group:")):
                raise MalformedDocument(f"{GROUPS_FILE}: {name!r} has a bad member {member!r}")
            memberships.append(Membership(group=P.group(name.strip(), source=source),
                                          member=scoped(member, source)))
    return memberships


def parse_aliases(data: bytes) -> list[Alias]:
    """`{"primary@x.com": ["other-address@y.com", ...]}`."""
    aliases = []
    for primary, others in parse_json_object(data, ALIASES_FILE).items():
        for other in _string_list(others, f"{ALIASES_FILE}: aliases of {primary!r}"):
            if "@" not in other or "@" not in primary:
                raise MalformedDocument(f"{ALIASES_FILE}: aliases must be email addresses")
            aliases.append(Alias(alias=P.normalize_email(other),
                                 primary=P.normalize_email(primary)))
    return aliases
