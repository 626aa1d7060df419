"""The default embedder (int8 ONNX MiniLM) through the installed console script: its first
build under the home prints nothing, a folder that cannot hold the model is one stderr line, and
without onnxruntime the same model runs in numpy under its own name, which `status` says."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from indexer.store.sqlite import SqliteStore
from tests.conftest import write_tree
from tests.support import clearance_exe

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

INT8, NUMPY = "all-MiniLM-L6-v2-onnx-int8", "all-MiniLM-L6-v2"
TREE: dict[str, Any] = {
    ".access.json": {"read": ["everyone"]},
    "leave.md": "# Leave\n\nStaff get 25 days of paid annual leave per year.\n",
    "backup.md": "# Backups\n\nNightly backups are kept for 30 days in the object store.\n",
}


def env(**extra: str) -> dict[str, str]:
    """No CLEARANCE_EMBEDDER: the configured default is what runs."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CLEARANCE_")}
    out.update(extra)
    return out


def setup(tmp_path: Path) -> tuple[Path, Path]:
    docs = write_tree(tmp_path / "docs", TREE)
    config = tmp_path / "c.toml"
    config.write_text(f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n',
                      encoding="utf-8")
    return tmp_path / "home", config


def run(home: Path, config: Path, *args: str, environ: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([clearance_exe(), "--home", str(home), *args, "--config", str(config)],
                          capture_output=True, text=True, env=environ or env(), timeout=900,
                          cwd=config.parent)


def embedders(home: Path) -> list[str]:
    store = SqliteStore(home / "index.sqlite3")
    try:
        return store.embedder_names()
    finally:
        store.close()


def without_onnxruntime(tmp_path: Path) -> dict[str, str]:
    """An interpreter where `import onnxruntime` fails, as on an install without it."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['onnxruntime'] = None\n",
                                           encoding="utf-8")
    return env(PYTHONPATH=str(shim))


@pytest.mark.slow
def test_first_build_prints_nothing_and_status_is_clean(tmp_path: Path) -> None:
    home, config = setup(tmp_path)
    r = run(home, config, "sync")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no quantiser warning, no ORT log line, nothing
    assert r.stdout.startswith("docs: full sync ok, 2 documents")
    assert len(r.stdout.splitlines()) == 1
    assert [p.suffix for p in (home / "models").iterdir()] == [".onnx"]
    assert embedders(home) == [INT8]
    # The second process reuses the verified file: still silent, same file.
    before = sorted(p.name for p in (home / "models").iterdir())
    r = run(home, config, "search", "how many days of annual leave", "--as", "x@example.org",
            "--json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert json.loads(r.stdout)["hits"][0]["doc_id"] == "docs:leave.md"
    assert sorted(p.name for p in (home / "models").iterdir()) == before
    r = run(home, config, "status")
    assert r.returncode == 0 and r.stderr == ""
    assert "EMBEDDER:" not in r.stdout  # one embedder, installed: nothing to say
    status = json.loads(run(home, config, "status", "--json").stdout)
    assert status["embedder_fallback"] is None and status["re_embed"] is None


@pytest.mark.slow
def test_a_models_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    home, config = setup(tmp_path)
    home.mkdir(mode=0o700)
    (home / "models").write_text("a file where the folder should be", encoding="utf-8")
    r = run(home, config, "sync")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write the ONNX model cache" in lines[0] and str(home / "models") in lines[0]
    assert '[embedder] name = "minilm"' in lines[0]
    assert (home / "models").read_text(encoding="utf-8") == "a file where the folder should be"
    assert embedders(home) == []  # nothing indexed with a model it could not load


@pytest.mark.slow
def test_without_onnxruntime_numpy_runs_and_status_says_so(tmp_path: Path) -> None:
    home, config = setup(tmp_path)
    bare = without_onnxruntime(tmp_path)
    r = run(home, config, "sync", environ=bare)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert embedders(home) == [NUMPY]  # numpy's own name: never mixed with int8 vectors
    assert not (home / "models").exists() or not any((home / "models").iterdir())
    r = run(home, config, "status", environ=bare)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stdout.splitlines() if line.startswith("EMBEDDER:")]
    assert len(notes) == 1 and "minilm-onnx-int8 needs onnxruntime" in notes[0]
    assert "numpy minilm" in notes[0]
    status = json.loads(run(home, config, "status", "--json", environ=bare).stdout)
    assert "pip install onnx onnxruntime" in status["embedder_fallback"]
    assert status["re_embed"] is None  # the index is what this install embeds with

    # onnxruntime installed again: no fallback to report, but the index is numpy's until a
    # full sync re-embeds it with int8 (status names both).
    r = run(home, config, "status")
    notes = [line for line in r.stdout.splitlines() if line.startswith("EMBEDDER:")]
    assert len(notes) == 1 and "needs onnxruntime" not in notes[0]
    assert f"index embedded with {NUMPY}" in notes[0] and INT8 in notes[0]
    r = run(home, config, "sync")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert embedders(home) == [INT8]
    assert "EMBEDDER:" not in run(home, config, "status").stdout
