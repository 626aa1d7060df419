"""An email the issuer has not verified never becomes the identity (generic OIDC): bearer
tokens on the API and ID tokens at sign-in go through the same rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from apps.web.oidc import InvalidToken, person_of
from tests.web.conftest import Web
from tests.web.corpus import CEO

pytestmark = pytest.mark.integration

ASK = {"question": "When does the board vote on the Nightjar acquisition?"}


@pytest.mark.parametrize("verified", [False, "false", "False", 0, None, "yes"])
def test_an_unverified_email_is_refused_on_the_api(make_web: Callable[..., Web],
                                                   verified: Any) -> None:
    web = make_web()
    token = web.token(CEO, email_verified="drop-me" if verified is None else verified)
    if verified is None:  # the claim present with a null value
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
        claims["email_verified"] = None
        token = web.idp.sign(claims)
    r = web.api("/api/ask", ASK, token)
    assert r.status_code == 401 and "not verified" in r.json()["error"]
    assert "Nightjar" not in r.text.replace(ASK["question"], "")


@pytest.mark.parametrize("verified", [True, "true", "absent"])
def test_a_verified_or_unstated_email_is_the_person(make_web: Callable[..., Web],
                                                    verified: Any) -> None:
    web = make_web()
    token = web.token(CEO) if verified == "absent" else web.token(CEO, email_verified=verified)
    r = web.api("/api/ask", ASK, token)
    assert r.status_code == 200, r.text
    assert not r.json()["refused"]  # the CEO reads the exec plan


def test_an_unverified_email_is_not_replaced_by_a_weaker_claim() -> None:
    claims = {"email": "ceo@acme.com", "email_verified": False,
              "preferred_username": "ceo@acme.com"}
    with pytest.raises(InvalidToken, match="not verified"):
        person_of(claims)
    assert person_of({"preferred_username": "ada@acme.com", "email_verified": False}) \
        == "ada@acme.com"  # no email claim: the verification flag is about nothing
