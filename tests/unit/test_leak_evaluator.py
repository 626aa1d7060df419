"""The leak audit's own access evaluator (assistant/leaks.py), which shares no code with the
retriever's filter: gates intersect, deny wins, groups nest, aliases are one-way and an address
two people claim grants nothing, and whatever the source cannot confirm is never "allowed".
Each rule is checked on both sides (who is admitted, who is refused), and against core.acl on
random ACLs so that the two independent implementations agree."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assistant.leaks import Seen, SourceView, audit, read_source
from connectors.base import Capabilities, ContentPage, Failure, IdentityPage, PermissionPage
from core.acl import Acl
from core.models import Alias, Membership

pytestmark = pytest.mark.unit

ADA, BO, CY = "ada@acme.example", "bo@acme.example", "cy@other.example"
ENG, LEADS, HR = "group:s:eng", "group:s:leads", "group:s:hr"


def view(acls: dict[str, Acl], groups: list[tuple[str, str]] = (),  # type: ignore[assignment]
         aliases: list[tuple[str, str]] = ()) -> SourceView:  # type: ignore[assignment]
    v = SourceView("s", acls=dict(acls), aliases=list(aliases))
    for member, group in groups:
        v.groups.setdefault(member, set()).add(group)
    return v


def test_gates_intersect_and_nested_groups_admit() -> None:
    v = view({"s:plan": Acl.of([[LEADS], ["domain:acme.example"]])},
             groups=[(f"user:{ADA}", ENG), (ENG, LEADS)])
    assert v.refusal(ADA, "s:plan") is None  # via eng -> leads, and the domain
    refused = v.refusal(BO, "s:plan")
    assert refused is not None and "gate 1" in refused
    assert v.refusal(CY, "s:plan") is not None  # wrong domain and no group


def test_deny_beats_every_gate() -> None:
    v = view({"s:x": Acl.of([["everyone"]], deny=[ENG])}, groups=[(f"user:{ADA}", ENG)])
    assert v.refusal(ADA, "s:x") == f"denied at the source by {ENG}"
    assert v.refusal(BO, "s:x") is None


def test_membership_cycles_terminate() -> None:
    v = view({"s:x": Acl.of([[HR]])}, groups=[(f"user:{ADA}", ENG), (ENG, LEADS), (LEADS, ENG)])
    assert v.refusal(ADA, "s:x") is not None
    assert v.held(ADA) >= {ENG, LEADS}


def test_aliases_are_one_way_and_a_shared_address_grants_nothing() -> None:
    acl = Acl.of([["user:ada.old@acme.example"]])
    v = view({"s:x": acl}, aliases=[("ada.old@acme.example", ADA)])
    assert v.refusal(ADA, "s:x") is None  # ada's own old address
    assert v.refusal("ada.old@acme.example", "s:x") is None  # the address itself
    # the alias never makes its holder the primary
    assert view({"s:y": Acl.of([[f"user:{ADA}"]])}, aliases=[("ada.old@acme.example", ADA)]
                ).refusal("ada.old@acme.example", "s:y") is not None
    shared = view({"s:x": acl}, aliases=[("ada.old@acme.example", ADA),
                                         ("ada.old@acme.example", BO)])
    assert shared.refusal(ADA, "s:x") is not None and shared.refusal(BO, "s:x") is not None


@pytest.mark.parametrize("acl", [
    Acl.nobody("permissions could not be fetched"), Acl(), Acl(gates=(frozenset(),)),
    Acl.of([["role:admin"]]),
])
def test_what_admits_nobody_admits_nobody(acl: Acl) -> None:
    v = view({"s:x": acl})
    assert v.refusal(ADA, "s:x") is not None


def test_vanished_unlisted_and_unverified() -> None:
    v = view({"s:team/x": Acl.of([[ENG]]), "s:pub": Acl.of([["everyone"]])})
    v.unlisted.append("s:secret/")
    assert "no longer at the source" in (v.refusal(ADA, "s:gone") or "")
    assert (v.refusal(ADA, "s:secret/y") or "").startswith("unverified")
    v.identity_failure = "groups.json unreadable"
    assert (v.refusal(ADA, "s:team/x") or "").startswith("unverified")
    assert v.refusal(ADA, "s:pub") is None  # no group involved: still decided


def test_audit_reports_each_person_and_document_once_and_says_why() -> None:
    v = view({"s:a": Acl.of([[ENG]]), "s:b": Acl.of([["everyone"]])},
             groups=[(f"user:{ADA}", ENG)])
    seen = [Seen(BO, "q1", ("s:a", "s:b"), ("s:a",)), Seen(BO, "q2", ("s:a",), ()),
            Seen(ADA, "q1", ("s:a", "s:b"), ("s:a",)), Seen(CY, "q3", ("t:z",), ())]
    stale = audit(seen, {"s": v}, lambda d: Acl.of([["everyone"]]),
                  lambda e, c: frozenset({f"user:{e}", "everyone"}))
    assert [(x.user, x.doc_id) for x in stale] == [(BO, "s:a"), (CY, "t:z")]
    assert stale[0].reason.startswith("search hit for 'q1'") and "older ACL" in stale[0].reason
    assert "not configured" in stale[1].reason
    same = audit(seen[:1], {"s": v}, lambda d: v.acls[d], lambda e, c: frozenset(v.held(e)))
    assert "a filter bug" in same[0].reason
    groups = audit(seen[:1], {"s": v}, lambda d: v.acls[d], lambda e, c: frozenset({ENG}))
    assert "groups at the source changed" in groups[0].reason
    cited = audit([Seen(BO, "q", (), ("s:a",))], {"s": v})
    assert cited[0].reason.startswith("citation for 'q'")


class _Source:
    name, kind = "s", "test"
    capabilities = Capabilities()

    def content(self, cursor: str | None = None) -> Iterator[ContentPage]:
        raise AssertionError("the audit never reads content")

    def permissions(self, cursor: str | None = None) -> Iterator[PermissionPage]:
        assert cursor is None
        yield PermissionPage((("s:a", Acl.of([[ENG]])),), cursor="1")
        yield PermissionPage((), failures=(
            Failure("secret/", "403", scope="listing", unlisted_prefix="s:secret/"),
            Failure("b", "acl broken", doc_id="s:b", acl=Acl.nobody("acl broken"))))

    def identities(self, cursor: str | None = None) -> Iterator[IdentityPage]:
        yield IdentityPage((Membership(ENG, f"user:{ADA}"),), (Alias("a2@acme.example", ADA),))
        yield IdentityPage(failures=(Failure("groups", "page 2 timed out", scope="identities"),))


def test_read_source_collects_every_page_of_both_passes() -> None:
    v = read_source(_Source())  # type: ignore[arg-type]
    assert set(v.acls) == {"s:a", "s:b"} and v.unlisted == ["s:secret/"]
    assert v.groups == {f"user:{ADA}": {ENG}} and v.aliases == [("a2@acme.example", ADA)]
    assert v.identity_failure == "page 2 timed out"
    assert (v.refusal(ADA, "s:a") or "").startswith("unverified")  # groups incomplete
    assert "could not be read" in (v.refusal(ADA, "s:b") or "")


PRINCIPALS = ["everyone", "domain:acme.example", "domain:other.example", f"user:{ADA}",
              f"user:{BO}", f"user:{CY}", ENG, LEADS, HR]


@given(st.lists(st.sets(st.sampled_from(PRINCIPALS), min_size=1), min_size=1, max_size=3),
       st.sets(st.sampled_from(PRINCIPALS), max_size=2), st.sampled_from([ADA, BO, CY]))
def test_agrees_with_core_acl_on_random_acls(gates: list[set[str]], deny: set[str],
                                             email: str) -> None:
    acl = Acl.of(gates, deny)
    v = view({"s:x": acl}, groups=[(f"user:{ADA}", ENG), (ENG, LEADS), (f"user:{BO}", HR)])
    assert (v.refusal(email, "s:x") is None) == acl.allows(v.held(email))
