"""Fuzzing the CLI's arguments: whatever argv a user (or a script gone wrong) passes, no
traceback reaches them, the exit code is a documented one, and every stderr line is ours.

Runs `apps.cli.main.main(argv)` in-process for many random argv lists (flags, commands,
unicode, surrogate escapes, huge and negative numbers), and a few nasty ones through the
installed console script.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.cli.main import main
from tests.conftest import write_tree
from tests.e2e.test_cli import ADA, TREE, cli_env, write_config
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

# Commands that return on their own (worker and beat serve until stopped; demo is tested apart).
COMMANDS = ["search", "ask", "explain", "status", "sync", "reindex", "frobnicate", ""]
# No --home here: a random path after it could be anywhere (the home is set by the environment).
FLAGS = ["--json", "--verbose", "--k", "--as", "--connector", "--mode", "--queue", "--config",
         "--help", "-h", "--", "-", "--k=5", "--as=" + ADA, "--dimension"]
NUMBERS = ["0", "-1", "1", "10", "1000", "1001", str(2**63), str(-2**63 - 1), "9" * 40, "1e9",
           "0x10", " 7 ", "NaN", "٣"]
WORDS = [ADA, "eve@other.net", "EVE@Other.NET", "docs:team/plan.md", "docs:staff/payroll.md",
         "docs:../../etc/passwd", "payroll", "lighthouse release", "full", "permissions",
         "prune", "docs", "nosuch", "a@b", "@", "\x00", "\x1b[2J", "line\nbreak", "\u202e",
         "\udcff", "ada\udcc3@example.org", "\ud800", "🙂", "é" * 300, " ", ""]

token = st.one_of(st.sampled_from(FLAGS), st.sampled_from(NUMBERS), st.sampled_from(WORDS),
                  st.text(max_size=12),
                  st.integers(min_value=-2**70, max_value=2**70).map(str))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    base = tmp_path_factory.mktemp("fuzz")
    docs = write_tree(base / "docs", TREE)
    config = write_config(base / "clearance.toml",
                          f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{docs}"\n')
    home = base / "home"
    old = os.environ.get("CLEARANCE_EMBEDDER")
    os.environ["CLEARANCE_EMBEDDER"] = "hashing"
    try:
        assert main(["--home", str(home), "sync", "--config", str(config)]) == 0
        yield home, config
    finally:
        if old is None:
            os.environ.pop("CLEARANCE_EMBEDDER", None)
        else:
            os.environ["CLEARANCE_EMBEDDER"] = old


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO("payroll\n\udcff\nlighthouse\n"))
    try:
        code = main(argv)
    except SystemExit as exc:  # --help prints and exits 0, as argparse does
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_facing(code: int, err: str) -> None:
    assert code in {0, 1, 2}, (code, err)
    assert "Traceback" not in err, err
    assert "unexpected error" not in err, err  # the safety net is for bugs: none may be hit
    for line in err.splitlines():
        assert (line.startswith("clearance:") or line.startswith("usage:") or not line
                or _log_event(line)), err


def _log_event(line: str) -> bool:
    """A structured log line (what --verbose asks for): one JSON object with an event."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and isinstance(record.get("event"), str)


value = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(WORDS), st.text(max_size=12),
                  st.integers(min_value=-2**70, max_value=2**70).map(str))
# Mostly well-formed invocations with odd values, so that the commands themselves run.
OPTIONS: dict[str, list[tuple[str, st.SearchStrategy[str] | None]]] = {
    "search": [("--as", value), ("--k", value), ("--json", None)],
    "ask": [("--as", value), ("--k", value), ("--json", None)],
    "explain": [("--as", value), ("--json", None)],
    "status": [("--json", None), ("--verbose", None)],
    "sync": [("--connector", value), ("--mode", value), ("--json", None)],
    "reindex": [("--dimension", value), ("--json", None)],
}


