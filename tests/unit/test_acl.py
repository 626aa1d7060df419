"""`Acl` semantics: gates are intersected, deny beats allow, everything doubtful fails closed."""

from __future__ import annotations

import pytest

from core import principals as P
from core.acl import Acl, AclFilter

pytestmark = pytest.mark.unit

ADA = "user:ada@acme.example"
BOB = "user:bob@acme.example"
EVE = "user:eve@other.example"
ENG = "group:eng"
HR = "group:hr"
ACME = "domain:acme.example"
OTHER = "domain:other.example"
EVERYONE = "everyone"


def held(*principals: str) -> frozenset[str]:
    return frozenset(principals)


# Callers as the resolver would build them (always with `everyone`).
ADA_ENG = held(ADA, ENG, ACME, EVERYONE)
BOB_HR = held(BOB, HR, ACME, EVERYONE)
EVE_OUT = held(EVE, OTHER, EVERYONE)
NOBODY_SPECIAL = held(EVERYONE)


def every_principal_and(*extra: str) -> frozenset[str]:
    """A caller who holds every principal in these tests (and `extra`): the strongest reader."""
    return held(ADA, BOB, EVE, ENG, HR, ACME, OTHER, EVERYONE, *extra)


# -- allow ------------------------------------------------------------------------------------
def test_single_gate_admits_a_member_and_refuses_the_rest() -> None:
    acl = Acl.single([ENG, BOB])
    assert acl.readable_by_somebody
    assert acl.nobody_reason is None
    assert acl.allows(ADA_ENG)  # via the group
    assert acl.allows(BOB_HR)  # by name
    assert not acl.allows(EVE_OUT)
    assert not acl.allows(NOBODY_SPECIAL)
    assert not acl.allows(())


def test_single_gate_with_everyone_admits_anyone_but_not_an_empty_caller() -> None:
    acl = Acl.single([EVERYONE])
    assert acl.allows(EVE_OUT)
    assert acl.allows(NOBODY_SPECIAL)
    assert not acl.allows(held(ADA))  # a caller without `everyone` holds nothing of the gate


def test_domain_gate_admits_only_that_domain() -> None:
    acl = Acl.single([ACME])
    assert acl.allows(ADA_ENG)
    assert acl.allows(BOB_HR)
    assert not acl.allows(EVE_OUT)


# -- intersection -----------------------------------------------------------------------------
def test_several_gates_require_one_principal_of_every_gate() -> None:
    acl = Acl.of([[ACME], [ENG, HR], [ADA, EVE]])
    assert acl.allows(ADA_ENG)  # acme + eng + ada
    assert not acl.allows(BOB_HR)  # acme + hr, but neither ada nor eve: third gate unmet
    assert not acl.allows(EVE_OUT)  # eve, but not acme nor eng/hr
    assert not acl.allows(held(EVE, ENG, EVERYONE))  # gates 2 and 3 only
    assert acl.allows(held(EVE, ENG, ACME))  # all three


def test_holding_every_principal_of_one_gate_does_not_satisfy_another() -> None:
    acl = Acl.of([[ENG], [HR]])
    assert not acl.allows(held(ENG, EVERYONE))
    assert not acl.allows(held(HR, EVERYONE))
    assert acl.allows(held(ENG, HR))


def test_everyone_in_one_gate_does_not_open_the_other_gates() -> None:
    acl = Acl.of([[EVERYONE], [ENG]])
    assert acl.allows(ADA_ENG)
    assert not acl.allows(BOB_HR)
    assert not acl.allows(EVE_OUT)


