"""`[embedder] name = "minilm-onnx-int8"` end to end through the runtime: the graph is built
under the home, the store records the embedder per document, questions are embedded with the
model the index was built with, and a model change re-embeds everything at the next sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.runtime import Runtime
from core.errors import ConfigError
from core.settings import load_settings

pytestmark = pytest.mark.integration

INT8, NUMPY = "all-MiniLM-L6-v2-onnx-int8", "all-MiniLM-L6-v2"


def tree(root: Path) -> Path:
    root.mkdir()
    (root / ".access.json").write_text(json.dumps({"read": ["user:ann@acme.example"]}),
                                       encoding="utf-8")
    (root / "leave.md").write_text("# Leave\n\nStaff get 25 days of paid annual leave.\n",
                                   encoding="utf-8")
    (root / "backup.md").write_text("# Backups\n\nNightly backups are kept for 30 days.\n",
                                    encoding="utf-8")
    return root


def runtime(home: Path, root: Path, embedder: str) -> Runtime:
    config = home / "clearance.toml"
    config.write_text(f'[embedder]\nname = "{embedder}"\n\n[[connectors]]\nname = "docs"\n'
                      f'kind = "files"\nroot = "{root}"\n', encoding="utf-8")
    return Runtime(load_settings(home, config))


def test_int8_index_then_a_model_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARANCE_EMBEDDER", raising=False)
    home, root = tmp_path / "home", tree(tmp_path / "docs")
    home.mkdir()
    rt = runtime(home, root, "minilm-onnx-int8")
    assert rt.embedder.name == INT8
    report = rt.pipeline().full_sync(rt.connectors()[0])
    assert report.indexed == 2 and rt.store.embedder_names() == [INT8]
    assert [p.suffix for p in (home / "models").iterdir()] == [".onnx"]  # built under the home
    rt.store.close()

    # Configured back to numpy MiniLM: until the next sync, questions still go through int8.
    rt = runtime(home, root, "minilm")
    assert rt.embedder.name == NUMPY and rt.query_embedder.name == INT8
    report = rt.pipeline().full_sync(rt.connectors()[0])
    assert report.indexed == 2 and report.unchanged == 0  # re-embedded, never mixed
    assert rt.store.embedder_names() == [NUMPY]
    rt.store.close()
    rt = runtime(home, root, "minilm")
    assert rt.query_embedder.name == NUMPY


def test_unknown_embedder_name_is_a_config_error(tmp_path: Path) -> None:
    home, root = tmp_path / "home", tree(tmp_path / "docs")
    home.mkdir()
    with pytest.raises(ConfigError):
        runtime(home, root, "minilm-int4").embedder  # noqa: B018


def status(home: Path, *extra: str) -> dict[str, object]:
    import os
    import subprocess

    from tests.support import clearance_exe

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    out = subprocess.run([clearance_exe(), "--home", str(home), "status", "--config",
                          str(home / "clearance.toml"), "--json", *extra],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode in (0, 1), out.stderr
    doc: dict[str, object] = json.loads(out.stdout)
    return doc


def test_status_says_when_the_index_needs_re_embedding(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Index with one model (hashing: 256-d), configure numpy MiniLM (384-d): status names both
    models and the command that re-embeds; after the full sync every document carries the new
    model only, and status is quiet again."""
    monkeypatch.delenv("CLEARANCE_EMBEDDER", raising=False)
    home, root = tmp_path / "home", tree(tmp_path / "docs")
    home.mkdir()
    rt = runtime(home, root, "hashing")
    rt.pipeline().full_sync(rt.connectors()[0])
    old_name = rt.embedder.name
    assert rt.store.embedder_names() == [old_name]
    rt.store.close()
    assert status(home)["re_embed"] is None  # configured = built with: nothing to say

    rt = runtime(home, root, "minilm")
    rt.store.close()
    notice = status(home)["re_embed"]
    assert isinstance(notice, str)
    assert old_name in notice and NUMPY in notice and "clearance sync" in notice
    rt = runtime(home, root, "minilm")
    assert rt.query_embedder.name == old_name  # its 256-d vectors, not MiniLM's 384
    report = rt.pipeline().full_sync(rt.connectors()[0])
    assert report.indexed == 2 and report.unchanged == 0
    assert rt.store.embedder_names() == [NUMPY]
    rt.store.close()
    assert runtime(home, root, "minilm").query_embedder.name == NUMPY
    assert status(home)["re_embed"] is None


def test_reembed_notice_for_a_half_done_switch() -> None:
    from indexer.embedding import reembed_notice

    assert reembed_notice([], NUMPY) is None
    assert reembed_notice([NUMPY], NUMPY) is None
    half = reembed_notice([INT8, NUMPY], NUMPY)
    assert half is not None and "partly" in half and INT8 in half
    assert reembed_notice([INT8], NUMPY) == (
        f"index embedded with {INT8}, configured embedder is {NUMPY}: questions use {INT8} "
        "until `clearance sync` (full) re-embeds every document")


def test_default_embedder_is_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No [embedder] section: int8 ONNX (its retrieval measured equal to numpy's)."""
    monkeypatch.delenv("CLEARANCE_EMBEDDER", raising=False)
    home, root = tmp_path / "home", tree(tmp_path / "docs")
    home.mkdir()
    config = home / "clearance.toml"
    config.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n',
                      encoding="utf-8")
    rt = Runtime(load_settings(home, config))
    assert rt.settings.file.embedder.name == "minilm-onnx-int8" and rt.embedder.name == INT8
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "minilm")  # the numpy reference stays one word away
    assert Runtime(load_settings(home, config)).embedder.name == NUMPY
