"""The JSON API: bearer tokens from the configured issuer only, the denied side, conversations
that belong to their owner, limits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.web.conftest import CLIENT_ID, Web
from tests.web.corpus import ADA, CEO, SECRET_DOC, SECRET_TITLE, SECRET_WORDS

pytestmark = pytest.mark.integration
ROUTES: list[tuple[str, dict[str, Any]]] = [
    ("/api/search", {"query": "Nightjar acquisition"}),
    ("/api/ask", {"question": "When does the board vote on the Nightjar acquisition?"}),
]


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


def forged_tokens(web: Web) -> dict[str, str]:
    now = int(time.time())
    good = {"iss": web.idp_url, "aud": CLIENT_ID, "sub": "ceo", "email": CEO, "iat": now,
            "nbf": now, "exp": now + 600}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {"kid": web.idp.kid}
    return {
        "forged signature": jwt.encode(good, other_key, algorithm="RS256", headers=header),
        "expired": web.token(CEO, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "not yet valid": web.token(CEO, nbf=now + 3600),
        "wrong audience": web.token(CEO, aud="another-app"),
        "wrong issuer": web.token(CEO, iss="http://127.0.0.1:1/evil"),
        "alg none": web.idp.sign(good, alg="none"),
        "hs256 with the public key": _hs256_with_public_key(web, good),
        "unknown kid": web.idp.sign(good, kid="nope"),
        "no exp": web.idp.sign({k: v for k, v in good.items() if k != "exp"}),
        "no person": web.idp.sign({k: v for k, v in good.items() if k != "email"}),
        "garbage": "not.a.jwt",
        "tampered payload": _tamper(web.token(ADA), email=CEO),
    }


def _hs256_with_public_key(web: Web, claims: dict[str, Any]) -> str:
    """The key-confusion attack: HMAC-signed with the issuer's public key as the secret."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import serialization

    pem = web.idp.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    enc = jwt.utils.base64url_encode
    head = enc(json.dumps({"alg": "HS256", "typ": "JWT", "kid": web.idp.kid}).encode())
    body = enc(json.dumps(claims).encode())
    sig = enc(hmac.new(pem, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def _tamper(token: str, **claims: Any) -> str:
    head, payload, sig = token.split(".")
    body = jwt.utils.base64url_decode(payload)
    data = {**json.loads(body), **claims}
    return ".".join([head, jwt.utils.base64url_encode(json.dumps(data).encode()).decode(), sig])


@pytest.mark.parametrize("path,body", ROUTES)
def test_bad_tokens_are_refused_on_every_route(web: Web, path: str,
                                               body: dict[str, Any]) -> None:
    assert web.api(path, body, web.token(CEO)).status_code == 200  # the control
    for name, token in forged_tokens(web).items():
        r = web.api(path, body, token)
        assert r.status_code == 401, name
        assert r.headers["content-type"].startswith("application/json")
        assert "error" in r.json(), name
        assert not any(w in r.text for w in SECRET_WORDS), name
    r = web.api(path, body, None)
    assert r.status_code == 401 and "error" in r.json()


def test_search_shape_and_the_denied_side(web: Web) -> None:
    ceo = web.api("/api/search", {"query": "Nightjar acquisition", "k": 5}, web.token(CEO))
    assert ceo.status_code == 200
    hits = ceo.json()["hits"]
    assert set(hits[0]) == {"doc_id", "title", "url", "score", "snippet"}
    assert SECRET_DOC in [h["doc_id"] for h in hits]
    ada = web.api("/api/search", {"query": "Nightjar acquisition", "k": 5}, web.token(ADA))
    assert ada.status_code == 200
    assert SECRET_DOC not in [h["doc_id"] for h in ada.json()["hits"]]
    assert SECRET_TITLE not in ada.text and not any(w in ada.text for w in SECRET_WORDS)


def test_ask_shape_and_the_denied_side(web: Web) -> None:
    q = {"question": "When does the board vote on the Nightjar acquisition?"}
    ceo = web.api("/api/ask", q, web.token(CEO)).json()
    assert set(ceo) == {"answer", "citations", "refused", "conversation_id"}
    assert not ceo["refused"] and SECRET_DOC in [c["doc_id"] for c in ceo["citations"]]
    ada = web.api("/api/ask", q, web.token(ADA))
    assert ada.status_code == 200
    assert SECRET_DOC not in [c["doc_id"] for c in ada.json()["citations"]]
    assert SECRET_TITLE not in ada.text and not any(w in ada.text for w in SECRET_WORDS)


def test_another_persons_conversation_id_gives_nothing(web: Web) -> None:
    first = web.api("/api/ask", {"question": "What is Acme paying for Lumen Robotics?"},
                    web.token(CEO)).json()
    conversation = first["conversation_id"]
    assert any(w in first["answer"] for w in SECRET_WORDS)
    # Ada reuses the CEO's conversation id with a follow-up that leans on its history.
    ada = web.api("/api/ask", {"question": "And when does the board vote on it?",
                               "conversation_id": conversation}, web.token(ADA))
    assert ada.status_code == 200
    assert not any(w in ada.text for w in SECRET_WORDS)
    assert SECRET_DOC not in [c["doc_id"] for c in ada.json()["citations"]]
    # The CEO's own follow-up in it still has the history.
    follow = web.api("/api/ask", {"question": "And when does the board vote on it?",
                                  "conversation_id": conversation}, web.token(CEO)).json()
    assert SECRET_DOC in [c["doc_id"] for c in follow["citations"]]


@pytest.mark.parametrize("body", [
    {}, {"question": ""}, {"question": 3}, {"question": ["x"]}, {"question": "x" * 5000},
    {"question": "ok", "conversation_id": "../../etc"}, {"question": "ok", "conversation_id": 7},
    {"question": "a\x00b"},
])
def test_malformed_ask_bodies_are_400(web: Web, body: dict[str, Any]) -> None:
    r = web.api("/api/ask", body, web.token(CEO))
    assert r.status_code == 400 and "error" in r.json()


def test_non_json_and_huge_bodies(web: Web) -> None:
    import requests

    headers = {"Authorization": f"Bearer {web.token(CEO)}", "Content-Type": "application/json"}
    r = requests.post(f"{web.url}/api/search", data=b"{nope", headers=headers, timeout=10)
    assert r.status_code == 400
    r = requests.post(f"{web.url}/api/search", data=b"[1, 2]", headers=headers, timeout=10)
    assert r.status_code == 400
    r = requests.post(f"{web.url}/api/search", data=b"x" * 200_000, headers=headers, timeout=10)
    assert r.status_code == 413
    r = requests.post(f"{web.url}/api/search", data=iter([b"{", b" " * 100_000, b"}"]),
                      headers=headers, timeout=10)  # chunked: no Content-Length to check
    assert r.status_code == 413
    for k in (0, -1, 51, "3", True, 2.5):
        r = web.api("/api/search", {"query": "leave", "k": k}, web.token(CEO))
        assert r.status_code == 400, k


def test_asking_is_rate_limited_per_person(make_web: Callable[..., Web]) -> None:
    web = make_web(asks_per_minute=3)
    q = {"question": "How many days of annual leave?"}
    codes = [web.api("/api/ask", q, web.token(ADA)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert web.api("/api/ask", q, web.token(CEO)).status_code == 200  # someone else's budget


def test_security_headers_on_every_answer(web: Web) -> None:
    import requests

    for r in (requests.get(f"{web.url}/", timeout=10),
              web.api("/api/ask", {"question": "leave"}, None),
              requests.get(f"{web.url}/static/app.js", timeout=10)):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"


def test_every_new_conversation_id_is_one_the_api_accepts_back() -> None:
    """A fresh id must pass the same check its follow-up goes through (a url-safe token
    starting with "-" or "_" did not: a 400 on one new conversation in 32)."""
    from apps.web.app import _conversation
    from assistant.conversations import ConversationStore

    ids = {_conversation({}) for _ in range(2000)}
    assert len(ids) == 2000
    assert all(ConversationStore.check_name(i) == i for i in ids)
    assert _conversation({"conversation_id": next(iter(ids))}) in ids