# -- deny -------------------------------------------------------------------------------------
def test_deny_beats_allow_by_name_group_domain_and_everyone() -> None:
    assert not Acl.single([ADA], deny=[ADA]).allows(ADA_ENG)
    assert not Acl.single([ACME], deny=[ENG]).allows(ADA_ENG)
    assert Acl.single([ACME], deny=[ENG]).allows(BOB_HR)  # deny hits only its holders
    assert not Acl.single([EVERYONE], deny=[OTHER]).allows(EVE_OUT)
    assert Acl.single([EVERYONE], deny=[OTHER]).allows(ADA_ENG)
    deny_all = Acl.single([ADA, BOB, EVE], deny=[EVERYONE])
    assert deny_all.readable_by_somebody  # a valid ACL, it just happens to admit no one
    for caller in (ADA_ENG, BOB_HR, EVE_OUT, every_principal_and()):
        assert not deny_all.allows(caller)


def test_deny_beats_every_gate_being_met() -> None:
    acl = Acl.of([[ACME], [ENG]], deny=[ADA])
    assert not acl.allows(ADA_ENG)
    assert acl.allows(held("user:cy@acme.example", ENG, ACME, EVERYONE))


# -- fail closed ------------------------------------------------------------------------------
FAIL_CLOSED = {
    "no gates": Acl(),
    "no gates via of": Acl.of([]),
    "no gates but a deny": Acl.of([], deny=[EVE]),
    "an empty gate": Acl.single([]),
    "an empty gate beside a full one": Acl.of([[EVERYONE], []]),
    "unknown principal type": Acl.single(["role:admin", EVERYONE]),
    "unknown principal type in a second gate": Acl.of([[EVERYONE], [ENG, "role:admin"]]),
    "unknown principal type in deny": Acl.single([EVERYONE], deny=["role:admin"]),
    "user without an email": Acl.single(["user:", EVERYONE]),
    "user without an @": Acl.single(["user:ada", EVERYONE]),
    "bad domain": Acl.single(["domain:localhost", EVERYONE]),
    "group without a name": Acl.single(["group:", EVERYONE]),
    "bare word": Acl.single(["admins", EVERYONE]),
    "nobody(reason)": Acl.nobody("could not fetch the page restrictions"),
    "unknown reason beside open gates": Acl(
        gates=(frozenset({EVERYONE}),), unknown_reason="restrictions unreadable"),
    "from_json: gate not a list": Acl.from_json({"gates": ["everyone"], "deny": []}),
    "from_json: gates not a list": Acl.from_json({"gates": "everyone", "deny": []}),
    "from_json: gates a dict": Acl.from_json({"gates": {"0": ["everyone"]}}),
    "from_json: deny not a list": Acl.from_json({"gates": [["everyone"]], "deny": "user:x@y.z"}),
    "from_json: deny null": Acl.from_json({"gates": [["everyone"]], "deny": None}),
    "from_json: missing gates": Acl.from_json({"deny": []}),
    "from_json: empty object": Acl.from_json({}),
    "from_json: empty gate": Acl.from_json({"gates": [[]], "deny": []}),
    "from_json: number principal": Acl.from_json({"gates": [[1]], "deny": []}),
    "from_json: null principal": Acl.from_json({"gates": [[None, "everyone"]], "deny": []}),
    "from_json: nested list principal": Acl.from_json({"gates": [[["everyone"]]]}),
    "from_json: non-canonical stored user": Acl.from_json({"gates": [["user:Ada@acme.example"]]}),
    "from_json: stored reason": Acl.from_json(
        {"gates": [["everyone"]], "deny": [], "unknown_reason": "fetch failed"}),
}


@pytest.mark.parametrize("acl", list(FAIL_CLOSED.values()), ids=list(FAIL_CLOSED))
def test_fail_closed_acl_is_readable_by_nobody(acl: Acl) -> None:
    assert not acl.readable_by_somebody
    assert acl.nobody_reason  # says why
    strongest = every_principal_and("role:admin", "user:", "user:ada", "domain:localhost",
                                    "group:", "admins", "1", "None", "['everyone']",
                                    "user:Ada@acme.example")
    for caller in (ADA_ENG, BOB_HR, EVE_OUT, NOBODY_SPECIAL, strongest, acl.principals()):
        assert not acl.allows(caller), caller
    assert not AclFilter({"docs": strongest}).admits("docs", acl)


