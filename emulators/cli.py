"""`clearance emulate SOURCE [--tenant FILE] [--port N] [--plain-http]`: serve one emulator.

The first line on stdout is the base URL; with TLS (the default) the second is
`ca_bundle <path>`, the throwaway CA's certificate a client must trust. It serves until
SIGINT/SIGTERM, then removes the CA files and exits 0. Emulators come from the
`clearance.emulators` entry point group, so a connector adds its own without touching the CLI.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType

from core.errors import ClearanceError, ConfigError, UsageError
from emulators.base import EmulatorServer, load_tenant, registered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="emulator name (an entry point of clearance.emulators)")
    parser.add_argument("--tenant", type=Path, default=None, metavar="FILE",
                        help="tenant data file (JSON; default: the emulator's example tenant)")
    parser.add_argument("--port", type=int, default=0,
                        help="port on 127.0.0.1 (default 0: a free one)")
    parser.add_argument("--plain-http", action="store_true",
                        help="serve http instead of https with a throwaway CA")


def example_tenant(source: str) -> Path:
    return Path(__file__).parent / "tenants" / f"{source}.json"


def run(args: argparse.Namespace) -> int:
    known = registered()
    cls = known.get(args.source)
    if cls is None:
        raise UsageError(f"unknown emulator {args.source!r} (known: {', '.join(sorted(known))})")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port number")
    path = args.tenant if args.tenant is not None else example_tenant(args.source)
    try:
        emulator = cls(load_tenant(path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        server = EmulatorServer(emulator, port=args.port, tls=not args.plain_http)
    except OSError as exc:
        raise ClearanceError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}") from exc
    stop = threading.Event()

    def finish(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    bind = getattr(emulator, "bind", None)
    if callable(bind):  # an emulator that names itself (the OIDC issuer) learns its URL
        bind(server.base_url)
    with server:
        if getattr(args, "json", False):
            print(json.dumps({"base_url": server.base_url,
                              "ca_bundle": str(server.ca_bundle) if server.ca_bundle else None}),
                  flush=True)
        else:
            print(server.base_url, flush=True)
            if server.ca_bundle is not None:
                print(f"ca_bundle {server.ca_bundle}", flush=True)
        stop.wait()
    return 0
