"""Identity resolution against a real SqliteStore: groups (nested, cyclic), aliases, explain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from auth.identity import CachedResolver, explain, resolve
from core.acl import Acl
from core.models import Alias, Membership, ambiguous_aliases
from indexer.store.sqlite import SqliteStore
from retriever.filters import acl_filter

pytestmark = pytest.mark.unit

BOB = "user:bob@acme.example"


def m(group: str, member: str) -> Membership:
    return Membership(group=group, member=member)


@pytest.fixture
def ids(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "identity.sqlite3")
    s.replace_identities("docs", [
        m("group:eng", "group:platform"),
        m("group:platform", "group:sre"),
        m("group:sre", BOB),
        m("group:hr", "user:hana@acme.example"),
        m("group:a", "group:b"),
        m("group:b", "group:a"),
        m("group:b", "user:cy@acme.example"),
        m("group:contractors", "user:ext@other.example"),
    ], [])
    yield s
    s.close()


def test_direct_group(ids: SqliteStore) -> None:
    hana = resolve(ids, "hana@acme.example")
    assert hana.principals == {
        "user:hana@acme.example", "group:hr", "domain:acme.example", "everyone"}
    assert hana.path("group:hr") == ["group:hr", "user:hana@acme.example"]


def test_nested_groups_three_deep(ids: SqliteStore) -> None:
    bob = resolve(ids, "Bob@ACME.example")
    assert bob.email == "bob@acme.example"
    assert bob.principals == {
        BOB, "group:sre", "group:platform", "group:eng", "domain:acme.example", "everyone"}
    assert bob.path("group:eng") == ["group:eng", "group:platform", "group:sre", BOB]
    assert "group:hr" not in bob.principals  # no leaking across branches


def test_membership_is_directed_a_group_member_does_not_get_its_members_groups(
        ids: SqliteStore) -> None:
    # platform is a member of eng; eng being somewhere does not put bob in *sub*groups of eng.
    ids.replace_identities("other", [m("group:eng", "user:ed@acme.example")], [])
    ed = resolve(ids, "ed@acme.example")
    assert "group:eng" in ed.principals
    assert not {"group:platform", "group:sre"} & ed.principals


def test_cycle_terminates_and_gives_both_groups(ids: SqliteStore) -> None:
    cy = resolve(ids, "cy@acme.example")
    assert {"group:a", "group:b"} <= cy.principals
    assert cy.path("group:a") == ["group:a", "group:b", "user:cy@acme.example"]
    assert cy.path("group:b") == ["group:b", "user:cy@acme.example"]


def test_self_loop_and_longer_cycle(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "x.sqlite3")
    s.replace_identities("docs", [
        m("group:x", "group:x"),
        m("group:x", "user:u@acme.example"),
        m("group:p", "group:x"), m("group:q", "group:p"), m("group:x", "group:q"),
    ], [])
    u = resolve(s, "u@acme.example")
    assert {"group:x", "group:p", "group:q"} <= u.principals
    assert u.path("group:q") == ["group:q", "group:p", "group:x", "user:u@acme.example"]
    s.close()


def test_domain_and_everyone_for_a_known_user(ids: SqliteStore) -> None:
    ext = resolve(ids, "ext@other.example")
    assert ext.principals == {
        "user:ext@other.example", "group:contractors", "domain:other.example", "everyone"}
    assert "domain:acme.example" not in ext.principals


def test_unknown_user_gets_only_self_domain_and_everyone(ids: SqliteStore) -> None:
    assert resolve(ids, "zed@acme.example").principals == {
        "user:zed@acme.example", "domain:acme.example", "everyone"}
    assert resolve(ids, "nobody@nowhere.example").principals == {
        "user:nobody@nowhere.example", "domain:nowhere.example", "everyone"}
    assert resolve(ids, "nodomain").principals == {"user:nodomain", "everyone"}


def test_groups_from_several_sources_add_up(ids: SqliteStore) -> None:
    ids.replace_identities("wiki", [m("group:wiki:42", BOB)], [])
    bob = resolve(ids, BOB.removeprefix("user:"))
    assert {"group:wiki:42", "group:eng"} <= bob.principals


# -- aliases ----------------------------------------------------------------------------------
@pytest.fixture
def aliased(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "alias.sqlite3")
    s.replace_identities("entra", [
        m("group:mail-only", "user:dana@acme.example"),
        m("group:upn-only", "user:d.smith@corp.acme.example"),
        m("group:third", "user:dana@old.example"),
    ], [
        Alias(alias="d.smith@corp.acme.example", primary="dana@acme.example"),
        Alias(alias="dana@old.example", primary="dana@acme.example"),
    ])
    yield s
    s.close()


def test_a_person_holds_the_addresses_a_source_lists_for_them_there(
        aliased: SqliteStore) -> None:
    dana = resolve(aliased, "Dana@ACME.example")
    at_entra = dana.at("entra")
    assert {"group:mail-only", "group:upn-only", "group:third"} <= at_entra.principals
    assert {"user:dana@acme.example", "user:d.smith@corp.acme.example",
            "user:dana@old.example"} <= at_entra.principals
    assert {"domain:acme.example", "domain:corp.acme.example",
            "domain:old.example"} <= at_entra.principals
    assert at_entra.path("group:upn-only") == [
        "group:upn-only", "user:d.smith@corp.acme.example", "user:dana@acme.example"]


@pytest.mark.parametrize("ask_as", ["d.smith@corp.acme.example", "Dana@Old.Example"])
def test_aliases_are_one_way_signing_in_as_an_alias_never_becomes_its_primary(
        aliased: SqliteStore, ask_as: str) -> None:
    who = resolve(aliased, ask_as).at("entra")
    assert "user:dana@acme.example" not in who.principals
    assert "group:mail-only" not in who.principals
    assert "domain:acme.example" not in who.principals


def test_an_alias_admits_only_to_the_documents_of_the_source_that_asserted_it(
        aliased: SqliteStore) -> None:
    # "files" asserts that mallory is also ceo@acme.example: that holds at "files" only.
    aliased.replace_identities("files", [], [Alias("ceo@acme.example", "mallory@acme.example")])
    aliased.replace_identities("hr", [m("group:hr:exec", "user:ceo@acme.example")], [])
    mallory = resolve(aliased, "mallory@acme.example", ["files", "hr", "entra"])
    assert "user:ceo@acme.example" in mallory.at("files").principals
    assert "user:ceo@acme.example" not in mallory.at("hr").principals
    assert "group:hr:exec" not in mallory.at("hr").principals  # nor the groups it is in there
    assert "user:ceo@acme.example" not in mallory.at("entra").principals
    assert "user:ceo@acme.example" not in mallory.at("never-synced").principals
    ceo_doc = Acl.single(["user:ceo@acme.example"])
    f = acl_filter(mallory)
    assert f.admits("files", ceo_doc)
    assert not f.admits("hr", ceo_doc) and not f.admits("entra", ceo_doc)


@pytest.mark.parametrize("asker", ["alice@acme.example", "bob@acme.example"])
def test_an_address_claimed_by_two_people_grants_neither_of_them_anything(
        tmp_path: Path, asker: str) -> None:
    s = SqliteStore(tmp_path / "shared.sqlite3")
    s.replace_identities("mail", [m("group:mail:finance", "user:shared@acme.example")], [
        Alias("shared@acme.example", "alice@acme.example"),
        Alias("shared@acme.example", "bob@acme.example"),
        Alias("alice.old@acme.example", "alice@acme.example"),
    ])
    who = resolve(s, asker)
    assert "user:shared@acme.example" not in who.at("mail").principals
    assert "group:mail:finance" not in who.at("mail").principals
    assert "shared@acme.example" in who.ambiguous  # reported
    if asker == "alice@acme.example":  # her own, unambiguous alias still counts
        assert "user:alice.old@acme.example" in who.at("mail").principals
    # Signing in as the shared address itself picks neither claimant.
    shared = resolve(s, "shared@acme.example").at("mail")
    assert "user:alice@acme.example" not in shared.principals
    assert "user:bob@acme.example" not in shared.principals
    assert "user:alice.old@acme.example" not in shared.principals
    assert "group:mail:finance" in shared.principals  # what the address itself holds
    s.close()


def test_an_alias_onto_another_persons_primary_address_is_ambiguous(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "hijack.sqlite3")
    s.replace_identities("docs", [], [Alias("ceo@acme.example", "mallory@acme.example"),
                                      Alias("ceo.old@acme.example", "ceo@acme.example")])
    mallory = resolve(s, "mallory@acme.example")
    assert "user:ceo@acme.example" not in mallory.at("docs").principals
    assert "ceo@acme.example" in mallory.ambiguous
    assert ambiguous_aliases(s.aliases_of("ceo@acme.example")) == {
        "ceo@acme.example": ["ceo@acme.example", "mallory@acme.example"]}
    s.close()


def test_alias_does_not_leak_to_an_unrelated_person(aliased: SqliteStore) -> None:
    aliased.replace_identities("hr", [m("group:hr", "user:erin@acme.example")], [])
    erin = resolve(aliased, "erin@acme.example")
    assert erin.principals == {"user:erin@acme.example", "group:hr", "domain:acme.example",
                               "everyone"}
    dana = resolve(aliased, "dana@acme.example")
    assert "group:hr" not in dana.principals


# -- group sync replaces ----------------------------------------------------------------------
def test_group_sync_replacement_removes_a_membership_and_the_cache_sees_it(
        ids: SqliteStore) -> None:
    resolver = CachedResolver(ids)
    assert "group:eng" in resolver("bob@acme.example").principals
    assert resolver("bob@acme.example") is resolver("BOB@acme.example")  # cached
    # The next snapshot of the same source no longer has sre inside platform.
    ids.replace_identities("docs", [
        m("group:eng", "group:platform"),
        m("group:sre", BOB),
    ], [])
    bob = resolver("bob@acme.example")
    assert "group:sre" in bob.principals
    assert not {"group:platform", "group:eng"} & bob.principals
    assert resolve(ids, "hana@acme.example").principals == {
        "user:hana@acme.example", "domain:acme.example", "everyone"}


def test_replacing_one_source_keeps_the_others(ids: SqliteStore) -> None:
    ids.replace_identities("wiki", [m("group:wiki:1", BOB)], [])
    ids.replace_identities("wiki", [], [])
    bob = resolve(ids, "bob@acme.example")
    assert "group:wiki:1" not in bob.principals
    assert "group:eng" in bob.principals


def test_cached_resolver_picks_up_a_new_membership(ids: SqliteStore) -> None:
    resolver = CachedResolver(ids)
    assert "group:hr" not in resolver("bob@acme.example").principals
    ids.replace_identities("hr-sync", [m("group:hr", BOB)], [])
    assert "group:hr" in resolver("bob@acme.example").principals


# -- explain ----------------------------------------------------------------------------------
def test_explain_allowed_lists_the_admitting_principal_and_path_of_every_gate(
        ids: SqliteStore) -> None:
    bob = resolve(ids, "bob@acme.example")
    acl = Acl.of([["domain:acme.example"], ["group:eng", "group:hr"]])
    d = explain(acl, bob)
    assert d.allowed
    assert acl.allows(bob.principals)
    assert [g.admitted_by for g in d.gates] == ["domain:acme.example", "group:eng"]
    assert d.gates[1].path == ("group:eng", "group:platform", "group:sre", BOB)
    lines = d.lines()
    assert lines[0].startswith("yes")
    assert "  gate 0: admitted by domain:acme.example <- user:bob@acme.example" in lines
    assert ("  gate 1: admitted by group:eng <- group:platform <- group:sre "
            "<- user:bob@acme.example") in lines
    assert d.to_json()["gates"][1]["path"] == list(d.gates[1].path)


def test_explain_path_string_two_levels(tmp_path: Path) -> None:
    s = SqliteStore(tmp_path / "p.sqlite3")
    s.replace_identities("docs", [m("group:eng", "group:platform"), m("group:platform", BOB)], [])
    d = explain(Acl.single(["group:eng"]), resolve(s, "bob@acme.example"))
    assert d.allowed
    assert " <- ".join(d.gates[0].path) == "group:eng <- group:platform <- user:bob@acme.example"
    assert d.lines()[1] == (
        "  gate 0: admitted by group:eng <- group:platform <- user:bob@acme.example")
    s.close()


def test_explain_prefers_the_most_direct_principal(ids: SqliteStore) -> None:
    bob = resolve(ids, "bob@acme.example")
    d = explain(Acl.single(["group:eng", BOB]), bob)
    assert d.gates[0].admitted_by == BOB
    assert d.gates[0].path == (BOB,)


def test_explain_names_the_gate_not_met(ids: SqliteStore) -> None:
    hana = resolve(ids, "hana@acme.example")
    acl = Acl.of([["domain:acme.example"], ["group:eng"]])
    d = explain(acl, hana)
    assert not d.allowed
    assert not acl.allows(hana.principals)
    assert "gate 1" in d.reason
    assert d.gates[0].admitted_by == "domain:acme.example"
    assert d.gates[1].admitted_by is None
    assert d.gates[1].members == {"group:eng"}
    assert "  gate 1: not met; needs one of group:eng" in d.lines()


def test_explain_deny_names_the_principal_and_its_path(ids: SqliteStore) -> None:
    bob = resolve(ids, "bob@acme.example")
    acl = Acl.single(["domain:acme.example"], deny=["group:platform"])
    d = explain(acl, bob)
    assert not d.allowed
    assert not acl.allows(bob.principals)
    assert d.denied_by == "group:platform"
    assert d.deny_path == ("group:platform", "group:sre", BOB)
    assert d.reason == "denied by group:platform"
    assert "  deny: group:platform <- group:sre <- user:bob@acme.example" in d.lines()
    # Someone outside the denied group is admitted by the same ACL.
    assert explain(acl, resolve(ids, "hana@acme.example")).allowed


def test_explain_no_acl_says_readable_by_nobody(ids: SqliteStore) -> None:
    bob = resolve(ids, "bob@acme.example")
    d = explain(Acl(), bob)
    assert not d.allowed
    assert d.reason == "no ACL: readable by nobody"
    assert d.lines() == ["no: no ACL: readable by nobody"]


@pytest.mark.parametrize("acl", [
    Acl.single([]), Acl.single(["role:admin", "everyone"]), Acl.nobody("fetch failed")])
def test_explain_other_fail_closed_acls_refuse_with_the_reason(
        ids: SqliteStore, acl: Acl) -> None:
    d = explain(acl, resolve(ids, "bob@acme.example"))
    assert not d.allowed
    assert d.reason.startswith("readable by nobody (")
    assert acl.nobody_reason in d.reason


def test_explain_agrees_with_allows_for_every_person(ids: SqliteStore) -> None:
    acls = [
        Acl.single(["everyone"]), Acl.single(["group:eng"]), Acl.single(["group:a"]),
        Acl.of([["domain:acme.example"], ["group:hr", "group:b"]]),
        Acl.single(["everyone"], deny=["group:eng"]), Acl.single(["domain:other.example"]),
    ]
    people = ["bob@acme.example", "hana@acme.example", "cy@acme.example",
              "ext@other.example", "zed@acme.example"]
    for email in people:
        who = resolve(ids, email)
        for acl in acls:
            assert explain(acl, who).allowed == acl.allows(who.principals), (email, acl)
