"""The demo's emulated sources (apps/demo/sources.py): each emulator really serves its tenant
over TLS with the CA written under the demo home, with a fresh secret that lives only in this
process's environment while the demo runs (the Google service-account key is made per run and
signs in to that run's emulator only); web URLs come from fixed public addresses; a broken
source stops nothing half-way (servers stopped, environment restored)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import tomllib
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from apps.demo import PEOPLE, write_demo_config
from apps.demo.sources import (
    CONFLUENCE_HOST,
    CONFLUENCE_TOKEN_ENV,
    CONFLUENCE_USER,
    GDRIVE_ADMIN,
    GDRIVE_KEY_ENV,
    SHAREPOINT_CLIENT_ID,
    SHAREPOINT_SECRET_ENV,
    SOURCES,
    TENANTS,
    DemoSource,
    connector_toml,
    serve,
    toml_string,
)

pytestmark = pytest.mark.integration
ENVS = (CONFLUENCE_TOKEN_ENV, SHAREPOINT_SECRET_ENV, GDRIVE_KEY_ENV)
DRIVE_SCOPE = "https://www.googleapis.com/auth/drive.readonly"


def source(name: str) -> DemoSource:
    return next(s for s in SOURCES if s.name == name)


def tenant_file(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((TENANTS / name).read_text(encoding="utf-8"))
    return data


def confluence_get(base: str, ca: Path | None, token: str, path: str) -> requests.Response:
    return requests.get(f"{base}/wiki{path}", auth=(CONFLUENCE_USER, token), verify=str(ca),
                        timeout=10)


def graph_token(base: str, ca: Path | None, tenant_id: str, secret: str) -> requests.Response:
    return requests.post(f"{base}/{tenant_id}/oauth2/v2.0/token", verify=str(ca), timeout=10,
                         data={"grant_type": "client_credentials",
                               "client_id": SHAREPOINT_CLIENT_ID, "client_secret": secret,
                               "scope": "https://graph.microsoft.com/.default"})


def google_token(served_ca: Path | None, key_json: str, subject: str) -> str:
    """Sign in as the key file says (google-auth, JWT bearer to its token_uri)."""
    import google.auth.transport.requests
    from google.oauth2 import service_account

    session = requests.Session()
    session.verify = str(served_ca)
    session.trust_env = False  # a CA bundle from the environment would replace this one
    creds = service_account.Credentials.from_service_account_info(
        json.loads(key_json), scopes=[DRIVE_SCOPE], subject=subject)
    creds.refresh(google.auth.transport.requests.Request(session))
    return str(creds.token)


def private_key_lines(key_json: str) -> list[str]:
    """The base64 lines of the key's PEM body: any one of them found anywhere is a leak."""
    pem = str(json.loads(key_json)["private_key"])
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    assert len(lines) > 10
    return lines


