"""Resolve a person's email to the principals they hold, and explain access decisions.

email -> primary address (aliases) -> user principals -> groups from every source's group sync
-> transitive closure (cycles allowed) -> plus `domain:` of each address and `everyone`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from core import principals as P
from core.acl import Acl
from core.models import Alias, Membership


class IdentityStore(Protocol):
    def replace_identities(
        self, source: str, memberships: Iterable[Membership], aliases: Iterable[Alias]
    ) -> None: ...

    def groups_of(self, members: Iterable[str]) -> list[Membership]:
        """Memberships whose `member` is one of `members` (one level up)."""
        ...

    def aliases_of(self, email: str) -> list[Alias]:
        """Alias rows where `email` is the alias or the primary."""
        ...

    def identity_version(self) -> int:
        """Changes whenever any source's identities are replaced (cache invalidation)."""
        ...


@dataclass(frozen=True)
class Identity:
    """The principals one person holds, each with the membership step that granted it."""

    email: str
    principals: frozenset[str]
    # principal -> the principal it was reached from (None for starting principals)
    via: Mapping[str, str | None] = field(default_factory=dict)

    def path(self, principal: str) -> list[str]:
        """`[principal, ..., user:x]`: the membership chain from a held principal to the person."""
        chain = [principal]
        seen = {principal}
        step = self.via.get(principal)
        while step is not None and step not in seen:
            chain.append(step)
            seen.add(step)
            step = self.via.get(step)
        return chain


def resolve(store: IdentityStore, email: str) -> Identity:
    primary = P.normalize_email(email)
    addresses = {primary}
    for alias in store.aliases_of(primary):
        addresses.update({alias.alias, alias.primary})
    # Aliases of the primary (one hop: alias -> primary -> other aliases).
    for address in list(addresses):
        for alias in store.aliases_of(address):
            addresses.update({alias.alias, alias.primary})
    via: dict[str, str | None] = {}
    start_user = P.user(primary)
    via[start_user] = None
    for address in sorted(addresses - {primary}):
        via[P.user(address)] = start_user
    frontier = deque(via)
    while frontier:
        batch = [frontier.popleft() for _ in range(len(frontier))]
        for m in store.groups_of(batch):
            if m.group not in via:
                via[m.group] = m.member
                frontier.append(m.group)
    for address in sorted(addresses):
        host = P.domain_of(address)
        if host and P.domain(host) not in via:
            via[P.domain(host)] = P.user(address)
    via[P.EVERYONE] = None
    return Identity(email=primary, principals=frozenset(via), via=via)


class CachedResolver:
    """Caches identities until the identity store changes (a group sync invalidates)."""

    def __init__(self, store: IdentityStore) -> None:
        self.store = store
        self._version = -1
        self._cache: dict[str, Identity] = {}

    def __call__(self, email: str) -> Identity:
        version = self.store.identity_version()
        if version != self._version:
            self._cache, self._version = {}, version
        key = P.normalize_email(email)
        if key not in self._cache:
            self._cache[key] = resolve(self.store, key)
        return self._cache[key]


@dataclass(frozen=True)
class GateDecision:
    gate: int
    members: frozenset[str]
    admitted_by: str | None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    gates: tuple[GateDecision, ...] = ()
    denied_by: str | None = None
    deny_path: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        out = [("yes" if self.allowed else "no") + f": {self.reason}"]
        for g in self.gates:
            if g.admitted_by:
                out.append(f"  gate {g.gate}: admitted by {' <- '.join(g.path)}")
            else:
                shown = ", ".join(sorted(g.members)[:8]) + (" ..." if len(g.members) > 8 else "")
                out.append(f"  gate {g.gate}: not met; needs one of {shown}")
        if self.denied_by:
            out.append(f"  deny: {' <- '.join(self.deny_path)}")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "reason": self.reason,
            "gates": [
                {"gate": g.gate, "admitted_by": g.admitted_by, "path": list(g.path),
                 "members": sorted(g.members)}
                for g in self.gates
            ],
            "denied_by": self.denied_by,
            "deny_path": list(self.deny_path),
        }


def _pick(held: Iterable[str], identity: Identity) -> str:
    # The most specific principal: the one with the shortest membership path.
    return min(held, key=lambda p: (len(identity.path(p)), p))


def explain(acl: Acl, identity: Identity) -> Decision:
    nobody = acl.nobody_reason
    if nobody is not None:
        reason = ("no ACL: readable by nobody" if nobody == "no ACL"
                  else f"readable by nobody ({nobody})")
        return Decision(False, reason)
    gates = []
    for n, gate in enumerate(acl.gates):
        held = gate & identity.principals
        if held:
            p = _pick(held, identity)
            gates.append(GateDecision(n, gate, p, tuple(identity.path(p))))
        else:
            gates.append(GateDecision(n, gate, None))
    denied = acl.deny & identity.principals
    if denied:
        p = _pick(denied, identity)
        return Decision(False, f"denied by {p}", tuple(gates), p, tuple(identity.path(p)))
    unmet = [g.gate for g in gates if g.admitted_by is None]
    if unmet:
        return Decision(False, f"gate {unmet[0]} is not met by any principal they hold",
                        tuple(gates))
    return Decision(True, "every gate admits them and no deny applies", tuple(gates))