def test_fail_closed_reasons_name_the_cause() -> None:
    assert Acl().nobody_reason == "no ACL"
    assert Acl.single([]).nobody_reason == "an empty gate"
    assert Acl.single(["role:admin"]).nobody_reason == "unknown principal type: role:admin"
    assert Acl.nobody("restrictions unreadable").nobody_reason == "restrictions unreadable"
    assert Acl.from_json({"gates": ["everyone"]}).nobody_reason == "malformed stored ACL"


def test_a_valid_acl_round_trips_through_json_and_keeps_admitting_the_same_people() -> None:
    acl = Acl.of([[ACME, EVE], [ENG]], deny=[BOB])
    again = Acl.from_json(acl.to_json())
    assert again == acl
    assert again.key() == acl.key()
    assert again.allows(ADA_ENG)
    assert not again.allows(held(BOB, ENG, ACME, EVERYONE))
    assert not again.allows(EVE_OUT)
    nobody = Acl.nobody("x")
    assert Acl.from_json(nobody.to_json()) == nobody
    assert not Acl.from_json(nobody.to_json()).allows(every_principal_and())


# -- canonical form ---------------------------------------------------------------------------
def test_principals_are_canonicalised() -> None:
    assert P.canonical("User:Ada@X.COM") == "user:ada@x.com"
    assert P.canonical("  user:Ada@X.com ") == "user:ada@x.com"
    assert P.canonical("DOMAIN:Acme.Example") == "domain:acme.example"
    assert P.canonical("Group:Eng") == "group:Eng"  # group ids keep their case
    assert P.canonical("everyone") == "everyone"
    assert P.canonical("role:Admin") == "role:Admin"  # unknown kinds are left to fail closed


def test_acl_built_from_mixed_case_principals_equals_the_canonical_one() -> None:
    loud = Acl.of([["User:Ada@X.COM", "Domain:ACME.Example"]], deny=["USER:Bob@X.com"])
    quiet = Acl.of([["user:ada@x.com", "domain:acme.example"]], deny=["user:bob@x.com"])
    assert loud == quiet
    assert loud.key() == quiet.key()
    assert loud.readable_by_somebody
    assert loud.allows(held("user:ada@x.com", EVERYONE))
    assert not loud.allows(held("user:bob@x.com", ACME, EVERYONE))  # denied
    assert not loud.allows(held("user:cy@x.com", EVERYONE))
    assert not loud.allows(held("User:Ada@X.COM"))  # callers hold canonical principals only


def test_key_is_equal_for_equal_acls_regardless_of_order_and_duplicates() -> None:
    a = Acl.of([[ADA, BOB, ENG], [ACME]], deny=[EVE, HR])
    b = Acl.of([[ENG, BOB, ADA, BOB], [ACME, ACME]], deny=[HR, EVE, HR])
    assert a == b
    assert a.key() == b.key()
    assert hash(a) == hash(b)


def test_key_differs_when_who_may_read_differs() -> None:
    base = Acl.of([[ADA, BOB]], deny=[EVE])
    others = [
        Acl.of([[ADA]], deny=[EVE]),
        Acl.of([[ADA, BOB]]),
        Acl.of([[ADA, BOB], [ACME]], deny=[EVE]),
        Acl.of([[ADA], [BOB]], deny=[EVE]),  # intersection, not union
        Acl.nobody("x"),
        Acl.nobody("y"),
    ]
    keys = {base.key(), *(o.key() for o in others)}
    assert len(keys) == len(others) + 1