def test_the_google_key_is_made_per_run_and_signs_in_to_that_run_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth.exceptions

    monkeypatch.setenv(GDRIVE_KEY_ENV, "the user's own value")
    keys = []
    for run in range(2):
        with serve(tmp_path / str(run), [source("gdrive")]) as running:
            served = running[0].served
            key_json = os.environ[GDRIVE_KEY_ENV]
            key = json.loads(key_json)
            assert key["type"] == "service_account" and "PRIVATE KEY" in key["private_key"]
            assert key["token_uri"] == f"{served.base_url}/token"  # this run's emulator
            ca = served.ca_bundle
            assert ca is not None and ca.parent == tmp_path / str(run) / "demo"
            token = google_token(ca, key_json, "jamal.brooks@acme.example")
            drives = requests.get(f"{served.base_url}/drive/v3/drives", verify=str(ca),
                                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert drives.status_code == 200, drives.text
            assert [d["name"] for d in drives.json()["drives"]] == ["Sales"]
            if keys:
                # The previous run's key (pointed at this run's server) is refused: its public
                # half is not this run's.
                stale = json.dumps({**json.loads(keys[-1]), "token_uri": key["token_uri"]})
                with pytest.raises(google.auth.exceptions.RefreshError):
                    google_token(ca, stale, GDRIVE_ADMIN)
            keys.append(key_json)
        assert os.environ[GDRIVE_KEY_ENV] == "the user's own value"  # restored
        for path in (tmp_path / str(run)).rglob("*"):
            if path.is_file():
                data = path.read_text(encoding="utf-8", errors="replace")
                assert "PRIVATE KEY" not in data
                assert not any(line in data for line in private_key_lines(key_json)), path
    assert keys[0] != keys[1]


def test_each_emulator_serves_with_this_runs_secret_and_the_ca_under_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFLUENCE_TOKEN_ENV, "the user's own value")
    monkeypatch.delenv(SHAREPOINT_SECRET_ENV, raising=False)
    with serve(tmp_path) as running:
        served = {r.source.name: r.served for r in running}
        token, secret = os.environ[CONFLUENCE_TOKEN_ENV], os.environ[SHAREPOINT_SECRET_ENV]
        assert token != "the user's own value" and len(token) >= 20 and len(secret) >= 20
        wiki, sp = served["confluence"], served["sharepoint"]
        assert wiki.ca_bundle is not None and wiki.ca_bundle.parent == tmp_path / "demo"
        ok = confluence_get(wiki.base_url, wiki.ca_bundle, token, "/rest/api/space")
        assert ok.status_code == 200, ok.text
        assert ok.json()["_links"]["base"] == f"https://{CONFLUENCE_HOST}/wiki"  # no port
        assert {s["key"] for s in ok.json()["results"]} == {"ENG", "NEWS"}
        assert confluence_get(wiki.base_url, wiki.ca_bundle, token + "x",
                              "/rest/api/space").status_code == 401
        tenant_id = str(tenant_file("sharepoint.json")["tenant_id"])
        assert graph_token(sp.base_url, sp.ca_bundle, tenant_id, secret).status_code == 200
        bad = graph_token(sp.base_url, sp.ca_bundle, tenant_id, secret[:-1])
        assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
        # Without the CA the demo wrote, TLS is refused: the bundle is what makes it trusted.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{wiki.base_url}/wiki/rest/api/space", timeout=10)
    # Afterwards: the servers are gone and the environment is the user's again.
    assert os.environ[CONFLUENCE_TOKEN_ENV] == "the user's own value"
    assert SHAREPOINT_SECRET_ENV not in os.environ
    with pytest.raises(requests.exceptions.ConnectionError):
        confluence_get(wiki.base_url, wiki.ca_bundle, token, "/rest/api/space")


def test_secrets_are_fresh_each_run_and_never_in_the_tenant_files(tmp_path: Path) -> None:
    seen = []
    for _ in range(2):
        with serve(tmp_path, SOURCES):
            seen.append({e: os.environ[e] for e in ENVS})
    assert seen[0][CONFLUENCE_TOKEN_ENV] != seen[1][CONFLUENCE_TOKEN_ENV]
    assert seen[0][SHAREPOINT_SECRET_ENV] != seen[1][SHAREPOINT_SECRET_ENV]
    assert seen[0][GDRIVE_KEY_ENV] != seen[1][GDRIVE_KEY_ENV]
    wiki, sp = tenant_file("confluence.json"), tenant_file("sharepoint.json")
    assert all("token" not in c for c in wiki["credentials"])  # type: ignore[attr-defined]
    assert all("client_secret" not in a for a in sp["apps"])  # type: ignore[attr-defined]
    google = (TENANTS / "google.json").read_text(encoding="utf-8")
    assert "KEY-----" not in google and "private_key" not in google
    assert all("public_key_pem" not in a for a in tenant_file("google.json")["service_accounts"])  # type: ignore[attr-defined]


