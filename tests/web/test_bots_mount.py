"""The bots' routes are mounted on the web app when [slack]/[teams] are configured; a
configured bot this build does not have is a config error, never silently unserved."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from apps.runtime import Runtime
from apps.web.app import mount_bots
from core.errors import ConfigError
from core.settings import FileConfig, Settings, SlackSettings, TeamsSettings

pytestmark = pytest.mark.unit


def runtime(tmp_path: Path, **sections: object) -> Runtime:
    return Runtime(Settings(home=tmp_path, config_path=None,
                            file=FileConfig.model_validate(sections)), read_only=True)


def test_nothing_configured_mounts_nothing(tmp_path: Path) -> None:
    app = FastAPI()
    assert mount_bots(app, runtime(tmp_path)) == []
    assert not [r for r in app.routes if getattr(r, "path", "") in ("/slack/events",
                                                                    "/api/messages")]


def test_a_configured_teams_bot_is_mounted(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """[teams] mounts POST /api/messages: an activity without the channel's token is refused
    there (401 from the bot's token check, not a 404), before any key is fetched."""
    from fastapi.testclient import TestClient

    monkeypatch.setenv("MB_TEAMS_PASSWORD", "teams-mount-secret")
    section = TeamsSettings(app_id="app", app_password_env="MB_TEAMS_PASSWORD",
                            openid_metadata_url="http://127.0.0.1:9/v1/.well-known/x",
                            oauth_endpoint="https://127.0.0.1:9")
    app = FastAPI()
    assert mount_bots(app, runtime(tmp_path, teams=section)) == ["teams"]
    with TestClient(app) as client:
        r = client.post("/api/messages", json={"type": "message", "channelId": "msteams"})
        assert r.status_code == 401 and "bearer" in r.json()["error"]


def test_a_teams_bot_without_its_password_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_TEAMS_PASSWORD", raising=False)
    section = TeamsSettings(app_id="app", app_password_env="MB_TEAMS_PASSWORD")
    with pytest.raises(ConfigError, match="MB_TEAMS_PASSWORD is not set"):
        mount_bots(FastAPI(), runtime(tmp_path, teams=section))
    with pytest.raises(ConfigError, match="app_id is not set"):
        mount_bots(FastAPI(), runtime(tmp_path, teams=TeamsSettings(app_password_env="X")))


def test_a_configured_slack_bot_is_mounted(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from emulators.base import EmulatorServer
    from emulators.slack import SlackEmulator

    monkeypatch.setenv("MB_TOKEN", "xoxb-mount")
    monkeypatch.setenv("MB_SECRET", "signing-mount")
    tenant = {"token": "xoxb-mount", "bot_user_id": "UBOT", "users": {}, "channels": {}}
    with EmulatorServer(SlackEmulator(tenant), tls=False) as emu:
        section = SlackSettings(bot_token_env="MB_TOKEN", signing_secret_env="MB_SECRET",
                                api_url=emu.base_url + "/api/")
        app = FastAPI()
        assert mount_bots(app, runtime(tmp_path, slack=section)) == ["slack"]
        from fastapi.testclient import TestClient

        with TestClient(app) as client:  # mounted: an unsigned event is refused by bolt, not 404
            assert client.post("/slack/events", content=b"{}").status_code == 401
            assert client.post("/slack/nothing", content=b"{}").status_code == 404


def test_a_slack_bot_without_its_secrets_is_a_config_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_TOKEN", raising=False)
    section = SlackSettings(bot_token_env="MB_TOKEN", signing_secret_env="MB_SECRET")
    with pytest.raises(ConfigError, match="MB_TOKEN is not set"):
        mount_bots(FastAPI(), runtime(tmp_path, slack=section))
