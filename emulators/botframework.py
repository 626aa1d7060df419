"""The Bot Framework on loopback, as a Teams bot sees it: the channel's OpenID metadata and
signing keys (with endorsements), channel-to-bot tokens for tests, the Entra token endpoint the
bot signs in to for its replies (client credentials), and the Bot Connector API the replies and
member look-ups go to (`{serviceUrl}/v3/conversations/...`).

Tenant: `{"app_id", "app_password", "tenant_id"?, "page_size"?, "users": [{"id": "29:...",
"aadObjectId", "name", "email"?, "userPrincipalName"?}], "conversations": {"<conversation or
team id>": ["29:...", ...]}}`. Serve it with TLS (msal refuses a plain-http authority) and
`bind()` it to its base URL. `POST /_admin/mint` `{"claims": {...}, "alg"?, "kid"?}` signs an
arbitrary channel token; `posted` holds every activity the bot sent.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from typing import Any, ClassVar
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.base import Emulator, JsonObject, Request, Response

CHANNEL_ISSUER = "https://api.botframework.com"  # the issuer of channel-to-bot tokens
CONNECTOR_AUDIENCE = "https://api.botframework.com"  # the audience of the bot's own tokens
TOKEN_SECONDS = 3600


class BotFrameworkEmulator(Emulator):
    name: ClassVar[str] = "botframework"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "bf-" + secrets.token_hex(6)
        # A genuine key of the Bot Framework endorsed for another channel only.
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_kid = "bf-webchat-" + secrets.token_hex(4)
        # Signs the bot's own access tokens (what the Connector API accepts).
        self.login_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.base_url: str | None = None
        self.posted: list[JsonObject] = []
        self.token_requests = 0
        self._posted_lock = threading.Lock()
        super().__init__(tenant)

    def bind(self, base_url: str) -> None:
        self.base_url = base_url

    @property
    def base(self) -> str:
        if self.base_url is None:
            raise ValueError("bind() the Bot Framework emulator to its base URL first")
        return self.base_url

    def validate(self, tenant: JsonObject) -> None:
        if tenant and not isinstance(tenant.get("app_id"), str):
            raise ValueError("the tenant needs an app_id")
        users = tenant.get("users", [])
        if not isinstance(users, list) or not all(
                isinstance(u, dict) and isinstance(u.get("id"), str) for u in users):
            raise ValueError("users: a list of objects with an id")
        ids = [u["id"] for u in users]
        if len(ids) != len(set(ids)):
            raise ValueError("users: duplicate ids")
        conversations = tenant.get("conversations", {})
        if not isinstance(conversations, dict) or not all(
                isinstance(v, list) and all(m in ids for m in v)
                for v in conversations.values()):
            raise ValueError("conversations: each a list of user ids of `users`")

    def setup(self) -> None:
        self.route("GET", "/v1/.well-known/openidconfiguration", self._metadata)
        self.route("GET", "/v1/.well-known/keys", self._keys)
        self.route("GET", "/{tenant}/v2.0/.well-known/openid-configuration", self._login_meta)
        self.route("POST", "/{tenant}/oauth2/v2.0/token", self._token)
        c = "/v3/conversations/{conversation}"
        self.route("GET", f"{c}/members", self._members)
        self.route("GET", f"{c}/pagedmembers", self._paged_members)
        self.route("GET", f"{c}/members/{{member}}", self._member)
        self.route("POST", f"{c}/activities", self._send)
        self.route("POST", f"{c}/activities/{{activity}}", self._send)
        self.route("PUT", f"{c}/activities/{{activity}}", self._send)

    # -- tokens for tests -------------------------------------------------------------------
    def sign(self, claims: JsonObject, alg: str = "RS256", kid: str | None = None) -> str:
        headers = {"kid": kid or self.kid}
        if alg == "none":
            return jwt.encode(claims, "", algorithm="none", headers=headers)
        key = self.other_key if kid == self.other_kid else self.key
        return jwt.encode(claims, key, algorithm=alg, headers=headers)

    def channel_token(self, service_url: str, *, audience: str | None = None,
                      lifetime: int = TOKEN_SECONDS, **extra: Any) -> str:
        """A token as the Bot Framework sends it with an activity for this bot."""
        now = int(time.time())
        claims: JsonObject = {"iss": CHANNEL_ISSUER, "aud": audience or self.tenant["app_id"],
                              "iat": now, "nbf": now, "exp": now + lifetime,
                              "serviceurl": service_url, **extra}
        return self.sign({k: v for k, v in claims.items() if v is not None})

    def sent(self) -> list[JsonObject]:
        with self._posted_lock:
            return list(self.posted)

    # -- the channel's OpenID metadata ------------------------------------------------------
    def _metadata(self, request: Request) -> Response:
        return Response.json({"issuer": CHANNEL_ISSUER,
                              "authorization_endpoint": "https://invalid.botframework.com",
                              "jwks_uri": f"{self.base}/v1/.well-known/keys",
                              "id_token_signing_alg_values_supported": ["RS256"],
                              "token_endpoint_auth_methods_supported": ["private_key_jwt"]})

    def _jwk(self, key: rsa.RSAPrivateKey, kid: str, endorsements: list[str]) -> JsonObject:
        jwk: JsonObject = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": kid, "use": "sig", "endorsements": endorsements})
        return jwk

    def _keys(self, request: Request) -> Response:
        return Response.json({"keys": [self._jwk(self.key, self.kid, ["msteams", "emulator"]),
                                       self._jwk(self.other_key, self.other_kid, ["webchat"])]})

    # -- the bot's own sign-in (Entra, client credentials) ----------------------------------
    def _tenant_ok(self, tenant: str) -> bool:
        return tenant in ("botframework.com", self.tenant.get("tenant_id"))

    def _login_meta(self, request: Request) -> Response:
        tenant = request.params["tenant"]
        if not self._tenant_ok(tenant):
            return Response.json({"error": "invalid_tenant"}, 400)
        base = f"{self.base}/{tenant}"
        return Response.json({"token_endpoint": f"{base}/oauth2/v2.0/token",
                              "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                              "issuer": f"{base}/v2.0", "jwks_uri": f"{base}/discovery/keys"})

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if not self._tenant_ok(request.params["tenant"]):
            return Response.json({"error": "invalid_request"}, 400)
        if form.get("grant_type") != "client_credentials":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        if form.get("client_id") != self.tenant.get("app_id") or not secrets.compare_digest(
                form.get("client_secret", ""), str(self.tenant.get("app_password", ""))):
            return Response.json({"error": "invalid_client", "error_description":
                                  "AADSTS7000215: Invalid client secret provided."}, 401)
        if form.get("scope") != f"{CONNECTOR_AUDIENCE}/.default":
            return Response.json({"error": "invalid_scope"}, 400)
        self.token_requests += 1
        now = int(time.time())
        token = jwt.encode({"aud": CONNECTOR_AUDIENCE, "appid": self.tenant["app_id"],
                            "iat": now, "nbf": now, "exp": now + TOKEN_SECONDS,
                            "jti": uuid.uuid4().hex}, self.login_key, algorithm="RS256")
        return Response.json({"token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                              "ext_expires_in": TOKEN_SECONDS, "access_token": token})

    # -- the Bot Connector API --------------------------------------------------------------
    def _auth(self, request: Request) -> Response | None:
        try:
            claims = jwt.decode(request.bearer or "", self.login_key.public_key(),
                                algorithms=["RS256"], audience=CONNECTOR_AUDIENCE)
        except jwt.PyJWTError:
            return Response.json({"message": "Authorization has been denied for this request."},
                                 401)
        if claims.get("appid") != self.tenant.get("app_id"):
            return Response.json({"message": "Authorization has been denied."}, 401)
        return None

    def _user(self, uid: str) -> JsonObject | None:
        for u in self.tenant.get("users", []):
            if uid in (u["id"], u.get("aadObjectId")):
                found: JsonObject = u
                return found
        return None

    def _roster(self, request: Request) -> list[JsonObject] | Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        ids = self.tenant.get("conversations", {}).get(request.params["conversation"])
        if ids is None:
            return Response.error(404, "ConversationNotFound", "Conversation not found.")
        return [self._account(u) for u in (self._user(i) for i in ids) if u is not None]

    @staticmethod
    def _account(user: JsonObject) -> JsonObject:
        out = {k: v for k, v in user.items() if k in (
            "id", "name", "aadObjectId", "email", "userPrincipalName", "givenName", "surname",
            "tenantId", "userRole")}
        out.setdefault("userRole", "user")
        return out

    def _members(self, request: Request) -> Response:
        found = self._roster(request)
        return found if isinstance(found, Response) else Response.json(found)

    def _paged_members(self, request: Request) -> Response:
        found = self._roster(request)
        if isinstance(found, Response):
            return found
        try:
            size = int(request.arg("pageSize") or self.tenant.get("page_size", 50))
            start = int(request.arg("continuationToken") or 0)
        except ValueError:
            return Response.error(400, "BadArgument", "pageSize and continuationToken")
        page = found[start:start + max(1, size)]
        body: JsonObject = {"members": page}
        if start + size < len(found):
            body["continuationToken"] = str(start + size)
        return Response.json(body)

    def _member(self, request: Request) -> Response:
        found = self._roster(request)
        if isinstance(found, Response):
            return found
        wanted = request.params["member"]
        for m in found:
            if wanted in (m["id"], m.get("aadObjectId")):
                return Response.json(m)
        return Response.error(404, "MemberNotFoundInConversation", "The member was not found.")

    def _send(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        activity = request.json()
        if not isinstance(activity, dict):
            return Response.error(400, "BadArgument", "an activity is a JSON object")
        record = {"conversation": request.params["conversation"],
                  "reply_to": request.params.get("activity"), "activity": activity}
        with self._posted_lock:
            self.posted.append(record)
        return Response.json({"id": uuid.uuid4().hex})

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "mint" and request.method == "POST":
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("claims"), dict):
                raise ValueError("mint needs {\"claims\": {...}}")
            return Response.json({"token": self.sign(body["claims"], body.get("alg", "RS256"),
                                                     body.get("kid"))})
        return None
