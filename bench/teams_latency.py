"""Teams bot latency: one activity's round trip through POST /api/messages (token check, member
look-up, the answer, the reply through the Bot Connector) against the Bot Framework emulator
over TLS on loopback, with the extractive answerer.

A generated tree is synced; the Teams router is served by uvicorn. Measured in one run:
personal chats (the asker's access), channel mentions (the audience rule over a roster of
`--members`, read in pages of 50), deliveries with a forged token (refused: the cost of the
check alone), and `--concurrency` personal deliveries at once. Prints p50/p95 and ratios.

    python -m bench.teams_latency [--docs 2000] [--questions 60] [--members 200]
                                  [--concurrency 10]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from apps.cli.main import main as cli
from apps.runtime import Runtime
from apps.teams.app import build_router
from bench.synthetic import write_tree
from bench.web_latency import percentile, questions
from core.settings import load_settings
from emulators.base import EmulatorServer
from emulators.botframework import BotFrameworkEmulator
from tests.web.conftest import free_socket, serve

APP_ID, PASSWORD = "bench-bot", "bench-bot-password"


def tenant(members: int) -> dict[str, Any]:
    users = [{"id": f"29:u{i}", "aadObjectId": f"aad-{i}", "name": f"User {i}",
              "email": f"u{i}@bench.example"} for i in range(members)]
    return {"app_id": APP_ID, "app_password": PASSWORD, "page_size": 50, "users": users,
            "conversations": {"a:personal": ["29:u0"], "19:team": [u["id"] for u in users],
                              "19:chan": [u["id"] for u in users]}}


def body(url: str, i: int, question: str, channel: bool) -> dict[str, Any]:
    return {"type": "message", "id": f"act-{i}", "channelId": "msteams", "serviceUrl": url,
            "from": {"id": "29:u0", "aadObjectId": "aad-0"},
            "recipient": {"id": f"28:{APP_ID}"},
            "conversation": {"id": "19:chan" if channel else "a:personal",
                             "conversationType": "channel" if channel else "personal"},
            "channelData": {"team": {"id": "19:team"}} if channel else {},
            "text": f"<at>Bot</at> {question}" if channel else question}


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="clearance-bench-teams-") as tmp:
        work = Path(tmp)
        root = write_tree(work / "docs", args.docs)
        emulator = BotFrameworkEmulator(tenant(args.members))
        emu = EmulatorServer(emulator, tls=True).start()
        emulator.bind(emu.base_url)
        os.environ["REQUESTS_CA_BUNDLE"] = str(emu.ca_bundle)
        os.environ["BENCH_TEAMS_PASSWORD"] = PASSWORD
        config = work / "clearance.toml"
        config.write_text(
            f'[embedder]\nname = "hashing"\n\n[web]\nasks_per_minute = 10000\n\n'
            f'[teams]\napp_id = "{APP_ID}"\napp_password_env = "BENCH_TEAMS_PASSWORD"\n'
            f'openid_metadata_url = "{emu.base_url}/v1/.well-known/openidconfiguration"\n'
            f'oauth_endpoint = "{emu.base_url}"\n\n'
            '[[connectors]]\nname = "docs"\nkind = "files"\nroot = "docs"\n')
        assert cli(["--home", str(work / "home"), "sync", "--config", str(config)]) == 0
        rt = Runtime(load_settings(work / "home", config), read_only=True)
        app = FastAPI()
        app.include_router(build_router(rt, rt.settings))
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/messages"
        stop = serve(app, sock)
        qs = questions(root, args.questions)
        token = emulator.channel_token(emu.base_url)
        claims = jwt.decode(token, options={"verify_signature": False})
        forged = jwt.encode(claims, rsa.generate_private_key(public_exponent=65537,
                                                             key_size=2048),
                            algorithm="RS256", headers={"kid": emulator.kid})
        errors = 0

        def deliver(i: int, question: str, channel: bool, bearer: str = token) -> float:
            nonlocal errors
            started = time.perf_counter()
            r = requests.post(url, data=json.dumps(body(emu.base_url, i, question, channel)),
                              headers={"Authorization": f"Bearer {bearer}",
                                       "Content-Type": "application/json"}, timeout=120)
            expected = 401 if bearer is forged else 200
            if r.status_code != expected:
                errors += 1
            return time.perf_counter() - started

        try:
            deliver(0, qs[0], False)  # warm: keys, the bot's token, lanes
            deliver(0, qs[0], True)
            personal = [deliver(i, q, False) for i, q in enumerate(qs)]
            channel = [deliver(i, q, True) for i, q in enumerate(qs)]
            refused = [deliver(i, q, False, forged) for i, q in enumerate(qs)]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                concurrent = list(pool.map(lambda i: deliver(i, qs[i % len(qs)], False),
                                           range(len(qs))))
            wall = time.perf_counter() - t0
            replies = len(emulator.sent())
        finally:
            stop()
            rt.lanes().close()
            emu.stop()

    def ms(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(1000 * percentile(values, 0.5), 1),
                "p95_ms": round(1000 * percentile(values, 0.95), 1)}
    return {"docs": args.docs, "questions": len(qs), "members": args.members,
            "personal": ms(personal), "channel": ms(channel), "forged_token_401": ms(refused),
            "concurrent": {**ms(concurrent), "askers": args.concurrency,
                           "deliveries_per_s": round(len(qs) / wall, 1)},
            "replies": replies, "errors": errors,
            "channel_over_personal_p50": round(percentile(channel, 0.5)
                                               / percentile(personal, 0.5), 2),
            "token_check_over_personal_p50": round(percentile(refused, 0.5)
                                                   / percentile(personal, 0.5), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--questions", type=int, default=60)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=10)
    print(json.dumps(run(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
