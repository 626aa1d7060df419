"""`clearance web` with `[teams]` through the installed console script: the bot is served at
POST /api/messages on the web server (real uvicorn, the Hardening middleware), answers through
the Bot Framework emulator, and a missing secret is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from emulators.botframework import BotFrameworkEmulator
from tests.bots.teams_world import APP_ID, APP_PASSWORD, LEAVE_Q, PERSONAL_ADA, activity
from tests.support import clearance_exe
from tests.web.conftest import free_socket
from tests.web.corpus import build

pytestmark = pytest.mark.e2e


def _config(tmp_path: Path, emu_url: str, port: int) -> tuple[Path, Path]:
    return build(tmp_path, (
        f'[web]\ndev_login = true\nport = {port}\n\n'
        f'[teams]\napp_id = "{APP_ID}"\napp_password_env = "CLI_TEAMS_PASSWORD"\n'
        f'openid_metadata_url = "{emu_url}/v1/.well-known/openidconfiguration"\n'
        f'oauth_endpoint = "{emu_url}"\n'))


def test_a_missing_app_password_is_one_line_and_exit_2(tmp_path: Path) -> None:
    home, config = _config(tmp_path, "https://127.0.0.1:9", 0)
    env = {k: v for k, v in os.environ.items() if k != "CLI_TEAMS_PASSWORD"}
    r = subprocess.run([clearance_exe(), "--home", str(home), "web", "--config", str(config)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "CLI_TEAMS_PASSWORD is not set" in r.stderr


def test_clearance_web_serves_the_teams_bot(tmp_path: Path) -> None:
    from emulators.base import EmulatorServer
    from tests.bots.teams_world import TENANT

    emulator = BotFrameworkEmulator(TENANT)
    with EmulatorServer(emulator, tls=True) as emu:
        emulator.bind(emu.base_url)
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        home, config = _config(tmp_path, emu.base_url, port)
        env = {**os.environ, "CLI_TEAMS_PASSWORD": APP_PASSWORD,
               "REQUESTS_CA_BUNDLE": str(emu.ca_bundle)}
        proc = subprocess.Popen([clearance_exe(), "--home", str(home), "web", "--config",
                                 str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
        url = f"http://127.0.0.1:{port}/api/messages"
        try:
            for _ in range(300):
                try:
                    requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                    break
                except requests.ConnectionError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    time.sleep(0.2)
            body = activity(emu, conversation=PERSONAL_ADA, kind="personal", sender="aad-ada",
                            text=LEAVE_Q)
            unsigned = requests.post(url, json=body, timeout=10)
            assert unsigned.status_code == 401
            assert "content-security-policy" in unsigned.headers  # behind the web hardening
            token = emulator.channel_token(emu.base_url)
            r = requests.post(url, data=json.dumps(body), timeout=30, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            [reply] = emulator.sent()
            assert "twenty-eight" in reply["activity"]["text"]
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30)
        assert APP_PASSWORD.encode() not in err
