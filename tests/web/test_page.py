"""The page's sign-in and session security over real HTTP: the auth-code flow with PKCE through
the OIDC emulator, cookies, CSRF, logout, session lifetime, the streamed answer, feedback."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.web.conftest import Web
from tests.web.corpus import ADA, CEO, SECRET_DOC, SECRET_WORDS

pytestmark = pytest.mark.integration


def sign_in(web: Web, username: str, password: str) -> requests.Session:
    s = requests.Session()
    r = s.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    authorize = r.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0]
    form_page = s.get(authorize, timeout=10)
    fields = {m.group(1): html.unescape(m.group(2)) for m in re.finditer(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form_page.text)}
    r = s.post(f"{web.idp_url}/authorize", data={**fields, "username": username,
                                                  "password": password},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    r = s.get(r.headers["location"], allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    session_cookie = [c for c in r.raw.headers.getlist("set-cookie")
                      if c.startswith("clearance=")]
    s.headers["X-Test-Set-Cookie"] = session_cookie[0]  # what the callback set
    return s


def csrf_of(s: requests.Session, web: Web) -> str:
    page = s.get(f"{web.url}/", timeout=10).text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found, page
    return found.group(1)


def stream(s: requests.Session, web: Web, question: str, csrf: str,
           conversation: str | None = None) -> list[tuple[str, dict[str, object]]]:
    body: dict[str, object] = {"question": question}
    if conversation:
        body["conversation_id"] = conversation
    r = s.post(f"{web.url}/ask", json=body, headers={"X-CSRF-Token": csrf}, stream=True,
               timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in r.text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


def test_sign_in_sets_a_hardened_session_cookie(web: Web) -> None:
    s = requests.Session()
    r = s.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    assert r.status_code == 303
    signed = sign_in(web, "ceo", "ceo-pass")
    set_cookie = signed.headers.pop("X-Test-Set-Cookie").lower()
    assert set_cookie.startswith("clearance=")
    for attribute in ("httponly", "samesite=lax", "path=/", "max-age=28800"):
        assert attribute in set_cookie, set_cookie
    # plain http on loopback only: over https the cookie is __Host- and Secure (below)
    assert "secure" not in set_cookie
    raw = signed.get(f"{web.url}/", timeout=10)
    assert CEO in raw.text
    # The cookie's attributes as the server sent them.
    login = requests.Session()
    r = login.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    assert [c.name for c in login.cookies] == ["clearance_login"]  # no session before sign-in


def test_callback_checks_state_and_is_single_use(web: Web) -> None:
    s = requests.Session()
    r = s.get(f"{web.url}/auth/callback?code=x&state=forged", timeout=10)
    assert "Sign-in failed" in r.text and "clearance" not in s.cookies
    # a real sign-in's callback URL replayed
    s = requests.Session()
    r = s.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    authorize = r.headers["location"]
    fields = {k: v[0] for k, v in parse_qs(urlsplit(authorize).query).items()}
    r = s.post(f"{web.idp_url}/authorize", data={**fields, "username": "ada",
                                                  "password": "ada-pass"},
               allow_redirects=False, timeout=10)
    callback = r.headers["location"]
    # Login CSRF: the victim's browser, which did not start this sign-in, is not signed in.
    victim = requests.Session()
    r = victim.get(callback, allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "Sign-in failed" in r.text and not victim.cookies
    assert s.get(callback, allow_redirects=False, timeout=10).status_code == 303
    login_cookie = s.cookies.get("clearance_login", path="/auth/callback")
    again = requests.get(callback, allow_redirects=False, timeout=10,
                         cookies={"clearance_login": login_cookie or fields["state"]})
    assert again.status_code == 200 and "Sign-in failed" in again.text  # used once only


def test_token_endpoint_checks_pkce(web: Web) -> None:
    s = requests.Session()
    r = s.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    fields = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    r = s.post(f"{web.idp_url}/authorize", data={**fields, "username": "ada",
                                                  "password": "ada-pass"},
               allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    r = requests.post(f"{web.idp_url}/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": fields["client_id"],
        "redirect_uri": fields["redirect_uri"], "code_verifier": "not-the-verifier"}, timeout=10)
    assert r.status_code == 400 and "PKCE" in r.text


def test_wrong_password_gets_no_code(web: Web) -> None:
    s = requests.Session()
    r = s.get(f"{web.url}/auth/login", allow_redirects=False, timeout=10)
    fields = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}
    r = s.post(f"{web.idp_url}/authorize", data={**fields, "username": "ada",
                                                  "password": "wrong"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 401 and "location" not in r.headers


def test_streamed_answer_citations_and_the_denied_side(web: Web) -> None:
    question = "When does the board vote on the Nightjar acquisition?"
    ceo = sign_in(web, "ceo", "ceo-pass")
    events = stream(ceo, web, question, csrf_of(ceo, web))
    kinds = [k for k, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "delta" in kinds
    done = events[-1][1]
    assert not done["refused"]
    assert SECRET_DOC in [c["doc_id"] for c in done["citations"]]  # type: ignore[union-attr]
    ada = sign_in(web, "ada", "ada-pass")
    events = stream(ada, web, question, csrf_of(ada, web))
    done = events[-1][1]
    assert done["refused"] and done["message"]  # the "no answer" state says what to do
    # Nothing but her own question comes back: no delta, citation or answer text from it.
    shown = json.dumps([d for k, d in events if k == "delta"] +
                       [done["answer"], done["citations"], done["message"]])
    assert SECRET_DOC not in shown and not any(w in shown for w in SECRET_WORDS)


def test_state_changing_routes_need_the_csrf_token(web: Web) -> None:
    s = sign_in(web, "ada", "ada-pass")
    token = csrf_of(s, web)
    assert s.post(f"{web.url}/ask", json={"question": "leave"}, timeout=10).status_code == 403
    assert s.post(f"{web.url}/ask", json={"question": "leave"},
                  headers={"X-CSRF-Token": "wrong"}, timeout=10).status_code == 403
    assert s.post(f"{web.url}/ask", json={"question": "leave"},
                  headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
                  timeout=10).status_code == 403
    assert s.post(f"{web.url}/feedback", json={"vote": "up", "conversation_id": "c",
                                               "question": "q"},
                  timeout=10).status_code == 403
    assert s.post(f"{web.url}/auth/logout", data={"csrf": "wrong"},
                  allow_redirects=False, timeout=10).status_code == 403
    assert ADA in s.get(f"{web.url}/", timeout=10).text  # still signed in
    # without any session: 401, not an answer
    assert requests.post(f"{web.url}/ask", json={"question": "leave"},
                         headers={"X-CSRF-Token": token}, timeout=10).status_code == 401


def test_logout_ends_the_session_server_side(web: Web) -> None:
    s = sign_in(web, "ada", "ada-pass")
    token = csrf_of(s, web)
    stolen = dict(s.cookies)
    r = s.post(f"{web.url}/auth/logout", data={"csrf": token}, allow_redirects=False,
               timeout=10)
    assert r.status_code == 303
    replay = requests.post(f"{web.url}/ask", json={"question": "leave"}, cookies=stolen,
                           headers={"X-CSRF-Token": token}, timeout=10)
    assert replay.status_code == 401


def test_session_lifetime(make_web: Callable[..., Web]) -> None:
    web = make_web()
    state = web.state
    sid = state.sessions.create(ADA)
    assert state.sessions.get(sid) is not None
    state.sessions._by_id[sid].expires = 0.0  # its lifetime is over
    r = requests.get(f"{web.url}/", cookies={"clearance": sid}, timeout=10)
    assert ADA not in r.text and "Sign in" in r.text


def test_feedback_is_stored_in_the_audit_log(web: Web) -> None:
    s = sign_in(web, "ada", "ada-pass")
    token = csrf_of(s, web)
    events = stream(s, web, "How many days of annual leave?", token)
    conversation = str(events[0][1]["conversation_id"])
    r = s.post(f"{web.url}/feedback", json={"vote": "down", "comment": "too short",
                                            "conversation_id": conversation,
                                            "question": "How many days of annual leave?"},
               headers={"X-CSRF-Token": token}, timeout=10)
    assert r.status_code == 200
    records = [json.loads(line) for line in
               (web.home / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    fb = [x for x in records if x["action"] == "feedback"]
    assert fb and fb[-1]["feedback"] == {"vote": "down", "comment": "too short"}
    assert fb[-1]["email"] == ADA and fb[-1]["conversation"] == conversation
    asked = [x for x in records if x["action"] == "ask" and x["conversation"] == conversation]
    assert asked and asked[-1]["email"] == ADA
    bad = s.post(f"{web.url}/feedback", json={"vote": "maybe", "conversation_id": conversation,
                                              "question": "q"},
                 headers={"X-CSRF-Token": token}, timeout=10)
    assert bad.status_code == 400


def test_dev_login_is_off_unless_enabled(make_web: Callable[..., Web]) -> None:
    web = make_web()
    assert requests.get(f"{web.url}/auth/dev", timeout=10).status_code == 404
    assert requests.post(f"{web.url}/auth/dev", data={"email": CEO},
                         timeout=10).status_code == 404


def test_https_deployments_get_host_prefixed_secure_cookies(tmp_path: object) -> None:
    from fastapi.responses import Response

    from apps.web.app import WebApp

    state = WebApp.__new__(WebApp)
    state.https = True
    state.cookie = "__Host-clearance"
    from apps.web.security import Sessions

    state.sessions = Sessions(60.0)
    response = Response()
    state.set_cookie(response, "sid")
    header = response.headers["set-cookie"].lower()
    assert header.startswith("__host-clearance=sid")
    assert "secure" in header and "httponly" in header and "samesite=lax" in header
