"""`clearance web` through the installed console script."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support import clearance_exe
from tests.web.conftest import free_socket
from tests.web.corpus import CEO, build

pytestmark = pytest.mark.e2e


def test_web_needs_an_issuer_or_an_explicit_dev_login(tmp_path: Path) -> None:
    home, config = build(tmp_path, "[web]\nport = 0\n")
    r = subprocess.run([clearance_exe(), "--home", str(home), "web", "--config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "oidc_issuer" in r.stderr


def test_dev_login_off_loopback_is_refused(tmp_path: Path) -> None:
    home, config = build(tmp_path, '[web]\ndev_login = true\n'
                                   'public_url = "https://ask.example.internal"\n')
    r = subprocess.run([clearance_exe(), "--home", str(home), "web", "--config", str(config)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "dev_login is only allowed" in r.stderr


def test_web_serves_with_the_dev_login(tmp_path: Path) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    home, config = build(tmp_path, f'[web]\ndev_login = true\nport = {port}\n')
    proc = subprocess.Popen([clearance_exe(), "--home", str(home), "web", "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        s = requests.Session()
        form = s.get(f"{url}/auth/dev", timeout=10).text
        assert "development only" in form.lower() or "development" in form.lower()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        r = s.post(f"{url}/auth/dev", data={"csrf": csrf.group(1), "email": CEO},
                   allow_redirects=False, timeout=10)
        assert r.status_code == 303
        assert CEO in s.get(url, timeout=10).text
        # a forged dev sign-in without the form's token
        assert requests.post(f"{url}/auth/dev", data={"csrf": "x", "email": CEO},
                             timeout=10).status_code == 403
    finally:
        proc.terminate()
        proc.wait(20)
