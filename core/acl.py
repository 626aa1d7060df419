"""Access control lists: gates + deny, failing closed.

A reader must hold at least one principal of *every* gate and none of `deny`.
An Acl that is unknown, empty, or names a principal shape we do not understand is
readable by nobody, and says why in `nobody_reason`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from core import principals as P


@dataclass(frozen=True)
class Acl:
    gates: tuple[frozenset[str], ...] = ()
    deny: frozenset[str] = frozenset()
    # Set when the connector could not establish the ACL; forces "readable by nobody".
    unknown_reason: str | None = field(default=None, compare=True)

    @classmethod
    def of(cls, gates: Iterable[Iterable[str]], deny: Iterable[str] = ()) -> Acl:
        return cls(
            gates=tuple(frozenset(P.canonical(p) for p in gate) for gate in gates),
            deny=frozenset(P.canonical(p) for p in deny),
        )

    @classmethod
    def single(cls, readers: Iterable[str], deny: Iterable[str] = ()) -> Acl:
        return cls.of([readers], deny)

    @classmethod
    def nobody(cls, reason: str) -> Acl:
        """An ACL the connector could not fetch or parse: fail closed and say why."""
        return cls(unknown_reason=reason)

    @property
    def nobody_reason(self) -> str | None:
        """Why no one can read under this ACL, or None when someone might."""
        if self.unknown_reason:
            return self.unknown_reason
        if not self.gates:
            return "no ACL"
        if any(not gate for gate in self.gates):
            return "an empty gate"
        bad = sorted(p for p in self.principals() if not P.is_valid(p))
        if bad:
            return f"unknown principal type: {bad[0]}"
        return None

    @property
    def readable_by_somebody(self) -> bool:
        return self.nobody_reason is None

    def principals(self) -> frozenset[str]:
        return frozenset().union(*self.gates, self.deny)

    def allows(self, held: Iterable[str]) -> bool:
        held_set = frozenset(held)
        if not self.readable_by_somebody:
            return False
        if self.deny & held_set:
            return False
        return all(gate & held_set for gate in self.gates)

    def key(self) -> str:
        """A stable text form, equal for equal ACLs (used to share ACL rows in a store)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def scoped(self, connector: str) -> tuple[tuple[frozenset[str], ...], frozenset[str]]:
        """Gates and deny in the stored encoding of `connector`'s documents (see AclFilter)."""
        return (tuple(frozenset(P.scope(connector, p) for p in gate) for gate in self.gates),
                frozenset(P.scope(connector, p) for p in self.deny))

    def to_json(self) -> dict[str, object]:
        return {
            "gates": [sorted(g) for g in self.gates],
            "deny": sorted(self.deny),
            "unknown_reason": self.unknown_reason,
        }

    @classmethod
    def from_json(cls, data: object) -> Acl:
        if not isinstance(data, dict):
            return cls.nobody("malformed stored ACL")
        gates = data.get("gates", [])
        deny = data.get("deny", [])
        reason = data.get("unknown_reason")
        if (
            not isinstance(gates, list)
            or not isinstance(deny, list)
            or not all(isinstance(g, list) for g in gates)
        ):
            return cls.nobody("malformed stored ACL")
        acl = cls(
            gates=tuple(frozenset(str(p) for p in g) for g in gates),
            deny=frozenset(str(p) for p in deny),
            unknown_reason=str(reason) if reason else None,
        )
        return acl


class AclFilter:
    """The caller's principals per connector, as every store must apply them *inside* its query.

    Identity facts are scoped to the source that asserted them, so a person may hold different
    principals for different connectors' documents (an alias one connector asserted admits only
    to that connector's documents). A connector absent from the filter admits nothing: a
    connector removed from the configuration stops being searchable at once.

    Built only by `retriever.filters.acl_filter`; stores translate it (SQL, OpenSearch terms)
    through `terms()`, which pairs each principal with its connector exactly as the stores
    encode stored ACLs (`core.principals.scope`), and have no way to search without one.
    """

    __slots__ = ("_scopes", "_terms")

    def __init__(self, scopes: Mapping[str, Iterable[str]]) -> None:
        self._scopes: dict[str, frozenset[str]] = {
            source: frozenset(held) for source, held in sorted(scopes.items())}
        self._terms = frozenset(P.scope(source, p) for source, held in self._scopes.items()
                                for p in held)

    @classmethod
    def uniform(cls, principals: Iterable[str], connectors: Iterable[str]) -> AclFilter:
        """The same principals for every connector named (tests, benchmarks)."""
        held = frozenset(principals)
        return cls({c: held for c in connectors})

    @property
    def connectors(self) -> frozenset[str]:
        return frozenset(self._scopes)

    def held(self, connector: str) -> frozenset[str]:
        """What the caller holds for `connector`'s documents (nothing if it is not searched)."""
        return self._scopes.get(connector, frozenset())

    def terms(self) -> frozenset[str]:
        """Every (connector, principal) pair in the stored encoding: the store's filter terms."""
        return self._terms

    def admits(self, connector: str, acl: Acl) -> bool:
        return connector in self._scopes and acl.allows(self._scopes[connector])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AclFilter) and self._scopes == other._scopes

    def __hash__(self) -> int:
        return hash(self._terms)

    def __repr__(self) -> str:
        return f"AclFilter({self._scopes!r})"
