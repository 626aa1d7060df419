"""`clearance sync` and `clearance reindex` through the console script on an OpenSearch store
(osmem-server: OpenSearch-compatible, in memory, no k-NN)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from osmem_server import OsmemError, OsmemServer

from tests.support import clearance_exe, unavailable

pytestmark = pytest.mark.e2e



@pytest.fixture
def cluster() -> Iterator[str]:
    try:
        server = OsmemServer.start(japanese=False, addr="127.0.0.1:0")
    except OsmemError as exc:
        unavailable(f"osmem-server could not start here: {exc}")
    try:
        yield server.url
    finally:
        server.close()


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLEARANCE_EMBEDDER": "hashing"}
    return subprocess.run([clearance_exe(), "--home", str(home), *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_sync_then_reindex_swaps_the_alias_and_keeps_every_document(
        tmp_path: Path, cluster: str) -> None:
    root = tmp_path / "docs"
    (root / "team").mkdir(parents=True)
    (root / ".access.json").write_text(json.dumps({"read": ["everyone"]}))
    (root / "a.md").write_text("# A\n\nThe lighthouse opens at dawn.\n")
    (root / "team" / ".access.json").write_text(json.dumps({"read": ["group:team"]}))
    (root / "team" / "b.md").write_text("# B\n\nThe team ships in June.\n")
    config = tmp_path / "clearance.toml"
    config.write_text(f'[store]\nkind = "opensearch"\nurl = "{cluster}"\n'
                      f'index_prefix = "acme"\n\n[[connectors]]\nname = "docs"\nkind = "files"\n'
                      f'root = "{root}"\n')
    home = tmp_path / "home"

    synced = run(home, "sync", "--config", str(config), "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["syncs"][0]["indexed"] == 2

    first = run(home, "reindex", "--config", str(config), "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["old_index"], result["new_index"]) == ("acme-chunks-v1", "acme-chunks-v2")
    assert result["records"] == 4  # two chunks and two document records

    status = run(home, "status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["connectors"][0]["documents"] == 2


def test_reindex_on_the_embedded_store_is_a_one_line_config_error(tmp_path: Path) -> None:
    r = run(tmp_path / "home", "reindex")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "opensearch" in r.stderr


# -- a cluster that is lost, emptied or cut off ------------------------------------------------
TREE = {
    ".access.json": {"read": ["everyone"]},
    ".groups.json": {"contractors": ["user:carl@acme.com"]},
    "a.md": "# A\n\nThe lighthouse opens at dawn.\n",
    "b.md": "# B\n\nThe lighthouse keeper rows out.\n",
    "team/.access.json": {"read": ["everyone"], "deny": ["group:contractors"]},
    "team/c.md": "# C\n\nThe lighthouse budget is secret.\n",
    "team/d.md": "# D\n\nThe lighthouse lamp is new.\n",
    "team/e.md": "# E\n\nThe lighthouse roof leaks.\n",
}


def deployment(tmp_path: Path, url: str, name: str = "clearance.toml") -> Path:
    root = tmp_path / "docs"
    if not root.exists():
        for rel, content in TREE.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content if isinstance(content, str) else json.dumps(content))
    config = tmp_path / name
    config.write_text(f'[store]\nkind = "opensearch"\nurl = "{url}"\nindex_prefix = "acme"\n\n'
                      f'[[connectors]]\nname = "docs"\nkind = "files"\nroot = "{root}"\n'
                      "page_size = 2\n\n"
                      '[retrieval]\nfusion = "bm25"\n')  # osmem has no k-NN
    return config


def found(home: Path, config: Path, email: str) -> set[str]:
    r = run(home, "search", "lighthouse", "--as", email, "--config", str(config), "--json")
    assert r.returncode == 0, r.stderr
    return {h["doc_id"] for h in json.loads(r.stdout)["hits"]}


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_a_deleted_index_fails_reads_closed_and_the_next_sync_rebuilds_it(
        tmp_path: Path, cluster: str) -> None:
    from opensearchpy import OpenSearch

    config = deployment(tmp_path, cluster)
    home = tmp_path / "home"
    assert run(home, "sync", "--config", str(config)).returncode == 0
    before = {p: found(home, config, p) for p in ("bob@acme.com", "carl@acme.com")}
    assert before["carl@acme.com"] == {"docs:a.md", "docs:b.md"}  # denied the team folder
    client = OpenSearch(hosts=[cluster])
    client.indices.delete(index="acme-chunks-v1")

    missing = ("index acme-chunks is missing (cluster restarted empty or index deleted): the "
               "next sync rebuilds it")
    for command in (["search", "lighthouse"], ["ask", "lighthouse?"], ["explain", "docs:a.md"]):
        r = run(home, *command, "--as", "bob@acme.com", "--config", str(config))
        assert (r.returncode, one_line(r)) == (1, f"clearance: {missing}"), command
    status = run(home, "status", "--config", str(config))
    assert status.returncode == 1, status.stderr
    assert f"PROBLEM: {missing}" in status.stdout
    assert "PROBLEM: index empty or missing: 5 documents at the source" in status.stdout
    assert not client.indices.exists(index="acme-chunks")  # no read created anything

    # Identities lost as well: the deny group must not stop denying once chunks are back.
    client.indices.delete(index="acme-identities")
    r = run(home, "sync", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert {p: found(home, config, p) for p in before} == before
    assert json.loads(run(home, "status", "--config", str(config), "--json").stdout)[
        "problems"] == []


def test_a_lost_identities_index_fails_search_and_explain_closed(
        tmp_path: Path, cluster: str) -> None:
    from opensearchpy import OpenSearch

    config = deployment(tmp_path, cluster)
    home = tmp_path / "home"
    assert run(home, "sync", "--config", str(config)).returncode == 0
    OpenSearch(hosts=[cluster]).indices.delete(index="acme-identities")
    search = run(home, "search", "lighthouse", "--as", "carl@acme.com", "--config", str(config))
    assert search.returncode == 1 and search.stdout == ""
    assert "identity store acme-identities is missing" in one_line(search)
    assert "clearance sync --mode groups" in search.stderr
    explain = run(home, "explain", "docs:team/c.md", "--as", "carl@acme.com", "--config",
                  str(config))
    assert explain.returncode == 1 and "no deny applies" not in explain.stdout
    status = run(home, "status", "--config", str(config))
    assert status.returncode == 1
    assert "PROBLEM: identity store acme-identities is missing" in status.stdout
    assert run(home, "sync", "--mode", "groups", "--config", str(config)).returncode == 0
    assert found(home, config, "carl@acme.com") == {"docs:a.md", "docs:b.md"}


class CutOff:
    """A loopback HTTP proxy to the cluster that stops listening (connection refused) once it
    has forwarded the checkpoint of the sync's first page, before that request is answered."""

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                import http.client

                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                if self.command == "PUT" and "checkpoint" in self.path:
                    proxy.checkpoints += 1
                    if proxy.checkpoints == 2:  # the start's, then page one's
                        proxy.cut()  # before the answer: every later request is refused
                self.send_response(answer.status)
                for key in ("Content-Type", "Content-Encoding"):
                    if answer.getheader(key):
                        self.send_header(key, answer.getheader(key))
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _forward

            def do_HEAD(self) -> None:
                self._forward()

            def log_message(self, *args: object) -> None:
                pass

        self.checkpoints = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def cut(self) -> None:
        """Stop listening now (a connect is refused at once, never raced by a request already
        on its way), then end the serving loop in the background."""
        import socket
        import threading

        self.server.socket.shutdown(socket.SHUT_RDWR)
        threading.Thread(target=self.stop, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_sync_cut_off_midway_reports_its_own_error_and_status_the_resume_point(
        tmp_path: Path, cluster: str) -> None:
    proxy = CutOff(cluster)
    cut = deployment(tmp_path, proxy.url, "cut.toml")
    home = tmp_path / "home"
    r = run(home, "sync", "--config", str(cut))
    proxy.stop()
    assert r.returncode == 1
    # The sync's own error: whichever request of the sync first met the vanished cluster (the
    # document lookup, or the state read of the next page's cursor), never a follow-up error.
    assert re.fullmatch(rf"clearance: sync of 'docs' failed: OpenSearch (document lookup|state "
                        rf"read) failed: cannot connect to {re.escape(proxy.url)}: connection "
                        rf"refused", one_line(r)), r.stderr

    direct = deployment(tmp_path, cluster)
    status = run(home, "status", "--config", str(direct))
    assert "interrupted: full sync started" in status.stdout, status.stdout
    assert "stopped after 2 documents; the next sync resumes from its checkpoint" in status.stdout
    resumed = run(home, "sync", "--config", str(direct), "--json")
    assert resumed.returncode == 0, resumed.stderr
    (report,) = json.loads(resumed.stdout)["syncs"]
    assert (report["resumed"], report["documents"]) == (True, 5)
    after = run(home, "status", "--config", str(direct)).stdout
    assert "interrupted: full sync started" not in after


def test_a_killed_reindex_is_reported_loudly_and_does_not_hold_back_a_revocation(
        tmp_path: Path, cluster: str) -> None:
    from opensearchpy import OpenSearch

    config = deployment(tmp_path, cluster)
    home = tmp_path / "home"
    assert run(home, "sync", "--config", str(config)).returncode == 0
    assert "docs:a.md" in found(home, config, "bob@acme.com")
    client = OpenSearch(hosts=[cluster])
    client.indices.put_settings(index="acme-chunks-v1", body={"index": {"blocks": {"write": True}}})
    status = run(home, "status", "--config", str(config))
    assert status.returncode == 1
    assert ("PROBLEM: a reindex was interrupted: acme-chunks-v1 is write-blocked; run "
            "`clearance reindex` again") in status.stdout

    (tmp_path / "docs" / ".access.json").write_text(json.dumps({"read": ["user:ann@acme.com"]}))
    r = run(home, "sync", "--mode", "permissions", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "docs:a.md" not in found(home, config, "bob@acme.com")  # revoked at once
    assert "docs:a.md" in found(home, config, "ann@acme.com")
    assert run(home, "status", "--config", str(config)).returncode == 0
