"""Resolve a person's email to the principals they hold, and explain access decisions.

Per source: email -> the addresses that source lists for this person (aliases, one way, never
an address two people claim) -> user principals -> that source's groups -> transitive closure
(cycles allowed) -> plus `domain:` of each address and `everyone`. What one source asserts
admits the person only to that source's documents.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from core import principals as P
from core.acl import Acl
from core.models import Alias, Membership


class IdentityStore(Protocol):
    def replace_identities(
        self, source: str, memberships: Iterable[Membership], aliases: Iterable[Alias]
    ) -> None: ...

    def groups_of(self, members: Iterable[str], source: str | None = None) -> list[Membership]:
        """Memberships whose `member` is one of `members` (one level up), of one source."""
        ...

    def aliases_of(self, email: str, source: str | None = None) -> list[Alias]:
        """Alias rows where `email` is the alias or the primary, of one source."""
        ...

    def identity_sources(self) -> list[str]:
        """The sources whose group sync stored memberships or aliases, sorted."""
        ...

    def identity_version(self) -> int:
        """Changes whenever any source's identities are replaced (cache invalidation)."""
        ...


@dataclass(frozen=True)
class Identity:
    """The principals one person holds, each with the membership step that granted it.

    Identity facts are scoped to the source that asserted them: `at(source)` is what the
    person holds for that connector's documents (its aliases, its group closure). The
    top-level `principals` is their union, for the audit log and display only; filters and
    explanations use `at(source)`.
    """

    email: str
    principals: frozenset[str]
    # principal -> the principal it was reached from (None for starting principals)
    via: Mapping[str, str | None] = field(default_factory=dict)
    per_source: Mapping[str, Identity] = field(default_factory=dict)
    # Addresses two people claim (a shared mailbox): they grant neither of them anything.
    ambiguous: frozenset[str] = frozenset()
    # Connectors whose documents this person's searches cover (None: not decided here).
    connectors: tuple[str, ...] | None = None

    def at(self, source: str) -> Identity:
        """What this person holds for the documents of connector `source`."""
        found = self.per_source.get(source)
        return found if found is not None else _base(self.email)

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


def _base(email: str) -> Identity:
    """What anyone holds at a source that asserted nothing about them."""
    via: dict[str, str | None] = {P.user(email): None}
    host = P.domain_of(email)
    if host:
        via[P.domain(host)] = P.user(email)
    via[P.EVERYONE] = None
    return Identity(email=email, principals=frozenset(via), via=via)


def _claims(store: IdentityStore, source: str, address: str) -> set[str]:
    """The people who claim `address` at `source`: the primaries listing it as their alias,
    and the address itself when it is a primary there."""
    rows = store.aliases_of(address, source)
    people = {a.primary for a in rows if a.alias == address}
    if any(a.primary == address for a in rows):
        people.add(address)
    return people


def _at_source(store: IdentityStore, source: str, primary: str) -> tuple[Identity, set[str]]:
    """The person's principals for `source`'s documents, and the ambiguous addresses seen.

    One way only: the person's own address -> the aliases *this source* lists for them. An
    alias never leads to another primary, and an address claimed by two people grants nothing.
    """
    ambiguous: set[str] = set()
    addresses = {primary}
    for row in store.aliases_of(primary, source):
        if row.primary != primary or row.alias == primary:
            continue  # we are someone's alias there: that never makes us them
        if _claims(store, source, row.alias) == {primary}:
            addresses.add(row.alias)
        else:
            ambiguous.add(row.alias)
    if len(_claims(store, source, primary) - {primary}) > 1:
        ambiguous.add(primary)  # signing in as a shared address picks none of its claimants
    start_user = P.user(primary)
    via: dict[str, str | None] = {start_user: None}
    for address in sorted(addresses - {primary}):
        via[P.user(address)] = start_user
    frontier = deque(via)
    while frontier:
        batch = [frontier.popleft() for _ in range(len(frontier))]
        for m in store.groups_of(batch, source):
            if m.group not in via:
                via[m.group] = m.member
                frontier.append(m.group)
    for address in sorted(addresses):
        host = P.domain_of(address)
        if host and P.domain(host) not in via:
            via[P.domain(host)] = P.user(address)
    via[P.EVERYONE] = None
    return Identity(email=primary, principals=frozenset(via), via=via), ambiguous


def resolve(store: IdentityStore, email: str,
            connectors: Iterable[str] | None = None) -> Identity:
    """Who `email` is at every source that asserted something, and what they hold there.

    `connectors`: the configured connectors whose documents the person's searches cover (a
    connector removed from the configuration is searched no more). None (library callers and
    tests): every connector the store holds documents or identities of.
    """
    if connectors is None:
        indexed: Any = getattr(store, "connector_names", None)
        connectors = set(store.identity_sources()) | set(indexed() if indexed else ())
    primary = P.normalize_email(email)
    per_source: dict[str, Identity] = {}
    ambiguous: set[str] = set()
    via: dict[str, str | None] = dict(_base(primary).via)
    for source in store.identity_sources():
        scoped, unclear = _at_source(store, source, primary)
        per_source[source] = scoped
        ambiguous |= unclear
        for principal, step in scoped.via.items():
            via.setdefault(principal, step)
    return Identity(email=primary, principals=frozenset(via), via=via, per_source=per_source,
                    ambiguous=frozenset(ambiguous),
                    connectors=tuple(sorted(set(connectors))))


class CachedResolver:
    """Caches identities until the identity store changes (a group sync invalidates).

    Safe to share between threads (one lock) and bounded (`max_entries`, least recently used
    first out): a long-running server meets an unbounded number of people. The store's identity
    version is read on every call, so a group sync that lands while the server runs (another
    process writing the same index) is seen by the next question."""

    def __init__(self, store: IdentityStore, connectors: Iterable[str] | None = None,
                 max_entries: int = 4096) -> None:
        self.store = store
        self.connectors = None if connectors is None else tuple(sorted(set(connectors)))
        self.max_entries = max(1, max_entries)
        self._version = -1
        self._cache: OrderedDict[str, Identity] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, email: str) -> Identity:
        key = P.normalize_email(email)
        with self._lock:  # the store may be one connection: its calls are serialised here too
            version = self.store.identity_version()
            if version != self._version:
                self._cache, self._version = OrderedDict(), version
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
            found = resolve(self.store, key, self.connectors)
            self._cache[key] = found
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
            return found

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)


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
