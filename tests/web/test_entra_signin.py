"""Web sign-in with Microsoft Entra ID through msal (auth-code flow with PKCE, state and nonce
by msal; the ID token checked by us) against the Graph emulator's Entra endpoints over TLS;
then the signed-in person asks and sees only what they may read."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from apps.runtime import Runtime
from apps.web.app import create_app
from apps.web.entra import EntraClient, entra_tenant
from core.errors import ConfigError
from core.settings import load_settings
from emulators.base import EmulatorServer, Fault
from emulators.graph import GraphEmulator
from tests.web.conftest import free_socket, serve
from tests.web.corpus import ADA, CEO, SECRET_DOC, SECRET_WORDS, build
from tests.web.test_page import csrf_of, stream

pytestmark = pytest.mark.integration

TID = "7f3c1a2e-0000-4000-8000-acme00000001"
CLIENT_ID = "clearance-web-entra"
SECRET = "entra-web-secret-value"


def tenant(callback: str) -> dict[str, Any]:
    return {"tenant_id": TID, "domains": ["acme.com"], "groups": [], "sites": [],
            "apps": [{"client_id": CLIENT_ID, "client_secret": SECRET,
                      "redirect_uris": [callback]}],
            "users": [
                {"id": "u-ceo", "userPrincipalName": CEO, "mail": CEO, "password": "ceo-pass",
                 "displayName": "CEO"},
                {"id": "u-ada", "userPrincipalName": ADA, "mail": ADA, "password": "ada-pass",
                 "displayName": "Ada"},
                {"id": "u-nomail", "userPrincipalName": "temp@acme.com", "password": "x-pass"}]}


@dataclass
class Site:
    url: str
    idp: GraphEmulator
    idp_url: str
    runtime: Runtime


@pytest.fixture
def make_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Site]]:
    stops: list[Callable[[], None]] = []

    def make(issuer_tenant: str = TID) -> Site:
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        idp = GraphEmulator(tenant(f"{url}/auth/callback"))
        server = EmulatorServer(idp, tls=True).start()
        stops.append(server.stop)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle))
        monkeypatch.setenv("WEB_ENTRA_SECRET", SECRET)
        web = (f'[web]\npublic_url = "{url}"\n'
               f'oidc_issuer = "{server.base_url}/{issuer_tenant}/v2.0"\n'
               f'client_id = "{CLIENT_ID}"\nclient_secret_env = "WEB_ENTRA_SECRET"\n'
               'asks_per_minute = 1000\n')
        home, config = build(tmp_path, web)
        rt = Runtime(load_settings(home, config), read_only=True)
        app = create_app(rt)
        assert isinstance(app.state.web.oidc, EntraClient)
        stops.append(serve(app, sock))
        stops.append(rt.lanes().close)
        return Site(url, idp, server.base_url, rt)

    yield make
    for stop in reversed(stops):
        stop()


def begin(site: Site) -> tuple[requests.Session, str, dict[str, str]]:
    """/auth/login -> msal's authorize URL -> the emulator's form: (session, form URL, fields)."""
    s = requests.Session()
    r = s.get(f"{site.url}/auth/login", allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    authorize = r.headers["location"]
    assert authorize.startswith(f"{site.idp_url}/{TID}/oauth2/v2.0/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0] and "openid" in query["scope"][0]
    form = s.get(authorize, timeout=10)
    assert form.status_code == 200, form.text
    fields = {m.group(1): html.unescape(m.group(2)) for m in re.finditer(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.text)}
    return s, authorize.split("?")[0], fields


def sign_in(site: Site, user: str, password: str) -> tuple[requests.Session, requests.Response]:
    s, target, fields = begin(site)
    r = s.post(target, data={**fields, "username": user, "password": password},
               allow_redirects=False, timeout=10)
    assert r.status_code == 302, r.text
    return s, s.get(r.headers["location"], allow_redirects=False, timeout=10)


def test_entra_sign_in_then_each_person_sees_their_own_answer(
        make_site: Callable[..., Site]) -> None:
    site = make_site()
    question = "When does the board vote on the Nightjar acquisition?"
    ceo, r = sign_in(site, CEO, "ceo-pass")
    assert r.status_code == 303 and r.headers["location"] == "/"
    done = stream(ceo, site, question, csrf_of(ceo, site))[-1][1]  # type: ignore[arg-type]
    assert SECRET_DOC in [c["doc_id"] for c in done["citations"]]  # type: ignore[union-attr]
    ada, r = sign_in(site, ADA, "ada-pass")
    assert r.status_code == 303
    done = stream(ada, site, question, csrf_of(ada, site))[-1][1]  # type: ignore[arg-type]
    shown = str([done["answer"], done["citations"], done["message"]])
    assert done["refused"] and not any(w in shown for w in SECRET_WORDS)


def test_without_an_email_claim_the_upn_names_the_person(make_site: Callable[..., Site]) -> None:
    site = make_site()
    s, r = sign_in(site, "temp@acme.com", "x-pass")
    assert r.status_code == 303
    assert "temp@acme.com" in s.get(f"{site.url}/", timeout=10).text


BAD_ID_TOKENS: dict[str, tuple[Callable[[GraphEmulator], None], str]] = {
    "wrong audience": (lambda e: e.signin.tamper(aud="another-app"), "another audience"),
    "expired": (lambda e: e.signin.tamper(exp=1_000_000, iat=999_000, nbf=999_000), "expired"),
    "another tenant's issuer": (lambda e: e.signin.tamper(
        iss="https://login.microsoftonline.com/other-tenant/v2.0"), "another issuer"),
    "wrong nonce": (lambda e: e.signin.tamper(nonce="not-this-sign-in"), "nonce"),
    "no nonce": (lambda e: e.signin.tamper(nonce=None), "nonce"),
    "forged signature": (lambda e: e.signin.tamper_signing(forged=True), "not valid"),
    "alg none": (lambda e: e.signin.tamper_signing(alg="none"), "algorithm"),
    "unverified email": (lambda e: e.signin.tamper(email_verified=False), "not verified"),
}


@pytest.mark.parametrize("case", sorted(BAD_ID_TOKENS))
def test_a_bad_id_token_signs_nobody_in(make_site: Callable[..., Site], case: str) -> None:
    site = make_site()
    tamper, reason = BAD_ID_TOKENS[case]
    tamper(site.idp)
    s, r = sign_in(site, CEO, "ceo-pass")
    assert r.status_code == 200 and "Sign-in failed" in r.text, (case, r.status_code)
    assert reason in r.text, r.text
    assert "clearance=" not in r.headers.get("set-cookie", "")
    assert "csrf-token" not in s.get(f"{site.url}/", timeout=10).text  # not signed in
    assert SECRET not in r.text


def test_a_tampered_state_is_refused(make_site: Callable[..., Site]) -> None:
    site = make_site()
    s, target, fields = begin(site)
    r = s.post(target, data={**fields, "username": CEO, "password": "ceo-pass"},
               allow_redirects=False, timeout=10)
    callback = r.headers["location"].replace("state=", "state=x")
    r = s.get(callback, allow_redirects=False, timeout=10)
    assert r.status_code == 200 and "Sign-in failed" in r.text


def test_a_wrong_client_secret_signs_nobody_in(make_site: Callable[..., Site]) -> None:
    site = make_site()
    app = site.idp.tenant["apps"][0]  # the secret rotated at the issuer, not in the deployment
    app["client_secret"] = "rotated-elsewhere"
    _s, r = sign_in(site, CEO, "ceo-pass")
    assert r.status_code == 200 and "Sign-in failed" in r.text and SECRET not in r.text


def test_multi_tenant_and_non_entra_issuers() -> None:
    assert entra_tenant("https://login.microsoftonline.com/abc/v2.0") == "abc"
    assert entra_tenant("https://login.microsoftonline.com/abc/v2.0/") == "abc"
    assert entra_tenant("https://idp.example.com/realms/acme") is None
    assert entra_tenant("http://127.0.0.1:5000") is None
    for tenant_name in ("common", "organizations", "consumers"):
        with pytest.raises(ConfigError, match="tenant's id"):
            EntraClient(f"https://login.microsoftonline.com/{tenant_name}/v2.0", "app",
                        client_secret="s")
    with pytest.raises(ConfigError, match="client_secret_env"):
        EntraClient("https://login.microsoftonline.com/abc/v2.0", "app")



def test_a_replayed_callback_signs_nobody_in_twice(make_site: Callable[..., Site]) -> None:
    site = make_site()
    s, target, fields = begin(site)
    r = s.post(target, data={**fields, "username": CEO, "password": "ceo-pass"},
               allow_redirects=False, timeout=10)
    callback = r.headers["location"]
    assert s.get(callback, allow_redirects=False, timeout=10).status_code == 303
    again = s.get(callback, allow_redirects=False, timeout=10)
    assert again.status_code == 200 and "Sign-in failed" in again.text


def test_an_unreachable_entra_is_a_clear_failure_not_a_crash(
        make_site: Callable[..., Site]) -> None:
    site = make_site()
    s, target, fields = begin(site)
    r = s.post(target, data={**fields, "username": CEO, "password": "ceo-pass"},
               allow_redirects=False, timeout=10)
    site.idp.faults.add(Fault(path=f"/{TID}/oauth2/v2.0/token", drop=True, times=None))
    r = s.get(r.headers["location"], allow_redirects=False, timeout=30)
    assert r.status_code == 200 and "Sign-in failed" in r.text and "unreachable" in r.text
    assert SECRET not in r.text


@pytest.mark.slow
def test_entra_sign_in_in_a_real_browser(make_site: Callable[..., Site], tmp_path: Path) -> None:
    """Debian's chromium through Playwright: the page's sign-in button, msal's authorize URL,
    the emulated Entra form (its throwaway TLS certificate accepted for the test), back to the
    page signed in, a question answered with citations."""
    import shutil

    from tests.support import unavailable
    from tests.web.test_browser import CHROMIUM, FLAGS, QUESTION

    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        unavailable("chromium is not installed (make test-services installs it)")
    from playwright.sync_api import sync_playwright

    site = make_site()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=FLAGS, headless=True,
            ignore_https_errors=True)
        try:
            page = ctx.new_page()
            page.goto(site.url)
            page.click("#signin")
            page.wait_for_selector("#username")
            assert page.url.startswith(f"{site.idp_url}/{TID}/oauth2/v2.0/authorize")
            page.fill("#username", CEO)
            page.fill("#password", "ceo-pass")
            page.click("#signin")
            page.wait_for_selector("#question")
            assert CEO in page.inner_text("#who")
            page.fill("#question", QUESTION)
            page.click("#send")
            page.wait_for_selector(".turn[data-done='true']", timeout=30_000)
            page.screenshot(path=str(tmp_path / "entra-ceo.png"), full_page=True)
            assert any(w in page.inner_text(".turn .answer") for w in SECRET_WORDS)
        finally:
            ctx.close()


def test_the_api_takes_entra_bearer_tokens_for_this_app_only(
        make_site: Callable[..., Site]) -> None:
    """Bearer tokens on /api/ask are checked as for any issuer: a v2 token of this tenant for
    `client_id` is the person; the tenant's app-only Graph token (another audience) is not."""
    site = make_site()
    s, target, fields = begin(site)
    r = s.post(target, data={**fields, "username": ADA, "password": "ada-pass"},
               allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
    flow_token = requests.post(  # the code is the browser's; redeeming it needs the verifier
        f"{site.idp_url}/{TID}/oauth2/v2.0/token", timeout=10,
        data={"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID,
              "client_secret": SECRET, "redirect_uri": f"{site.url}/auth/callback",
              "code_verifier": "not-the-verifier"})
    assert flow_token.status_code == 400 and "Code_Verifier" in flow_token.text
    graph = requests.post(f"{site.idp_url}/{TID}/oauth2/v2.0/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
        "scope": "https://graph.microsoft.com/.default"}).json()["access_token"]
    ask = {"question": "How many days of paid annual leave?"}
    r = requests.post(f"{site.url}/api/ask", json=ask, timeout=30,
                      headers={"Authorization": f"Bearer {graph}"})
    assert r.status_code == 401  # no issuer of this tenant's sign-in, another audience
    import time

    import jwt as pyjwt

    now = int(time.time())
    mine = pyjwt.encode({"iss": f"{site.idp_url}/{TID}/v2.0", "aud": CLIENT_ID, "iat": now,
                         "nbf": now, "exp": now + 600, "preferred_username": ADA, "tid": TID},
                        site.idp._key, algorithm="RS256", headers={"kid": "emu"})
    r = requests.post(f"{site.url}/api/ask", json=ask, timeout=30,
                      headers={"Authorization": f"Bearer {mine}"})
    assert r.status_code == 200, r.text
    assert "twenty-eight" in r.json()["answer"]
