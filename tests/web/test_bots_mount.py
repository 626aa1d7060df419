"""The bots' routes are mounted on the web app when [slack]/[teams] are configured; a
configured bot this build does not have is a config error, never silently unserved."""

from __future__ import annotations

import importlib.util
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


def test_a_configured_teams_bot_this_build_lacks_is_refused(tmp_path: Path) -> None:
    """[teams] is refused at load until the Teams bot lands; built directly, the web app still
    refuses to start without a router for it rather than leave it silently unserved."""
    assert importlib.util.find_spec("apps.teams") is None
    with pytest.raises(ConfigError, match="no teams bot"):
        mount_bots(FastAPI(), runtime(tmp_path, teams=TeamsSettings(app_id="app")))


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
