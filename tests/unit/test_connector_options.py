"""Connector options are a pydantic model per kind, reached only through the typed factory an
entry point names; `group_schedule` schedules the identity pass; `status` shows each pass's
durable cursor and the age of the source's identities."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.runtime import build_connector, connector_class
from connectors.base import ConnectorOptions, HttpConnectorOptions, parse_options
from connectors.files.connector import FilesConnector, FilesOptions
from core.errors import ConfigError
from core.settings import ConnectorSettings, FileConfig, Settings
from indexer.jobs.schedules import beat_schedule, connector_triggers

pytestmark = pytest.mark.unit


def cfg(**keys: object) -> ConnectorSettings:
    return ConnectorSettings.model_validate({"name": "docs", "kind": "files", **keys})


def test_the_files_kind_comes_from_its_entry_point_as_a_typed_factory(tmp_path: Path) -> None:
    factory = connector_class("files")
    assert factory is FilesConnector and factory.options_model is FilesOptions
    (tmp_path / "d").mkdir()
    connector = build_connector(cfg(root="d", page_size=5), tmp_path)
    assert isinstance(connector, FilesConnector)
    assert connector.root == (tmp_path / "d").resolve() and connector.page_size == 5


def test_an_unknown_kind_names_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown connector kind 'dropbox' \(known: .*files"):
        connector_class("dropbox")


@pytest.mark.parametrize(("keys", "message"), [
    ({"root": "d", "rooot": "x"}, "connector 'docs': unknown key 'rooot' for kind 'files'"),
    ({}, "connector 'docs': 'root' is required for kind 'files'"),
    ({"root": ""}, "connector 'docs': 'root': String should have at least 1 character"),
    ({"root": "d", "page_size": 0}, "connector 'docs': 'page_size': Input should be greater"),
    ({"root": "d", "page_size": "64"}, "connector 'docs': 'page_size': Input should be a valid"),
    ({"root": "d", "password": "hunter2"},
     "connector 'docs': 'password' looks like a secret: put it in an environment variable and "
     "name that variable with 'password_env'"),
])
def test_bad_options_are_one_config_error_line(tmp_path: Path, keys: dict[str, object],
                                               message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_connector(cfg(**keys), tmp_path)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text and err.value.exit_code == 2
    assert "hunter2" not in text


def test_secrets_only_through_env_names_and_ca_bundle_for_http_kinds() -> None:
    class Wiki(HttpConnectorOptions):
        base_url: str
        token_env: str

    class WikiFactory:
        options_model = Wiki

    got = parse_options(WikiFactory(), "wiki", "wiki",  # type: ignore[arg-type]
                        {"base_url": "https://w", "token_env": "WIKI_TOKEN",
                         "ca_bundle": "ca.pem"})
    assert isinstance(got, Wiki) and got.ca_bundle == "ca.pem"
    with pytest.raises(ConfigError, match="'api_token' looks like a secret"):
        parse_options(WikiFactory(), "wiki", "wiki",  # type: ignore[arg-type]
                      {"base_url": "https://w", "token_env": "T", "api_token": "s3cr3t"})
    with pytest.raises(TypeError, match="secrets are read through"):
        class Leaky(ConnectorOptions):  # defining it is the error
            client_secret: str


def test_group_schedule_is_a_connector_key_and_schedules_the_identity_pass() -> None:
    triggers = {t.mode: t for t in connector_triggers(cfg(root="d", group_schedule="@every 1h",
                                                          permission_schedule="off"))}
    assert triggers["groups"].task == "clearance.group_sync"
    assert "groups" not in {t.mode for t in connector_triggers(cfg(root="d"))}  # default off
    settings = Settings(home=Path("/nonexistent"), config_path=None, file=FileConfig.model_validate(
        {"jobs": {"broker_url": "redis://127.0.0.1:1/0"},
         "connectors": [{"name": "docs", "kind": "files", "root": "d",
                         "group_schedule": "*/20 * * * *"}]}))
    beat = beat_schedule(settings, datetime(2026, 11, 25, 14, 7, tzinfo=UTC))
    assert beat["docs:groups"]["task"] == "clearance.group_sync"
    assert beat["docs:groups"]["args"] == ("docs",)


def test_http_limits_come_from_the_connector_options() -> None:
    class Wiki(HttpConnectorOptions):
        base_url: str

    class WikiFactory:
        options_model = Wiki

    got = parse_options(WikiFactory(), "wiki", "wiki",  # type: ignore[arg-type]
                        {"base_url": "https://w", "max_concurrency": 2,
                         "requests_per_second": 2.5, "max_retry_after_seconds": 30,
                         "timeout_seconds": 5})
    assert isinstance(got, Wiki)
    policy = got.http_policy("wiki")
    assert (policy.limits.concurrency, policy.limits.rate, policy.limits.burst) == (2, 2.5, 3)
    assert (policy.limits.max_retry_after, policy.limits.read_timeout) == (30, 5)
    assert policy.user_agent.endswith("(+connector wiki)") and policy.verify is True
    defaults = Wiki(base_url="https://w").http_policy("wiki").limits
    assert (defaults.concurrency, defaults.rate) == (4, 10.0)
    for bad in ({"max_concurrency": 0}, {"requests_per_second": -1}, {"timeout_seconds": 0}):
        with pytest.raises(ConfigError, match=r"^connector 'wiki': "):
            parse_options(WikiFactory(), "wiki", "wiki",  # type: ignore[arg-type]
                          {"base_url": "https://w", **bad})
