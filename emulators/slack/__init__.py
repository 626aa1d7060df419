"""The Slack Web API on loopback, for the Slack bot's tests (slack_sdk's WebClient `base_url`).

Methods (POST /api/<method>, form or JSON bodies, `Authorization: Bearer <bot token>`):
auth.test, users.info, conversations.members (paged: `cursor`, `limit`,
`response_metadata.next_cursor`), chat.postMessage, chat.postEphemeral. Errors are Slack's:
HTTP 200 with `{"ok": false, "error": "..."}` (`invalid_auth`, `user_not_found`,
`channel_not_found`). Tenant:
    {
      "token": "xoxb-test",                          # the bot token accepted
      "bot_user_id": "UBOT",
      "users": {"U1": {"email": "ada@acme.com"}, "UB2": {"is_bot": true}, "U3": {}},
      "channels": {"C1": ["U1", "U3", "UBOT"]},
      "page_size": 2                                 # conversations.members page (default 100)
    }
`GET /_admin/posted` returns every chat.postMessage/postEphemeral seen, in order.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar
from urllib.parse import parse_qs

from emulators.base import Emulator, JsonObject, Request, Response


class SlackEmulator(Emulator):
    name: ClassVar[str] = "slack"

    def validate(self, tenant: JsonObject) -> None:
        users = tenant.get("users", {})
        channels = tenant.get("channels", {})
        if not isinstance(users, dict) or not all(isinstance(u, dict) for u in users.values()):
            raise ValueError("users must map ids to objects")
        if not isinstance(channels, dict) or not all(
                isinstance(m, list) and all(isinstance(x, str) for x in m)
                for m in channels.values()):
            raise ValueError("channels must map ids to lists of user ids")

    def setup(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.route("POST", "/api/{method}", self._call)

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "posted" and request.method == "GET":
            return Response.json(self.posted)
        return None

    @staticmethod
    def _args(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        args: dict[str, Any] = {k: v[0] for k, v in request.query.items()}
        if "json" in ctype:
            body = request.json()
            if isinstance(body, dict):
                args.update(body)
        elif request.body:
            args.update({k: v[0] for k, v in parse_qs(request.body.decode()).items()})
        return args

    def _call(self, request: Request) -> Response:
        method = request.params["method"]
        if request.bearer is None or request.bearer != self.tenant.get("token", "xoxb-test"):
            return Response.json({"ok": False, "error": "invalid_auth"})
        args = self._args(request)
        users: dict[str, Any] = self.tenant.get("users", {})
        if method == "auth.test":
            return Response.json({"ok": True, "user_id": self.tenant.get("bot_user_id", "UBOT"),
                                  "bot_id": "B0", "team_id": "T0", "team": "acme",
                                  "url": "https://acme.slack.com/", "user": "clearance"})
        if method == "users.info":
            uid = str(args.get("user", ""))
            if uid not in users:
                return Response.json({"ok": False, "error": "user_not_found"})
            u = users[uid]
            profile = {"email": u["email"]} if "email" in u else {}
            return Response.json({"ok": True, "user": {
                "id": uid, "is_bot": bool(u.get("is_bot")), "deleted": bool(u.get("deleted")),
                "profile": profile}})
        if method == "conversations.members":
            channel = str(args.get("channel", ""))
            members = self.tenant.get("channels", {}).get(channel)
            if members is None:
                return Response.json({"ok": False, "error": "channel_not_found"})
            size = int(self.tenant.get("page_size", 100))
            start = int(args.get("cursor") or 0)
            page = members[start:start + size]
            nxt = str(start + size) if start + size < len(members) else ""
            return Response.json({"ok": True, "members": page,
                                  "response_metadata": {"next_cursor": nxt}})
        if method in ("chat.postMessage", "chat.postEphemeral"):
            record = {"method": method, **args}
            for key in ("blocks",):
                if isinstance(record.get(key), str):
                    record[key] = json.loads(record[key])
            self.posted.append(record)
            return Response.json({"ok": True, "channel": args.get("channel"),
                                  "ts": f"{len(self.posted)}.000100",
                                  "message_ts": f"{len(self.posted)}.000100"})
        return Response.json({"ok": False, "error": "unknown_method"})