# -- principals helpers -----------------------------------------------------------------------
def test_principals_for_email() -> None:
    assert P.principals_for_email(" Ada@ACME.Example ") == {
        "user:ada@acme.example", "domain:acme.example", "everyone"}
    # No usable domain: the person and `everyone`, never a `domain:` principal.
    assert P.principals_for_email("ada") == {"user:ada", "everyone"}
    assert P.principals_for_email("ada@localhost") == {"user:ada@localhost", "everyone"}


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("ada@acme.example", "acme.example"),
        ("ADA@Acme.Example ", "acme.example"),
        ("ada@mail.acme.example", "mail.acme.example"),
        ("a@b@acme.example", "acme.example"),  # the host is after the last @
        ("ada", None),
        ("", None),
        ("ada@", None),
        ("ada@localhost", None),  # single label
        ("ada@acme.example.", None),
        ("ada@-acme.example", None),
        ("ada@acme_x.example", None),
        ("ada@acme..example", None),
        ("ada@acme example.com", None),
    ],
)
def test_domain_of(email: str, expected: str | None) -> None:
    assert P.domain_of(email) == expected


@pytest.mark.parametrize(
    ("principal", "valid"),
    [
        ("everyone", True),
        ("user:ada@acme.example", True),
        ("group:eng", True),
        ("group:confluence:123", True),
        ("domain:acme.example", True),
        ("Everyone", False),
        ("everyone:", False),
        ("user:", False),
        ("user:ada", False),
        ("user:Ada@acme.example", False),
        ("user: ada@acme.example", False),
        ("group:", False),
        ("group:confluence:", False),
        ("domain:localhost", False),
        ("role:admin", False),
        ("admins", False),
        ("", False),
    ],
)
def test_is_valid(principal: str, valid: bool) -> None:
    assert P.is_valid(principal) is valid


def test_acl_filter_admits_exactly_what_allows_admits() -> None:
    acl = Acl.of([[ACME], [ENG]], deny=[BOB])
    assert AclFilter({"docs": ADA_ENG}).admits("docs", acl)
    assert not AclFilter({"docs": held(BOB, ENG, ACME, EVERYONE)}).admits("docs", acl)
    assert not AclFilter({"docs": EVE_OUT}).admits("docs", acl)


def test_acl_filter_is_per_connector() -> None:
    acl = Acl.of([[ENG]])
    # Held for one connector's documents only: another connector's (or one left out) admit nothing.
    split = AclFilter({"docs": ADA_ENG, "wiki": held(EVERYONE)})
    assert split.admits("docs", acl)
    assert not split.admits("wiki", acl)
    assert not split.admits("removed", Acl.single([EVERYONE]))
    assert split.held("removed") == frozenset()
    # The store terms pair each principal with its connector; nothing unscoped.
    assert all("|" in t for t in split.terms())
    assert P.scope("docs", ENG) in split.terms() and P.scope("wiki", ENG) not in split.terms()
    assert AclFilter.uniform({ENG}, ["a", "b"]).terms() == {"a|" + ENG, "b|" + ENG}
    assert AclFilter({}).terms() == frozenset()


@pytest.mark.parametrize("look_alike", [
    "\u212aim@acme.example",       # KELVIN SIGN: str.lower() makes it "k"
    "k\u0131m@acme.example",       # dotless i
    "\uff4bim@acme.example",       # FULLWIDTH k
    "kim@acme.exampl\u212a",       # in the domain
    "kim@\u0430cme.example",       # Cyrillic a
])
def test_look_alike_characters_never_fold_into_another_address(look_alike: str) -> None:
    assert P.normalize_email(look_alike) != "kim@acme.example"
    assert P.user(look_alike) != "user:kim@acme.example"
    assert P.canonical("user:" + look_alike) != "user:kim@acme.example"
    assert not Acl.single(["user:kim@acme.example"]).allows(P.principals_for_email(look_alike))


def test_ascii_letters_fold_and_nothing_else() -> None:
    assert P.normalize_email("  Kim@ACME.Example ") == "kim@acme.example"
    assert P.fold("ÄÖÜ-ÉÀ-Straße") == "ÄÖÜ-ÉÀ-straße"  # only ASCII S folds; the rest is exact
    assert P.canonical("USER:Kim@Acme.Example") == "user:kim@acme.example"
    assert P.domain("ACME.example") == "domain:acme.example"
