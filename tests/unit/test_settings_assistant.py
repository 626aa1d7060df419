"""The [llm] openai, [audit] and [conversations] keys: what loads, and each mistake as one
ConfigError line naming the key (never echoing a credential)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import read_config_file

pytestmark = pytest.mark.unit


def load(tmp_path: Path, body: str) -> object:
    path = tmp_path / "clearance.toml"
    path.write_text(body, encoding="utf-8")
    return read_config_file(path)


def test_the_new_sections_load_with_their_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, '[llm]\nprovider = "openai"\nbase_url = "https://llm.corp/v1"\n'
                         'model_id = "llama"\napi_key_env = "LLM_KEY"\n\n'
                         '[audit]\nbackend = "opensearch"\nprincipals = "hash"\n\n'
                         '[conversations]\nbackend = "dynamodb"\nregion = "eu-west-1"\n')
    assert cfg.llm.provider == "openai"  # type: ignore[attr-defined]
    assert cfg.audit.index is None and cfg.audit.principals == "hash"  # type: ignore[attr-defined]
    conv = cfg.conversations  # type: ignore[attr-defined]
    assert (conv.table, conv.ttl_days, conv.key_prefix) == ("clearance-conversations", 30.0,
                                                            "clearance:conv")


@pytest.mark.parametrize("body,needle", [
    ('[llm]\nprovider = "openai"\nmodel_id = "m"\n', "needs base_url and model_id"),
    ('[llm]\nprovider = "openai"\nbase_url = "https://x/v1"\n', "needs base_url and model_id"),
    ('[llm]\nprovider = "openai"\nmodel_id = "m"\nbase_url = "ftp://x/v1"\n',
     "must be an http:// or https:// URL"),
    ('[llm]\nprovider = "openai"\nmodel_id = "m"\nbase_url = "https://x/v1?key=sk-123456"\n',
     "must not carry credentials"),
    ('[audit]\nbackend = "s3"\n', "audit.backend"),
    ('[audit]\nprincipals = "md5"\n', "audit.principals"),
    ('[audit]\nindex = "Audit Log"\n', "audit.index"),
    ('[audit]\nwho = 1\n', "audit.who: unknown key"),
    ('[conversations]\nbackend = "mongo"\n', "conversations.backend"),
    ('[conversations]\nttl_days = 0\n', "conversations.ttl_days"),
    ('[conversations]\ntable = "a b"\n', "conversations.table"),
    ('[conversations]\nkey_prefix = ""\n', "conversations.key_prefix"),
    ('[conversations]\ntabel = "x"\n', "conversations.tabel: unknown key"),
])
def test_mistakes_are_one_config_error_line(tmp_path: Path, body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, body)
    message = str(err.value)
    assert needle in message and "\n" not in message and "sk-123456" not in message
