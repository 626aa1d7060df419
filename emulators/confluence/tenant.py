"""Validation of a Confluence tenant (the format of emulators/confluence/README.md).

Every problem is one `ValueError` whose message is one line naming the entry
(`confluence tenant: content[3] (id '1002'): unknown parent '999'`); `clearance emulate`
turns it into a usage error (exit 2). Checked: the types of every field, unknown keys, unique
ids (users, groups, spaces, content and attachments share nothing), that every reference
resolves (members, permission subjects, restriction subjects, parents, spaces), that a parent
is a page of the same space and that no parent chain loops.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from emulators.base import JsonObject
from emulators.confluence.cql import CONTENT_TYPES, STATUSES, parse_when, tz_of

ACCOUNT_TYPES = ("atlassian", "app", "customer")
SPACE_OPERATIONS = ("read", "administer", "create", "delete", "export", "restrict")
FORBIDDEN_PARTS = ("content", "restrictions")
_SPACE_KEY = re.compile(r"^[A-Za-z0-9~]+$")

_TOP: dict[str, type | tuple[type, ...]] = {
        "cloud_id": str, "timezone": str, "page_size": int, "max_limit": int,
        "restriction_limit": int, "search_cap": int, "quirk_empty_last_page": bool,
        "quirk_next_on_empty": bool, "quirk_empty_page_at": int, "scheme": str,
        "credentials": list,
        "service_accounts": list, "users": list, "groups": list, "spaces": list,
        "content": list, "roles": list}


class TenantError(ValueError):
    pass


def _fail(where: str, why: str) -> TenantError:
    return TenantError(f"confluence tenant: {where}: {why}")


def _keys(obj: Any, where: str, required: Mapping[str, type | tuple[type, ...]],
          optional: Mapping[str, type | tuple[type, ...]]) -> JsonObject:
    if not isinstance(obj, dict):
        raise _fail(where, f"an object, not {type(obj).__name__}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}")
    for key, kind in {**required, **optional}.items():
        if key not in obj:
            if key in required:
                raise _fail(where, f"{key!r} is required")
            continue
        value = obj[key]
        if value is None and key in optional and kind == (str, type(None)):
            continue
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python: an int field takes no true/false.
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = "/".join(k.__name__ for k in kinds)
            raise _fail(where, f"{key!r} must be {names}, not {type(value).__name__}")
    return obj


def _strings(obj: JsonObject, key: str, where: str, known: set[str], what: str) -> list[str]:
    values = obj.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _fail(where, f"{key!r} must be a list of {what} ids")
    if len(set(values)) != len(values):
        raise _fail(where, f"{key!r} names a {what} twice")
    missing = [v for v in values if v not in known]
    if missing:
        raise _fail(where, f"unknown {what} {missing[0]!r}")
    return values


def _unique(seen: dict[str, str], value: str, where: str, what: str) -> None:
    if value in seen:
        raise _fail(where, f"duplicate {what} {value!r} (also {seen[value]})")
    seen[value] = where


def _when(obj: JsonObject, key: str, where: str) -> None:
    if key in obj:
        try:
            parse_when(obj[key])
        except (ValueError, AttributeError):
            raise _fail(where, f"{key!r} is not an ISO 8601 time: {obj[key]!r}") from None


def validate_tenant(tenant: Any) -> None:
    """Raise TenantError (a ValueError, one line) unless `tenant` is a valid tenant."""
    top = _keys(tenant, "top level", {}, _TOP)
    try:
        tz_of(str(top.get("timezone", "UTC")))
    except ValueError as exc:
        raise _fail("timezone", str(exc)) from None
    for key in ("page_size", "max_limit", "restriction_limit", "search_cap"):
        if key in top and top[key] < 1:
            raise _fail(key, "must be at least 1")
    if top.get("scheme", "https") not in ("http", "https"):
        raise _fail("scheme", "'http' or 'https'")

    for n, cred in enumerate(top.get("credentials", [])):
        where = f"credentials[{n}]"
        _keys(cred, where, {}, {"email": str, "token": str, "bearer": str, "admin": bool})
        if not (("email" in cred and cred.get("token")) or cred.get("bearer")):
            raise _fail(where, "an 'email' with a non-empty 'token', or a non-empty 'bearer'")
    clients: dict[str, str] = {}
    for n, acct in enumerate(top.get("service_accounts", [])):
        where = f"service_accounts[{n}]"
        _keys(acct, where, {"client_id": str, "client_secret": str, "token": str},
              {"expires_in": int, "admin": bool})
        _unique(clients, acct["client_id"], where, "client_id")
        if acct.get("expires_in", 3600) < 1:
            raise _fail(where, "'expires_in' must be at least 1")

    ids: dict[str, str] = {}  # every id of the tenant: none may be reused by another entry
    users: set[str] = set()
    for n, user in enumerate(top.get("users", [])):
        where = f"users[{n}]"
        _keys(user, where, {"accountId": str},
              {"email": str, "displayName": str, "accountType": str})
        _unique(ids, user["accountId"], where, "id")
        if user.get("accountType", "atlassian") not in ACCOUNT_TYPES:
            raise _fail(where, f"'accountType' one of {ACCOUNT_TYPES}")
        users.add(user["accountId"])
    groups: set[str] = set()
    names: dict[str, str] = {}
    for n, group in enumerate(top.get("groups", [])):
        where = f"groups[{n}]"
        _keys(group, where, {"id": str, "name": str}, {"members": list})
        _unique(ids, group["id"], where, "id")
        _unique(names, group["name"], where, "group name")
        _strings(group, "members", f"{where} (id {group['id']!r})", users, "user")
        groups.add(group["id"])
    roles: set[str] = set()
    for n, role in enumerate(top.get("roles", [])):
        where = f"roles[{n}]"
        _keys(role, where, {"id": str, "name": str}, {})
        _unique(ids, role["id"], where, "id")
        roles.add(role["id"])

    spaces: set[str] = set()
    space_ids: dict[str, str] = {}
    for n, space in enumerate(top.get("spaces", [])):
        where = f"spaces[{n}]"
        _keys(space, where, {"id": int, "key": str},
              {"name": str, "type": str, "anonymous": bool, "unlicensed": bool,
               "permissions": list, "status": str})
        if not _SPACE_KEY.match(space["key"]):
            raise _fail(where, f"space key {space['key']!r}: letters and digits only")
        _unique(space_ids, str(space["id"]), where, "space id")
        if space["key"] in spaces:
            raise _fail(where, f"duplicate space key {space['key']!r}")
        spaces.add(space["key"])
        if space.get("type", "global") not in ("global", "personal"):
            raise _fail(where, "'type' is 'global' or 'personal'")
        for m, perm in enumerate(space.get("permissions", [])):
            at = f"{where}.permissions[{m}] (space {space['key']!r})"
            _keys(perm, at, {"operation": str}, {"users": list, "groups": list, "roles": list})
            if perm["operation"] not in SPACE_OPERATIONS:
                raise _fail(at, f"'operation' one of {SPACE_OPERATIONS}")
            _strings(perm, "users", at, users, "user")
            _strings(perm, "groups", at, groups, "group")
            _strings(perm, "roles", at, roles, "role")

    items = top.get("content", [])
    kinds: dict[str, tuple[str, str]] = {}  # id -> (type, space)
    for n, item in enumerate(items):
        where = f"content[{n}]"
        _keys(item, where, {"id": str, "space": str},
              {"type": str, "parent": (str, type(None)), "title": str, "status": str,
               "body": str, "version": int, "when": str, "created": str, "author": str,
               "restrictions": dict, "attachments": list, "forbidden": list})
        where = f"content[{n}] (id {item['id']!r})"
        _unique(ids, item["id"], where, "id")
        if item.get("type", "page") not in CONTENT_TYPES:
            raise _fail(where, f"'type' one of {CONTENT_TYPES}")
        if item["space"] not in spaces:
            raise _fail(where, f"unknown space {item['space']!r}")
        if item.get("status", "current") not in STATUSES:
            raise _fail(where, f"'status' one of {STATUSES}")
        if item.get("version", 1) < 1:
            raise _fail(where, "'version' must be at least 1")
        _when(item, "when", where)
        _when(item, "created", where)
        forbidden = item.get("forbidden", [])
        if not all(isinstance(f, str) and f in FORBIDDEN_PARTS for f in forbidden):
            raise _fail(where, f"'forbidden' lists parts of {FORBIDDEN_PARTS}")
        restrictions = _keys(item.get("restrictions", {}), f"{where}.restrictions", {},
                             {"read": dict, "update": dict})
        for op, entry in restrictions.items():
            at = f"{where}.restrictions.{op}"
            _keys(entry, at, {}, {"users": list, "groups": list})
            _strings(entry, "users", at, users, "user")
            _strings(entry, "groups", at, groups, "group")
        kinds[item["id"]] = (item.get("type", "page"), item["space"])
        for m, att in enumerate(item.get("attachments", [])):
            at = f"{where}.attachments[{m}]"
            _keys(att, at, {"id": str, "title": str},
                  {"mediaType": str, "version": int, "when": str, "created": str,
                   "author": str, "data": str, "data_base64": str})
            _unique(ids, att["id"], at, "id")
            _when(att, "when", at)
            if "data" in att and "data_base64" in att:
                raise _fail(at, "'data' or 'data_base64', not both")
            if "data_base64" in att:
                try:
                    base64.b64decode(att["data_base64"], validate=True)
                except (binascii.Error, ValueError):
                    raise _fail(at, "'data_base64' is not base64") from None

    parents = {item["id"]: item.get("parent") for item in items}
    for n, item in enumerate(items):
        where = f"content[{n}] (id {item['id']!r})"
        parent = item.get("parent")
        if parent is None:
            continue
        if parent not in kinds:
            raise _fail(where, f"unknown parent {parent!r} (a dangling parent)")
        if kinds[item["id"]][0] == "blogpost":
            raise _fail(where, "a blog post has no parent")
        if kinds[parent] != ("page", item["space"]):
            raise _fail(where, f"parent {parent!r} is not a page of space {item['space']!r}")
        seen = {item["id"]}
        node: str | None = parent
        while node is not None:
            if node in seen:
                raise _fail(where, f"the parent chain loops through {node!r}")
            seen.add(node)
            node = parents.get(node)