def test_the_config_names_variables_never_values(tmp_path: Path) -> None:
    with serve(tmp_path) as running:
        values = [os.environ[e] for e in ENVS]
        path = write_demo_config(tmp_path, running)
    text = path.read_text(encoding="utf-8")
    assert not any(v in text for v in values)
    config = tomllib.loads(text)
    by_name = {c["name"]: c for c in config["connectors"]}
    assert set(by_name) == {"acme", *(s.name for s in SOURCES)}
    assert by_name["confluence"]["token_env"] == CONFLUENCE_TOKEN_ENV
    assert by_name["sharepoint"]["client_secret_env"] == SHAREPOINT_SECRET_ENV
    assert by_name["gdrive"]["service_account_json_env"] == GDRIVE_KEY_ENV
    assert "service_account_file" not in by_name["gdrive"] and "PRIVATE KEY" not in text
    for entry in by_name.values():
        assert not any(("secret" in k or "token" in k or "password" in k)
                       and not k.endswith("_env") for k in entry), entry
        if "ca_bundle" in entry:
            assert Path(entry["ca_bundle"]).is_file()
            assert "PRIVATE KEY" not in Path(entry["ca_bundle"]).read_text(encoding="utf-8")


def test_a_broken_source_stops_the_ones_already_started_and_restores_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFLUENCE_TOKEN_ENV, raising=False)
    started: list[str] = []
    good = source("confluence")

    def recording(tenant: dict[str, object]) -> object:
        emulator = good.emulator(tenant)
        started.append("confluence")
        return emulator

    broken_file = tmp_path / "broken.json"
    broken_file.write_text('{"tenant_id": "x", "apps": [', encoding="utf-8")
    broken = dataclasses.replace(source("sharepoint"), tenant=broken_file)
    first = dataclasses.replace(good, emulator=recording)  # type: ignore[arg-type]
    before = {e: os.environ.get(e) for e in ENVS}
    with pytest.raises(ValueError), serve(tmp_path, [first, broken]) as running:
        pytest.fail(f"served a broken tenant: {running}")
    assert started == ["confluence"]
    assert {e: os.environ.get(e) for e in ENVS} == before
    # The emulator that did start is stopped (its server thread is gone).
    assert not [t for t in threading.enumerate() if t.name == "emulator-confluence"]
    duplicate = tmp_path / "duplicate.json"
    duplicate.write_text('{"tenant_id": "a", "tenant_id": "b"}', encoding="utf-8")
    with pytest.raises(ValueError), serve(tmp_path, [dataclasses.replace(broken,
                                                                         tenant=duplicate)]):
        pass
    missing = dataclasses.replace(broken, tenant=tmp_path / "absent.json")
    with pytest.raises(ValueError, match=r"absent\.json"), serve(tmp_path, [missing]):
        pass
    assert {e: os.environ.get(e) for e in ENVS} == before


def test_the_tenants_are_the_acme_people() -> None:
    people = {p["email"] for p in json.loads(PEOPLE.read_text(encoding="utf-8"))["people"]}
    staff = {e for e in people if e.endswith("@acme.example")}
    wiki = {u["email"] for u in tenant_file("confluence.json")["users"]  # type: ignore[attr-defined]
            if "email" in u}
    graph = {u["mail"] for u in tenant_file("sharepoint.json")["users"]}  # type: ignore[attr-defined]
    assert wiki == staff and graph == people
    graph_users = tenant_file("sharepoint.json")["users"]
    guests = [u for u in graph_users if u["userType"] == "Guest"]  # type: ignore[attr-defined]
    assert [g["mail"] for g in guests] == ["pat@partner.example"]
    assert all("#EXT#" in g["userPrincipalName"] for g in guests)
    google = tenant_file("google.json")
    assert {u["primaryEmail"] for u in google["users"]} == staff  # type: ignore[attr-defined]
    # The partner is no user of the Workspace domain: only a grantee of a file shared out.
    granted = {p.get("emailAddress") for f in google["files"]  # type: ignore[attr-defined]
               for p in f["permissions"]}
    assert people - staff <= granted
    members = {m.get("email") for g in google["groups"] for m in g["members"]}  # type: ignore[attr-defined]
    assert members <= staff | {g["email"] for g in google["groups"]}  # type: ignore[attr-defined]


@given(st.text())
def test_toml_strings_round_trip(value: str) -> None:
    assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value
    table = tomllib.loads(connector_toml("n", "k", {"root": value, "list": [value, "x"],
                                                    "flag": True, "size": 3}))
    assert table["connectors"][0] == {"name": "n", "kind": "k", "root": value,
                                      "list": [value, "x"], "flag": True, "size": 3}


