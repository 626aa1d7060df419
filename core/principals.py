"""Principals are namespaced strings; this module is the one place that knows their shapes.

    user:<email>  group:<source>:<id> (files: group:<name>)  domain:<dns name>  everyone
"""

from __future__ import annotations

import re

EVERYONE = "everyone"
KINDS = ("user", "group", "domain")

_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$")


# Only ASCII letters are case-folded: str.lower() turns U+212A KELVIN SIGN into "k" (and NFC
# normalisation turns it into "K"), so a look-alike address would sign in as another person.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Separates a connector name (never contains it) from a principal in the stored ACL encoding.
SCOPE_SEPARATOR = "|"


def fold(text: str) -> str:
    """The one case rule for emails and domains: ASCII A-Z lower-cased, every other character
    compared exactly (no Unicode case folding or normalisation)."""
    return text.translate(_ASCII_LOWER)


def normalize_email(email: str) -> str:
    return fold(email.strip())


def user(email: str) -> str:
    return f"user:{normalize_email(email)}"


def group(name: str, source: str | None = None) -> str:
    return f"group:{source}:{name}" if source else f"group:{name}"


def domain(name: str) -> str:
    return f"domain:{fold(name.strip())}"


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
        return domain_of(rest) is not None and rest == fold(rest)
    if kind == "domain":
        return bool(_DOMAIN.match(rest))
    return all(part.strip() for part in rest.split(":"))


def canonical(principal: str) -> str:
    """Lower-cases the parts that are case-insensitive at every source (emails, domains)."""
    kind, sep, rest = principal.strip().partition(":")
    if sep and fold(kind) in ("user", "domain"):
        return f"{fold(kind)}:{fold(rest.strip())}"
    if sep and fold(kind) in KINDS:
        return f"{fold(kind)}:{rest}"
    return principal.strip()


def principals_for_email(email: str) -> frozenset[str]:
    """What any person holds before groups: themselves, their email domain and `everyone`."""
    held = {user(email), EVERYONE}
    host = domain_of(email)
    if host:
        held.add(domain(host))
    return frozenset(held)


def scope(source: str, principal: str) -> str:
    """A principal as held for the documents of one connector (the stored ACL encoding): an
    identity fact asserted by connector C can then only ever match C's documents."""
    return f"{source}{SCOPE_SEPARATOR}{principal}"
