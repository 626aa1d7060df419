"""`clearance web [--host H] [--port N]`: serve the web surface with uvicorn."""

from __future__ import annotations

import argparse

from apps.runtime import Runtime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default: [web] host)")
    parser.add_argument("--port", type=int, default=None, help="port (default: [web] port)")


def run(rt: Runtime, args: argparse.Namespace) -> int:
    import uvicorn

    from apps.web.app import create_app
    from core.errors import UsageError

    web = rt.settings.file.web
    port = web.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port number")
    app = create_app(rt)
    uvicorn.run(app, host=args.host or web.host, port=port, log_level="warning",
                proxy_headers=False, server_header=False, limit_concurrency=200,
                timeout_keep_alive=10)
    return 0