def test_no_secret_in_the_demos_output_logs_or_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    """The whole demo in this process, with each source's emulator built through a factory
    that keeps the tenant it was given (so the test learns the run's secrets)."""
    from apps.demo import run_demo

    for name in [k for k in os.environ if k.startswith("CLEARANCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    tenants: list[dict[str, object]] = []

    def keeping(make: object) -> object:
        def build(tenant: dict[str, object]) -> object:
            tenants.append(tenant)
            return make(tenant)  # type: ignore[operator]
        return build

    made: list[str] = []  # values the secret makers returned (the Google key file's JSON)

    def recording(make: object) -> object:
        def secret(tenant: dict[str, object]) -> object:
            value = make(tenant)  # type: ignore[operator]
            if isinstance(value, str):
                return value

            def finish(served: object) -> str:
                made.append(value(served))
                return made[-1]
            return finish
        return secret

    sources = [dataclasses.replace(s, emulator=keeping(s.emulator),  # type: ignore[arg-type]
                                   secrets={e: recording(m) for e, m in s.secrets.items()})
               for s in SOURCES]
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    assert run_demo(home, json_output=False, sources=sources) == 0
    out = capsys.readouterr()
    found = [str(c["token"]) for t in tenants for c in t.get("credentials", [])  # type: ignore[attr-defined]
             if c.get("token")]
    found += [str(a["client_secret"]) for t in tenants for a in t.get("apps", [])  # type: ignore[attr-defined]
              if a.get("client_secret")]
    assert len(made) == 1 and all(t.get("service_accounts") for t in tenants[-1:])
    found += private_key_lines(made[0])
    assert len(found) >= len(SOURCES) and all(len(v) >= 20 for v in found)
    assert "red team exercise" in out.out.lower()  # it did run the emulated sources' rounds
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "PRIVATE KEY" not in out.out + out.err + logged
    for secret in found:
        assert secret not in out.out and secret not in out.err and secret not in logged
        for path in home.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert not [e for e in ENVS if e in os.environ]


def test_a_rerun_starts_over_where_an_interrupted_run_pointed_at_the_old_emulator(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run killed midway leaves a checkpoint naming its emulator (Graph's nextLink carries
    the old port): the next demo starts that source over instead of resuming into a dead
    port, and re-embeds nothing doing so."""
    from apps.demo import run_demo
    from apps.runtime import Runtime
    from core.settings import load_settings
    from indexer.sync import Checkpoint, SyncReport
    from indexer.sync import _checkpoint_key as checkpoint_key

    for name in [k for k in os.environ if k.startswith("CLEARANCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    home = tmp_path / "home"
    assert run_demo(home, json_output=True) == 0
    capsys.readouterr()
    # The cursor after the first page of a SharePoint enumeration, from an emulator that is
    # then gone (one item per page, so that a next page exists).
    sp = source("sharepoint")
    with serve(tmp_path / "old", [sp]) as running:
        scratch = tmp_path / "scratch.toml"
        scratch.write_text(connector_toml(sp.name, sp.kind, {**running[0].options(),
                                                              "page_size": 1}),
                           encoding="utf-8")
        connector = Runtime(load_settings(tmp_path / "scratch", scratch)).connectors()[0]
        cursor = next(iter(connector.content())).cursor
        old = running[0].served.base_url
    assert cursor is not None and old in cursor  # it does point at the old emulator
    rt = Runtime(load_settings(home, home / "clearance.toml"))
    stale = Checkpoint(cursor=cursor, report=SyncReport(sp.name, "full", "interrupted-run"),
                       pages=1)
    rt.store.set_state(checkpoint_key(sp.name, "full"), stale.model_dump(mode="json"))
    assert run_demo(home, json_output=True) == 0
    syncs = {r["connector"]: r for r in json.loads(capsys.readouterr().out)["syncs"]}
    report = syncs[sp.name]
    assert report["status"] == "ok" and not report["resumed"], report
    assert report["documents"] > 0 and report["chunks_embedded"] == 0, report
