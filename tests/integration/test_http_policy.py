"""The one HTTP policy against a real loopback emulator (TLS with a throwaway CA).

Time is a fake clock: the tests assert on the sleeps the policy asked for and on what the server
counted, never on wall-clock time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.http import HttpLimits, HttpPolicy, PolicyHttp, redact_text, redact_url, retry_after
from core.errors import (
    CursorExpired,
    SourceAuthError,
    SourceForbidden,
    SourceNotFound,
    SourceUnavailable,
)
from emulators.base import EmulatorServer, Fault, Request, Response
from emulators.httpfiles import HttpFilesEmulator
from tests.support_http import EPOCH, TOKEN, FakeClock, tenant

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(HttpFilesEmulator(tenant())) as srv:
        yield srv


@pytest.fixture
def emu(server: EmulatorServer) -> Iterator[HttpFilesEmulator]:
    emulator = server.emulator
    assert isinstance(emulator, HttpFilesEmulator)
    emulator.faults.clear()
    emulator.counters.reset()
    yield emulator
    emulator.faults.clear()


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


def policy(server: EmulatorServer, fake: FakeClock, **limits: Any) -> HttpPolicy:
    limits.setdefault("rate", 0)
    return HttpPolicy("demo", HttpLimits(**limits), ca_bundle=str(server.ca_bundle),
                      clock=fake.clock())


def get(pol: HttpPolicy, server: EmulatorServer, path: str, **kw: Any) -> requests.Response:
    return pol.session().get(server.base_url + path, headers=AUTH, **kw)


# -- throttling ----------------------------------------------------------------------------
def test_429_retry_after_seconds_is_slept_then_the_request_succeeds(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=429, retry_after="7"))
    pol = policy(server, fake)
    assert get(pol, server, "/api/documents").json()["items"][0]["id"] == "doc0.md"
    assert fake.sleeps == [7.0]
    assert emu.counters.by_path["/api/documents"] == 2
    stats = pol.stats.to_json()
    assert (stats["requests"], stats["retries"], stats["throttled"]) == (2, 1, 1)
    assert stats["throttled_seconds"] == 7.0 and stats["backoff_seconds"] == 0


def test_retry_after_as_an_http_date_minutes_away(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=503, retry_after="Thu, 01 Jan 2026 00:02:00 GMT"))
    pol = policy(server, fake)
    assert get(pol, server, "/api/documents").status_code == 200
    assert fake.sleeps == [120.0]


def test_retry_after_past_the_cap_fails_at_once_with_the_wait_in_the_message(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=429, retry_after="600"))
    pol = policy(server, fake, max_retry_after=300)
    with pytest.raises(SourceUnavailable, match=r"wait 600 s, more than the 300 s"):
        get(pol, server, "/api/documents")
    assert fake.sleeps == []
    assert emu.counters.requests == 1


def test_a_503_storm_ends_after_the_bounded_attempts(server, emu, fake):
    emu.faults.add(Fault("/api/*", status=503, retry_after="5", times=None))
    pol = policy(server, fake, max_attempts=4)
    with pytest.raises(SourceUnavailable, match=r"HTTP 503 after 4 attempt"):
        get(pol, server, "/api/documents")
    assert emu.counters.requests == 4
    assert fake.sleeps == [5.0, 5.0, 5.0]
    assert pol.stats.to_json()["failures"] == 1


def test_a_503_storm_past_the_total_wait_budget(server, emu, fake):
    emu.faults.add(Fault("/api/*", status=503, retry_after="100", times=None))
    pol = policy(server, fake, max_attempts=50, max_wait_total=250)
    with pytest.raises(SourceUnavailable, match=r"waited 200 s.*250 s budget"):
        get(pol, server, "/api/documents")
    assert fake.sleeps == [100.0, 100.0]


def test_drive_style_403_rate_limit_is_throttling_not_forbidden(server, emu, fake):
    body = {"error": {"code": 403, "errors": [{"reason": "userRateLimitExceeded"}]}}
    emu.faults.add(Fault("/api/documents", status=403, body=body))
    pol = policy(server, fake)
    assert get(pol, server, "/api/documents").status_code == 200
    assert pol.stats.to_json()["throttled"] == 1 and len(fake.sleeps) == 1


# -- back-off on errors ---------------------------------------------------------------------
def test_5xx_then_success_backs_off_exponentially_with_jitter(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=500, times=2))
    pol = policy(server, fake, backoff_base=0.5)
    assert get(pol, server, "/api/documents").status_code == 200
    # jitter 0.5 of the ceilings 0.5 * 2**(n-1): 0.25, then 0.5
    assert fake.sleeps == [0.25, 0.5]
    assert emu.counters.by_path["/api/documents"] == 3
    assert pol.stats.to_json()["backoff_seconds"] == 0.75


def test_the_jitter_spreads_waits_within_the_ceiling(server, emu):
    fake = FakeClock(jitter=0.999)
    emu.faults.add(Fault("/api/documents", status=502, times=3))
    pol = policy(server, fake, backoff_base=1.0, backoff_max=3.0)
    assert get(pol, server, "/api/documents").status_code == 200
    assert fake.sleeps == pytest.approx([0.999, 1.998, 2.997])  # the 4 s ceiling capped at 3


def test_501_is_not_retried(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=501))
    pol = policy(server, fake)
    assert get(pol, server, "/api/documents").status_code == 501
    assert emu.counters.requests == 1 and fake.sleeps == []


def test_a_connection_reset_is_retried(server, emu, fake):
    emu.faults.add(Fault("/api/documents", drop=True, times=2))
    pol = policy(server, fake)
    assert get(pol, server, "/api/documents").status_code == 200
    assert emu.counters.by_path["/api/documents"] == 3
    assert len(fake.sleeps) == 2 and pol.stats.to_json()["retries"] == 2


def test_connection_resets_forever_end_in_source_unavailable(server, emu, fake):
    emu.faults.add(Fault("/api/documents", drop=True, times=None))
    pol = policy(server, fake, max_attempts=3)
    with pytest.raises(SourceUnavailable, match=r"connection failed .* after 3 attempt"):
        get(pol, server, "/api/documents")
    assert emu.counters.requests == 3


def test_a_read_timeout_is_retried(server, emu, fake):
    emu.faults.add(Fault("/api/documents", latency=1.0))
    pol = policy(server, fake, read_timeout=0.2)
    assert get(pol, server, "/api/documents").status_code == 200
    assert emu.counters.by_path["/api/documents"] == 2
    assert pol.stats.to_json()["retries"] == 1


def test_a_refused_connection_is_source_unavailable(fake):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    pol = HttpPolicy("demo", HttpLimits(max_attempts=2, rate=0), clock=fake.clock())
    with pytest.raises(SourceUnavailable, match=r"connection failed"):
        pol.session().get(f"http://127.0.0.1:{port}/x")
    assert len(fake.sleeps) == 1


# -- the error tree --------------------------------------------------------------------------
def test_401_is_source_auth_error(server, emu, fake):
    with pytest.raises(SourceAuthError, match="HTTP 401"):
        policy(server, fake).session().get(server.base_url + "/api/documents")
    assert fake.sleeps == []


def test_403_is_source_forbidden(server, emu, fake):
    emu.faults.add(Fault("/api/documents/doc0.md/content", status=403))
    with pytest.raises(SourceForbidden, match="HTTP 403"):
        get(policy(server, fake), server, "/api/documents/doc0.md/content")


def test_404_is_source_not_found(server, emu, fake):
    with pytest.raises(SourceNotFound, match=r"HTTP 404 \(itemNotFound"):
        get(policy(server, fake), server, "/api/documents/nope.md")


def test_410_resync_required_is_cursor_expired(server, emu, fake):
    pol = policy(server, fake)
    cursor = get(pol, server, "/api/documents").json()["cursor"]
    emu.faults.add(Fault("/api/changes", status=410,
                         body={"error": {"code": "resyncRequired", "message": "resync"}}))
    with pytest.raises(CursorExpired, match="resyncRequired"):
        get(pol, server, f"/api/changes?cursor={cursor}")


def test_an_invalid_page_token_is_cursor_expired(server, emu, fake):
    with pytest.raises(CursorExpired, match="invalidPageToken"):
        get(policy(server, fake), server, "/api/documents?page_token=zzz")


def test_other_4xx_are_returned_and_check_every_error_raises(server, emu, fake):
    from core.errors import SourceError

    emu.faults.add(Fault("/api/documents", status=409))
    pol = policy(server, fake)
    response = get(pol, server, "/api/documents")
    assert response.status_code == 409
    with pytest.raises(SourceError, match="HTTP 409"):
        pol.check(response, every_error=True)


def test_raise_errors_off_hands_every_answer_back(server, emu, fake):
    response = policy(server, fake).session(raise_errors=False).get(
        server.base_url + "/api/documents")
    assert response.status_code == 401


# -- limits observed by the server -------------------------------------------------------------
def test_the_request_rate_limit_makes_the_policy_wait_per_token(server, emu, fake):
    pol = policy(server, fake, rate=2.0, burst=3)
    session = pol.session()
    for _ in range(7):
        session.get(server.base_url + "/api/groups", headers=AUTH)
    assert emu.counters.by_path["/api/groups"] == 7
    # 3 from the burst, then one token every 0.5 s of (fake) time
    assert fake.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert pol.stats.to_json()["rate_limited_seconds"] == 2.0


def test_the_burst_comes_back_after_a_quiet_spell(server, emu, fake):
    pol = policy(server, fake, rate=2.0, burst=3)
    session = pol.session()
    for _ in range(4):
        session.get(server.base_url + "/api/groups", headers=AUTH)
    assert fake.sleeps == [0.5]
    fake.t += 60  # a minute without requests refills the bucket, up to the burst only
    for _ in range(4):
        session.get(server.base_url + "/api/groups", headers=AUTH)
    assert fake.sleeps == [0.5, 0.5]


def _in_flight_peak(concurrency: int) -> int:
    # A server of its own: a handler another test left sleeping would count as in flight.
    emu = HttpFilesEmulator(tenant())
    # Each answer takes 1 s: every thread has started long before the first one ends.
    emu.faults.add(Fault("/api/groups", latency=1.0, times=None))
    with EmulatorServer(emu) as server:
        pol = HttpPolicy("demo", HttpLimits(concurrency=concurrency, rate=0),
                         ca_bundle=str(server.ca_bundle))
        session = pol.session()
        threads = [threading.Thread(target=session.get, args=(server.base_url + "/api/groups",),
                                    kwargs={"headers": AUTH}) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert emu.counters.by_path["/api/groups"] == 6
    return emu.counters.max_in_flight


def test_the_concurrency_limit_is_what_the_server_sees():
    assert _in_flight_peak(concurrency=2) == 2


def test_without_a_tight_limit_the_server_sees_more_at_once():
    # The control: the measure above can see more than two requests in flight.
    assert _in_flight_peak(concurrency=6) > 2


def test_every_request_carries_the_descriptive_user_agent(server, emu, fake):
    pol = policy(server, fake)
    get(pol, server, "/api/documents")
    assert emu.counters.user_agents == {pol.user_agent}
    assert pol.user_agent.startswith("Clearance/") and pol.user_agent.endswith("(+connector demo)")


def test_bytes_are_counted(server, emu, fake):
    pol = policy(server, fake)
    body = get(pol, server, "/api/documents/doc1.md/content").content
    pol.session().post(server.base_url + "/api/documents", data=b"x" * 10, headers=AUTH)
    stats = pol.stats.to_json()
    assert stats["bytes_received"] >= len(body) > 0
    assert stats["bytes_sent"] == 10


# -- TLS -----------------------------------------------------------------------------------
def test_without_the_ca_bundle_tls_fails_once_and_is_not_retried(server, emu, fake):
    pol = HttpPolicy("demo", HttpLimits(rate=0), clock=fake.clock())
    with pytest.raises(SourceUnavailable, match=r"TLS verification failed.*ca_bundle"):
        pol.session().get(server.base_url + "/api/documents", headers=AUTH)
    assert fake.sleeps == [] and emu.counters.requests == 0


# -- secrets ---------------------------------------------------------------------------------
SECRET = "tok-ABCDEF123456"


def test_no_secret_in_errors_or_logs(server, emu, fake, caplog):
    caplog.set_level(logging.DEBUG)
    emu.faults.add(Fault("/api/*", status=503, times=None,
                         body={"error": {"code": "x", "message": f"Bearer {SECRET}"}}))
    pol = policy(server, fake, max_attempts=2)
    url = server.base_url.replace("https://", f"https://bob:{SECRET}@")
    with pytest.raises(SourceUnavailable) as caught:
        pol.session().get(f"{url}/api/documents?access_token={SECRET}&$deltatoken={SECRET}",
                          headers={"Authorization": f"Bearer {SECRET}"})
    assert SECRET not in str(caught.value)
    assert "/api/documents" in str(caught.value)
    emu.faults.clear()
    emu.faults.add(Fault("/api/*", status=401,
                         body={"error": "invalid_client", "error_description":
                               f"access_token={SECRET} Bearer {SECRET}"}))
    with pytest.raises(SourceAuthError) as auth:
        pol.session().get(f"{server.base_url}/api/documents?key={SECRET}",
                          headers={"Authorization": f"Bearer {SECRET}"})
    assert SECRET not in str(auth.value) and "invalid_client" in str(auth.value)
    assert SECRET not in caplog.text and "retry" in caplog.text


def test_a_request_the_library_refuses_never_quotes_the_header(server, emu, fake):
    from core.errors import SourceError

    pol = policy(server, fake)
    with pytest.raises(SourceError) as caught:
        pol.session().get(f"{server.base_url}/api/documents?token={SECRET}",
                          headers={"Authorization": f"Bearer {SECRET}\n"})
    assert SECRET not in str(caught.value) and "InvalidHeader" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None
    with pytest.raises(SourceError, match=r"InvalidURL|MissingSchema|InvalidSchema") as bad_url:
        pol.session().get(f"https://u:{SECRET}@/nohost")
    assert SECRET not in str(bad_url.value)
    assert emu.counters.requests == 0


def test_redaction_helpers():
    assert redact_url(f"https://u:{SECRET}@h/p?sig={SECRET}&page=2") == "https://***@h/p?sig=***&page=2"
    assert redact_url(f"https://{SECRET}@h/") == "https://***@h/"
    text = redact_text(f'see https://h/x?token={SECRET} "access_token": "{SECRET}" '
                       f"Bearer {SECRET} eyJhbGciOi.eyJzdWIiOi.c2ln")
    assert SECRET not in text and "eyJ" not in text


def test_retry_after_parsing():
    assert retry_after("120", EPOCH) == 120.0
    assert retry_after("Thu, 01 Jan 2026 00:00:30 GMT", EPOCH) == 30.0
    assert retry_after("Wed, 31 Dec 2025 23:00:00 GMT", EPOCH) == 0.0  # already past
    assert retry_after("soon", EPOCH) is None and retry_after(None, EPOCH) is None


# -- client libraries on top -------------------------------------------------------------------
def test_httplib2_style_call(server, emu, fake):
    emu.faults.add(Fault("/api/documents", status=429, retry_after="2"))
    http = PolicyHttp(policy(server, fake).session())
    resp, content = http.request(server.base_url + "/api/documents", "GET", body=None,
                                 headers=AUTH, redirections=5, connection_type=None)
    assert resp.status == 200 and resp["content-type"] == "application/json"
    assert json.loads(content)["items"] and fake.sleeps == [2.0]
    http.close()


DISCOVERY = {
    "kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "files:v1",
    "name": "files", "version": "v1", "protocol": "rest", "servicePath": "api/",
    "resources": {"documents": {"methods": {
        "list": {"id": "files.documents.list", "path": "documents", "httpMethod": "GET",
                 "parameters": {"page_token": {"type": "string", "location": "query"}},
                 "response": {"$ref": "Page"}},
        "get": {"id": "files.documents.get", "path": "documents/{id}", "httpMethod": "GET",
                "parameters": {"id": {"type": "string", "location": "path", "required": True}},
                "parameterOrder": ["id"], "response": {"$ref": "Page"}}}}},
    "schemas": {"Page": {"id": "Page", "type": "object"}},
}


def test_google_api_python_client_goes_through_the_policy(server, emu, fake):
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build_from_document

    emu.faults.add(Fault("/api/documents", status=503, retry_after="3"))
    pol = policy(server, fake)
    http = PolicyHttp(pol.session(), credentials=Credentials(token=TOKEN))
    service = build_from_document(dict(DISCOVERY, rootUrl=server.base_url + "/"), http=http)
    page = service.documents().list(page_token="2").execute()
    assert [i["id"] for i in page["items"]] == ["doc2.md"]
    assert fake.sleeps == [3.0] and emu.counters.by_path["/api/documents"] == 2
    assert emu.counters.user_agents == {pol.user_agent}
    with pytest.raises(SourceNotFound):
        service.documents().get(id="missing").execute()


def test_atlassian_client_keeps_the_policy_trust_and_agent(server, emu, fake):
    from atlassian.rest_client import AtlassianRestAPI

    emu.faults.add(Fault("/api/groups", status=429, retry_after="1"))
    pol = policy(server, fake)
    client = AtlassianRestAPI(url=server.base_url, session=pol.session(), token=TOKEN)
    # atlassian passes verify=True and timeout=75 on each call: the policy's CA still applies.
    assert client.get("api/groups")["items"][0]["id"] == "hr"
    assert fake.sleeps == [1.0] and emu.counters.user_agents == {pol.user_agent}


def test_the_policy_timeout_wins_over_the_library_timeout(server, emu, fake):
    from atlassian.rest_client import AtlassianRestAPI

    emu.faults.add(Fault("/api/groups", latency=1.0))
    pol = policy(server, fake, read_timeout=0.2)
    client = AtlassianRestAPI(url=server.base_url, session=pol.session(), token=TOKEN,
                              timeout=75)
    assert client.get("api/groups")["items"][0]["id"] == "hr"
    assert pol.stats.to_json()["retries"] == 1 and emu.counters.by_path["/api/groups"] == 2


class _TokenEmulator(HttpFilesEmulator):
    """An OpenID authority enough for msal's client-credentials flow."""

    def setup(self) -> None:
        super().setup()
        self.route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._openid)
        self.route("POST", "/{tenant}/oauth2/v2.0/token", self._token)
        self.base = ""

    def _openid(self, request: Request) -> Response:
        root = f"{self.base}/{request.params['tenant']}"
        return Response.json({"issuer": f"{root}/v2.0",
                              "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                              "token_endpoint": f"{root}/oauth2/v2.0/token"})

    def _token(self, request: Request) -> Response:
        form = dict(p.split("=", 1) for p in request.body.decode().split("&"))
        if form.get("client_secret") != "app-secret":
            return Response.json({"error": "invalid_client", "error_description": "bad secret"},
                                 401)
        return Response.json({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600})


def test_msal_client_credentials_through_the_policy(fake):
    import msal

    emulator = _TokenEmulator(tenant())
    with EmulatorServer(emulator) as srv:
        emulator.base = srv.base_url
        emulator.faults.add(Fault("/t1/oauth2/v2.0/token", status=429, retry_after="4"))
        pol = HttpPolicy("graph", HttpLimits(rate=0), ca_bundle=str(srv.ca_bundle),
                         clock=fake.clock())
        app = msal.ConfidentialClientApplication(
            "client-1", client_credential="app-secret", authority=f"{srv.base_url}/t1",
            http_client=pol.session(), instance_discovery=False)
        result = app.acquire_token_for_client(scopes=["https://graph.example/.default"])
        assert result.get("access_token") == TOKEN
        assert fake.sleeps == [4.0] and emulator.counters.user_agents == {pol.user_agent}
        wrong = msal.ConfidentialClientApplication(
            "client-2", client_credential="nope", authority=f"{srv.base_url}/t1",
            http_client=pol.session(), instance_discovery=False)
        with pytest.raises(SourceAuthError, match="invalid_client"):
            wrong.acquire_token_for_client(scopes=["https://graph.example/.default"])


def test_google_auth_refreshes_its_token_through_the_policy(fake):
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build_from_document

    emulator = _TokenEmulator(tenant())
    with EmulatorServer(emulator) as srv:
        emulator.faults.add(Fault("/t1/oauth2/v2.0/token", status=503, retry_after="6"))
        pol = HttpPolicy("drive", HttpLimits(rate=0), ca_bundle=str(srv.ca_bundle),
                         clock=fake.clock())
        creds = Credentials(token=None, refresh_token="r-1", client_id="c",
                            client_secret="app-secret",
                            token_uri=f"{srv.base_url}/t1/oauth2/v2.0/token")
        http = PolicyHttp(pol.session(), credentials=creds)
        service = build_from_document(dict(DISCOVERY, rootUrl=srv.base_url + "/"), http=http)
        assert service.documents().get(id="doc1.md").execute()["id"] == "doc1.md"
        assert creds.token == TOKEN and fake.sleeps == [6.0]
        assert emulator.counters.by_path["/t1/oauth2/v2.0/token"] == 2
        assert emulator.counters.user_agents == {pol.user_agent}
