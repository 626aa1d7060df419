"""Principals are namespaced strings; this module is the one place that knows their shapes.

    user:<email>  group:<source>:<id> (files: group:<name>)  domain:<dns name>  everyone
"""

from __future__ import annotations

import re

EVERYONE = "everyone"
KINDS = ("user", "group", "domain")

_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def user(email: str) -> str:
    return f"user:{normalize_email(email)}"


def group(name: str, source: str | None = None) -> str:
    return f"group:{source}:{name}" if source else f"group:{name}"


def domain(name: str) -> str:
    return f"domain:{name.strip().lower()}"


def domain_of(email: str) -> str | None:
    """The DNS domain of an email address, or None when it has none."""
    local, at, host = normalize_email(email).rpartition("@")
    return host if at and local and _DOMAIN.match(host) else None


def is_valid(principal: str) -> bool:
    """True for the principal shapes Clearance knows; anything else fails closed in an Acl."""
    if principal == EVERYONE:
        return True
    kind, sep, rest = principal.partition(":")
    if not sep or kind not in KINDS or not rest.strip() or rest != rest.strip():
        return False
    if kind == "user":
        return domain_of(rest) is not None and rest == rest.lower()
    if kind == "domain":
        return bool(_DOMAIN.match(rest))
    return all(part.strip() for part in rest.split(":"))


def canonical(principal: str) -> str:
    """Lower-cases the parts that are case-insensitive at every source (emails, domains)."""
    kind, sep, rest = principal.strip().partition(":")
    if sep and kind.lower() in ("user", "domain"):
        return f"{kind.lower()}:{rest.strip().lower()}"
    if sep and kind.lower() in KINDS:
        return f"{kind.lower()}:{rest}"
    return principal.strip()


def principals_for_email(email: str) -> frozenset[str]:
    """What any person holds before groups: themselves, their email domain and `everyone`."""
    held = {user(email), EVERYONE}
    host = domain_of(email)
    if host:
        held.add(domain(host))
    return frozenset(held)
