"""An OpenID Connect provider on loopback: discovery, JWKS, an authorization endpoint with a
login form, a token endpoint that checks PKCE (S256), and RS256-signed id and access tokens.

Tenant: `{"clients": [{"client_id", "redirect_uris": [...], "client_secret"?}],
"users": [{"username", "password", "email"?, "name"?, "groups"?: [...]}]}`. The issuer is the
server's base URL (`bind()`), or the tenant's `issuer`. `POST /_admin/mint` `{"claims": {...},
"alg"?, "kid"?}` signs an arbitrary token with the provider's key (tests forge the rest).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.base import Emulator, JsonObject, Request, Response

CODE_SECONDS = 60.0
TOKEN_SECONDS = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


class OidcEmulator(Emulator):
    name: ClassVar[str] = "oidc"

    def __init__(self, tenant: JsonObject | None = None) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self.base_url: str | None = None
        self.codes: dict[str, dict[str, Any]] = {}
        super().__init__(tenant)

    def bind(self, base_url: str) -> None:
        self.base_url = base_url

    @property
    def issuer(self) -> str:
        found = self.tenant.get("issuer") or self.base_url
        if not isinstance(found, str):
            raise ValueError("the OIDC emulator has no issuer: bind() it to its base URL")
        return found

    def validate(self, tenant: JsonObject) -> None:
        for c in tenant.get("clients", []):
            if not isinstance(c, dict) or not isinstance(c.get("client_id"), str) \
                    or not isinstance(c.get("redirect_uris", []), list):
                raise ValueError("clients: each needs a client_id and redirect_uris")
        for u in tenant.get("users", []):
            if not isinstance(u, dict) or not isinstance(u.get("username"), str) \
                    or not isinstance(u.get("password"), str):
                raise ValueError("users: each needs a username and a password")

    def setup(self) -> None:
        self.route("GET", "/.well-known/openid-configuration", self._discovery)
        self.route("GET", "/jwks", self._jwks)
        self.route("GET", "/authorize", self._authorize_form)
        self.route("POST", "/authorize", self._authorize)
        self.route("POST", "/token", self._token)

    # -- signing ---------------------------------------------------------------------------
    def sign(self, claims: JsonObject, alg: str = "RS256", kid: str | None = None) -> str:
        headers = {"kid": kid or self.kid}
        if alg == "none":
            return jwt.encode(claims, "", algorithm="none", headers=headers)
        return jwt.encode(claims, self.key, algorithm=alg, headers=headers)

    def token_for(self, user: JsonObject, client_id: str, nonce: str | None = None,
                  lifetime: int = TOKEN_SECONDS) -> str:
        now = int(time.time())
        claims: JsonObject = {"iss": self.issuer, "aud": client_id, "sub": user["username"],
                              "iat": now, "nbf": now, "exp": now + lifetime,
                              "name": user.get("name", user["username"])}
        if user.get("email"):
            claims["email"] = user["email"]
        else:
            claims["preferred_username"] = user["username"]
        if user.get("groups"):
            claims["groups"] = list(user["groups"])
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign(claims)

    # -- routes ----------------------------------------------------------------------------
    def _discovery(self, request: Request) -> Response:
        iss = self.issuer
        return Response.json({
            "issuer": iss, "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token", "jwks_uri": f"{iss}/jwks",
            "response_types_supported": ["code"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"]})

    def _jwks(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return Response.json({"keys": [jwk]})

    def _client(self, client_id: str | None) -> JsonObject | None:
        for c in self.tenant.get("clients", []):
            if c["client_id"] == client_id:
                found: JsonObject = c
                return found
        return None

    def _check_authorize(self, q: dict[str, str]) -> Response | None:
        client = self._client(q.get("client_id"))
        if client is None or q.get("redirect_uri") not in client.get("redirect_uris", []):
            return Response.error(400, "invalid_client", "unknown client or redirect_uri")
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                or not q.get("code_challenge"):
            return Response.error(400, "invalid_request", "code flow with PKCE S256 only")
        return None

    def _authorize_form(self, request: Request) -> Response:
        q = {k: v[0] for k, v in request.query.items()}
        bad = self._check_authorize(q)
        if bad is not None:
            return bad
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in q.items())
        page = ("<!doctype html><html><head><title>Sign in</title></head><body>"
                "<h1>Emulated identity provider</h1><form method=\"post\" action=\"/authorize\">"
                f"{hidden}<label>User <input name=\"username\" id=\"username\"></label>"
                "<label>Password <input name=\"password\" id=\"password\" type=\"password\">"
                "</label><button type=\"submit\" id=\"signin\">Sign in</button></form>"
                "</body></html>")
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def _authorize(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        bad = self._check_authorize(form)
        if bad is not None:
            return bad
        user = next((u for u in self.tenant.get("users", [])
                     if u["username"] == form.get("username")
                     and secrets.compare_digest(u["password"], form.get("password", ""))), None)
        if user is None:
            return Response(401, b"<p>wrong user or password</p>",
                            {"Content-Type": "text/html; charset=utf-8"})
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"client_id": form["client_id"], "redirect_uri": form["redirect_uri"],
                            "challenge": form["code_challenge"], "nonce": form.get("nonce"),
                            "user": user, "at": time.monotonic()}
        params = {"code": code}
        if form.get("state"):
            params["state"] = form["state"]
        target = form["redirect_uri"]
        sep = "&" if urlsplit(target).query else "?"
        return Response(302, b"", {"Location": f"{target}{sep}{urlencode(params)}"})

    def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "authorization_code":
            return Response.error(400, "unsupported_grant_type")
        grant = self.codes.pop(form.get("code", ""), None)  # one use only
        if grant is None or time.monotonic() - grant["at"] > CODE_SECONDS:
            return Response.error(400, "invalid_grant", "unknown, used or expired code")
        if form.get("client_id") != grant["client_id"] \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return Response.error(400, "invalid_grant", "client or redirect_uri mismatch")
        client = self._client(grant["client_id"]) or {}
        secret = client.get("client_secret")
        if secret is not None and not secrets.compare_digest(secret,
                                                             form.get("client_secret", "")):
            return Response.error(401, "invalid_client")
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(s256(verifier), grant["challenge"]):
            return Response.error(400, "invalid_grant", "PKCE verification failed")
        user, client_id = grant["user"], grant["client_id"]
        return Response.json({"token_type": "Bearer", "expires_in": TOKEN_SECONDS,
                              "id_token": self.token_for(user, client_id, grant["nonce"]),
                              "access_token": self.token_for(user, client_id)})

    def admin(self, request: Request, rest: str) -> Response | None:
        if rest == "mint" and request.method == "POST":
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("claims"), dict):
                raise ValueError("mint needs {\"claims\": {...}}")
            return Response.json({"token": self.sign(body["claims"], body.get("alg", "RS256"),
                                                     body.get("kid"))})
        return None