@st.composite
def invocation(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(sorted(OPTIONS)))
    argv = [command]
    if command in ("search", "ask", "explain"):
        argv.append(draw(value))
    for flag, arg in draw(st.lists(st.sampled_from(OPTIONS[command]), max_size=4)):
        argv += [flag] if arg is None else [flag, draw(arg)]
    if draw(st.booleans()):
        argv.insert(draw(st.integers(0, len(argv))), draw(token))
    return argv


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=invocation())
def test_no_command_gives_a_traceback(workspace: tuple[Path, Path], argv: list[str],
                                      capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home, config = workspace
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    monkeypatch.setenv("CLEARANCE_HOME", str(home))
    monkeypatch.setenv("CLEARANCE_CONFIG", str(config))
    monkeypatch.chdir(config.parent)
    code, _, err = run_in_process(argv, capsys, monkeypatch)
    assert_user_facing(code, err)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), before=st.lists(token, max_size=3),
       after=st.lists(token, max_size=6), with_home=st.booleans())
def test_no_argv_gives_a_traceback(workspace: tuple[Path, Path], command: str,
                                   before: list[str], after: list[str], with_home: bool,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home, config = workspace
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    monkeypatch.setenv("CLEARANCE_HOME", str(home))
    monkeypatch.setenv("CLEARANCE_CONFIG", str(config))
    monkeypatch.chdir(config.parent)
    fixed = ["--home", str(home)] if with_home else []
    code, _, err = run_in_process([*fixed, *before, command, *after], capsys, monkeypatch)
    assert_user_facing(code, err)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(query=st.text(max_size=40), email=st.one_of(st.sampled_from(WORDS), st.emails(),
                                                  st.text(max_size=20)),
       k=st.one_of(st.none(), st.integers(min_value=-2**70, max_value=2**70)),
       command=st.sampled_from(["search", "ask"]), as_json=st.booleans())
def test_search_and_ask_answer_or_refuse_in_one_line(workspace: tuple[Path, Path], query: str,
                                                     email: str, k: int | None, command: str,
                                                     as_json: bool,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    home, config = workspace
    monkeypatch.setenv("CLEARANCE_EMBEDDER", "hashing")
    argv = ["--home", str(home), command, query, "--as", email, "--config", str(config)]
    argv += ["--k", str(k)] if k is not None else []
    argv += ["--json"] if as_json else []
    code, out, err = run_in_process(argv, capsys, monkeypatch)
    assert_user_facing(code, err)
    if code != 0:
        assert len(err.strip().splitlines()) == 1, err
        assert out == ""
    elif not as_json:
        assert "\x1b" not in out and "\x00" not in out


NASTY = [
    [b"search", b"pay\xffroll", b"--as", ADA.encode()],
    [b"search", b"payroll", b"--as", b"\xff\xfe@example.org", b"--k", b"99999999999999999999"],
    [b"ask", b"payroll", b"--as", ADA.encode(), b"--k", b"-9223372036854775809"],
    [b"explain", b"docs:\xc3(", b"--as", ADA.encode()],
    [b"--home", b"\xff", b"status"],
    [b"st\xffatus"],
    [b"search", b"\x1b[2J\x1b[H", b"--as", b"\x1b]0;pwned\x07@example.org"],
    [],
]


@pytest.mark.parametrize("args", NASTY, ids=[repr(a)[:40] for a in NASTY])
def test_nasty_argv_through_the_console_script(workspace: tuple[Path, Path],
                                               args: list[bytes]) -> None:
    home, config = workspace
    has_home = b"--home" in args
    argv = [os.fsencode(clearance_exe()),
            *([] if has_home else [b"--home", os.fsencode(home)]), *args]
    if args and args[0] != b"--home":
        argv += [b"--config", os.fsencode(config)]
    r = subprocess.run(argv, capture_output=True, env=cli_env(), cwd=config.parent, timeout=600)
    err = r.stderr.decode(errors="replace")
    assert_user_facing(r.returncode, err)
    assert b"\x1b" not in r.stderr and b"\x1b" not in r.stdout


def test_in_process_main_gives_the_callers_umask_back(workspace: tuple[Path, Path]) -> None:
    home, config = workspace
    old = os.umask(0o022)
    try:
        main(["--home", str(home), "status", "--config", str(config)])
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)
