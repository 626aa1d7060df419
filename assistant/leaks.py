"""The leak audit: is every hit and citation readable by its person *at the source, now*?

The index says who may read what as of the last permission sync, and the retriever's filter
applies it. This audit trusts neither: it re-reads each connector's current ACLs (the
permission pass) and group memberships and aliases (the identity pass) — passes that return
pages and write nothing — and decides access with its own small evaluator below, which shares
no code with `core.acl`, `retriever.filters` or `auth.identity`. A hit the source refuses is a
leak: an ACL changed at the source and not synced yet, or a filter bug. What the source cannot
confirm right now (a folder it could not list, a failed identity pass) is reported too: the
audit cannot vouch for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core import principals as P
from core.acl import Acl

if TYPE_CHECKING:
    from connectors.base import Connector

_SHAPES = ("user:", "group:", "domain:")


@dataclass(frozen=True)
class Leak:
    user: str
    doc_id: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"user": self.user, "doc_id": self.doc_id, "reason": self.reason}


@dataclass
class SourceView:
    """One connector's current ACLs and identities, as its passes return them now."""

    connector: str
    acls: dict[str, Acl] = field(default_factory=dict)
    unlisted: list[str] = field(default_factory=list)  # doc id prefixes it could not list
    identity_failure: str | None = None
    groups: dict[str, set[str]] = field(default_factory=dict)  # member -> groups it is in
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (alias, primary)

    def held(self, email: str) -> set[str]:
        """What `email` holds at this source: its own address and the aliases this source gives
        it alone, their domains, `everyone`, and every group reached through memberships."""
        me = P.normalize_email(email)
        claimants: dict[str, set[str]] = {}
        for alias, primary in self.aliases:
            claimants.setdefault(alias, set()).add(primary)
        addresses = {me} | {alias for alias, primary in self.aliases
                            if primary == me and claimants[alias] == {me}}
        held = {"everyone"} | {f"user:{a}" for a in addresses}
        held |= {f"domain:{host}" for a in addresses if (host := P.domain_of(a))}
        todo = deque(p for p in held if p.startswith("user:"))
        while todo:
            for group in self.groups.get(todo.popleft(), ()):
                if group not in held:
                    held.add(group)
                    todo.append(group)
        return held

    def refusal(self, email: str, doc_id: str) -> str | None:
        """Why the source refuses `email` the document now, or None when it admits them."""
        acl = self.acls.get(doc_id)
        if acl is None:
            prefix = next((p for p in self.unlisted if doc_id.startswith(p)), None)
            if prefix is not None:
                return "unverified: the source could not list it now"
            return "no longer at the source (deleted or moved out of the connector's scope)"
        if acl.unknown_reason:
            return f"the source's ACL could not be read ({acl.unknown_reason})"
        if not acl.gates or any(not gate for gate in acl.gates):
            return "the source's ACL admits nobody"
        odd = sorted(p for p in acl.gates[0].union(*acl.gates[1:], acl.deny)
                     if p != "everyone" and not p.startswith(_SHAPES))
        if odd:
            return f"the source's ACL names {odd[0]!r}, which admits nobody"
        if self.identity_failure is not None and any(
                p.startswith("group:") for p in acl.gates[0].union(*acl.gates[1:], acl.deny)):
            return f"unverified: the source's groups could not be read ({self.identity_failure})"
        held = self.held(email)
        denied = sorted(acl.deny & held)
        if denied:
            return f"denied at the source by {denied[0]}"
        for number, gate in enumerate(acl.gates, start=1):
            if not gate & held:
                return (f"the source admits none of this person's principals to gate {number} "
                        f"({', '.join(sorted(gate)[:3])}{', ...' if len(gate) > 3 else ''})")
        return None


def read_source(connector: Connector) -> SourceView:
    """The connector's permission and identity passes, from the start, collected (no writes)."""
    view = SourceView(connector.name)
    for page in connector.permissions(None):
        view.acls.update(page.acls)
        for failure in page.failures:
            if failure.scope == "listing" and failure.unlisted_prefix is not None:
                view.unlisted.append(failure.unlisted_prefix)
            elif failure.doc_id is not None and failure.acl is not None:
                view.acls.setdefault(failure.doc_id, failure.acl)
    for ident in connector.identities(None):
        for m in ident.memberships:
            view.groups.setdefault(m.member, set()).add(m.group)
        view.aliases.extend((a.alias, a.primary) for a in ident.aliases)
        if ident.failures and view.identity_failure is None:
            view.identity_failure = ident.failures[0].reason
    return view


@dataclass(frozen=True)
class Seen:
    """What one person was shown for one question."""

    user: str
    question: str
    hits: tuple[str, ...]
    cited: tuple[str, ...]


def audit(seen: Iterable[Seen], views: dict[str, SourceView],
          indexed_acl: Callable[[str], Acl | None] | None = None,
          indexed_held: Callable[[str, str], frozenset[str]] | None = None) -> list[Leak]:
    """Every (person, document) shown that the source refuses now, once, in the order met.

    `indexed_acl(doc_id)` and `indexed_held(email, connector)`: what the index holds, to say
    why it disagrees with the source (a stale ACL, stale groups, or neither: a filter bug)."""
    leaks: dict[tuple[str, str], Leak] = {}
    for s in seen:
        shown = [(d, "search hit") for d in s.hits] + [(d, "citation") for d in s.cited]
        for doc_id, how in shown:
            if (s.user, doc_id) in leaks:
                continue
            connector = doc_id.split(":", 1)[0]
            view = views.get(connector)
            reason = (f"connector {connector!r} is not configured" if view is None
                      else view.refusal(s.user, doc_id))
            if reason is None:
                continue
            if view is not None and doc_id in view.acls and not reason.startswith("unverified"):
                reason += _why_stale(view, s.user, doc_id, indexed_acl, indexed_held)
            leaks[(s.user, doc_id)] = Leak(s.user, doc_id,
                                           f"{how} for {s.question!r}: {reason}")
    return list(leaks.values())


def _why_stale(view: SourceView, email: str, doc_id: str,
               indexed_acl: Callable[[str], Acl | None] | None,
               indexed_held: Callable[[str, str], frozenset[str]] | None) -> str:
    if indexed_acl is not None and indexed_acl(doc_id) != view.acls[doc_id]:
        return "; the index still holds an older ACL (run a permission sync)"
    if indexed_held is not None and indexed_held(email, view.connector) != frozenset(
            view.held(email)):
        return ("; this person's groups at the source changed since the index's last group "
                "sync (run a group sync)")
    if indexed_acl is None or indexed_held is None:
        return ""
    return "; the index holds this same ACL and the same groups (a filter bug)"


def people(questions: Sequence[Any]) -> list[str]:
    """Everyone named in the question file, in order of first appearance."""
    return list(dict.fromkeys(q.email for q in questions))
