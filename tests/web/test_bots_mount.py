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


@pytest.mark.parametrize("name,section,path", [
    ("slack", SlackSettings(bot_token_env="SLACK_BOT_TOKEN"), "/slack/events"),
    ("teams", TeamsSettings(app_id="app"), "/api/messages")])
def test_a_configured_bot_is_mounted_or_refused(tmp_path: Path, name: str, section: object,
                                                path: str) -> None:
    app = FastAPI()
    rt = runtime(tmp_path, **{name: section})
    if importlib.util.find_spec(f"apps.{name}") is None:
        with pytest.raises(ConfigError, match=f"no {name} bot"):
            mount_bots(app, rt)
    else:  # merged with the bots' branch: their router is on the app
        assert mount_bots(app, rt) == [name]
        assert path in [getattr(r, "path", "") for r in app.routes]
