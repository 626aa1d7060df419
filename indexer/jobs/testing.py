"""Throwaway services for tests and benchmarks: a redis-server on a free loopback port with no
persistence, and `clearance worker` / `clearance beat` processes, each in its own process group
so that stopping one ends its pool children too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from core.settings import Settings
    from indexer.store.sqlite import SqliteStore

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no",
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import redis

        client = redis.Redis(port=self.port)

        def ping() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_for(ping, 10, "redis-server to answer PING")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def clearance_command() -> list[str]:
    script = Path(sys.executable).parent / "clearance"
    return [str(script)] if script.exists() else [sys.executable, "-m", "apps.cli.main"]


def start_clearance(args: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`clearance ARGS` in its own process group, output to `log`."""
    out: IO[bytes] = log.open("ab")
    try:
        return subprocess.Popen([*clearance_command(), *args], env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the process group this helper started `proc` in."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the group, then SIGKILL it if it has not ended within `grace` seconds."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    kill_group(proc, signal.SIGKILL)  # pool children left behind, if any
    if proc.poll() is None:
        proc.wait(10)


class JobsDeployment:
    """One deployment on disk for tests and benchmarks: a config naming a files connector and a
    broker, a home, and the worker / beat processes started for it (stopped by `close`)."""

    def __init__(self, work: Path, broker_url: str, root: Path, *, connector: str = "docs",
                 page_size: int = 64, jobs: dict[str, object] | None = None,
                 schedules: dict[str, str] | None = None, embedder: str = "hashing") -> None:
        self.work = work
        self.home = work / "home"
        self.root = root
        self.connector = connector
        self.config = work / "clearance.toml"
        self.embedder = embedder
        self.procs: list[subprocess.Popen[bytes]] = []
        self._store: SqliteStore | None = None
        jobs_lines = [f"broker_url = {_toml(broker_url)}"]
        jobs_lines += [f"{k} = {_toml(v)}" for k, v in (jobs or {}).items()]
        connector_lines = [f"name = {_toml(connector)}", 'kind = "files"',
                           f"root = {_toml(str(root))}", f"page_size = {page_size}"]
        connector_lines += [f"{k} = {_toml(v)}" for k, v in (schedules or {}).items()]
        work.mkdir(parents=True, exist_ok=True)
        self.config.write_text("[jobs]\n" + "\n".join(jobs_lines) + "\n\n[[connectors]]\n"
                               + "\n".join(connector_lines) + "\n", encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        return {"CLEARANCE_HOME": str(self.home), "CLEARANCE_CONFIG": str(self.config),
                "CLEARANCE_EMBEDDER": self.embedder}

    def env_all(self) -> dict[str, str]:
        """The environment of a process of this deployment: this one's, plus `env`."""
        return {**os.environ, **self.env}

    def start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        proc = start_clearance(args, self.env, self.work / log)
        self.procs.append(proc)
        return proc

    def worker(self, *args: str, log: str = "worker.log") -> subprocess.Popen[bytes]:
        return self.start("worker", *args, log=log)

    def beat(self, log: str = "beat.log") -> subprocess.Popen[bytes]:
        return self.start("beat", log=log)

    def clearance(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*clearance_command(), *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=timeout)

    def settings(self) -> Settings:
        from core.settings import load_settings

        return load_settings(self.home, self.config)

    @property
    def store(self) -> SqliteStore:
        from indexer.store.sqlite import SqliteStore

        if self._store is None:
            self._store = SqliteStore(self.home / "index.sqlite3")
        return self._store

    def state(self, key: str) -> Any:
        return self.store.get_state(key)

    def wait_report(self, mode: str, *, since: float, timeout: float = 60,
                    status: str | None = None) -> dict[str, Any]:
        """The last `mode` report finished at or after `since` (optionally with `status`)."""
        key = f"sync:{self.connector}:{mode}:last"

        def done() -> dict[str, Any] | None:
            report = self.state(key)
            if (report and report["status"] != "running" and (report["finished"] or 0) >= since
                    and (status is None or report["status"] == status)):
                return dict(report)
            return None

        report = wait_for(done, timeout, f"a {mode} sync report", 0.1)
        assert report is not None
        return report

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.work.glob("*.log")))

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs.clear()
        if self._store is not None:
            self._store.close()
            self._store = None


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
