"""Entra ID user sign-in for the Graph emulator: the auth-code flow a web app runs with msal.

- `GET /{tenant}/oauth2/v2.0/authorize`: a login form (code flow with PKCE S256 only; the
  app's `redirect_uris` must list the redirect URI);
- `POST /{tenant}/oauth2/v2.0/authorize`: the form's answer (a user's `userPrincipalName` and
  `password`, from the tenant's users) -> 302 to the redirect URI with `code` and `state`;
- `POST /{tenant}/oauth2/v2.0/token` with `grant_type=authorization_code`: one use per code,
  the same client, redirect URI and secret, the PKCE verifier -> an RS256 `id_token` (`iss`
  this tenant's v2 issuer, `aud` the client id, `nonce`, `oid`, `tid`, `preferred_username`,
  `email` when the user has `mail`) and an access token for the app itself;
- `GET /{tenant}/discovery/keys`: the signing keys.

Tests tamper with the next ID tokens through `tamper(**claims)` (None removes a claim) and
`tamper_signing(alg=..., forged=True)`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from emulators.base import JsonObject, Request, Response

if TYPE_CHECKING:
    from emulators.graph import GraphEmulator

CODE_SECONDS = 60.0
ID_TOKEN_SECONDS = 3600


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class EntraSignIn:
    def __init__(self, emulator: GraphEmulator) -> None:
        self.emu = emulator
        self.codes: dict[str, JsonObject] = {}
        self.overrides: JsonObject = {}
        self.alg = "RS256"
        self.forged = False

    def routes(self) -> None:
        self.emu.route("GET", "/{tenant}/oauth2/v2.0/authorize", self._form)
        self.emu.route("POST", "/{tenant}/oauth2/v2.0/authorize", self._authorize)
        self.emu.route("GET", "/{tenant}/discovery/keys", self._keys)

    # -- test handles -----------------------------------------------------------------------
    def tamper(self, **claims: Any) -> None:
        self.overrides.update(claims)

    def tamper_signing(self, *, alg: str = "RS256", forged: bool = False) -> None:
        self.alg, self.forged = alg, forged

    # -- routes -----------------------------------------------------------------------------
    def _tenant_ok(self, request: Request) -> bool:
        return request.params["tenant"] == self.emu.tenant.get("tenant_id")

    def _app(self, client_id: str | None) -> JsonObject | None:
        for app in self.emu.tenant.get("apps", []):
            if app.get("client_id") == client_id:
                found: JsonObject = app
                return found
        return None

    def _check(self, request: Request, q: dict[str, str]) -> Response | None:
        if not self._tenant_ok(request):
            return Response.json({"error": "invalid_tenant"}, 400)
        app = self._app(q.get("client_id"))
        if app is None or q.get("redirect_uri") not in app.get("redirect_uris", []):
            return Response.json({"error": "invalid_request", "error_description":
                                  "AADSTS50011: The redirect URI does not match."}, 400)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" \
                or not q.get("code_challenge") or "openid" not in q.get("scope", "").split():
            return Response.json({"error": "invalid_request", "error_description":
                                  "code flow with PKCE S256 and openid only"}, 400)
        return None

    def _form(self, request: Request) -> Response:
        q = {k: v[0] for k, v in request.query.items()}
        bad = self._check(request, q)
        if bad is not None:
            return bad
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in q.items())
        page = ("<!doctype html><html><head><title>Sign in</title></head><body>"
                "<h1>Emulated Entra ID</h1><form method=\"post\">"
                f"{hidden}<label>User <input name=\"username\" id=\"username\"></label>"
                "<label>Password <input name=\"password\" id=\"password\" type=\"password\">"
                "</label><button type=\"submit\" id=\"signin\">Sign in</button></form>"
                "</body></html>")
        return Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def _authorize(self, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        bad = self._check(request, form)
        if bad is not None:
            return bad
        user = next((u for u in self.emu.tenant.get("users", [])
                     if u.get("userPrincipalName") == form.get("username")
                     and isinstance(u.get("password"), str)
                     and secrets.compare_digest(u["password"], form.get("password", ""))), None)
        if user is None:
            return Response(401, b"<p>AADSTS50126: wrong user or password</p>",
                            {"Content-Type": "text/html; charset=utf-8"})
        code = secrets.token_urlsafe(24)
        self.codes[code] = {"client_id": form["client_id"], "redirect_uri": form["redirect_uri"],
                            "challenge": form["code_challenge"], "nonce": form.get("nonce"),
                            "user": user, "at": time.monotonic()}
        params = {"code": code, **({"state": form["state"]} if form.get("state") else {})}
        target = form["redirect_uri"]
        sep = "&" if urlsplit(target).query else "?"
        return Response(302, b"", {"Location": f"{target}{sep}{urlencode(params)}"})

    def _keys(self, request: Request) -> Response:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.emu._key.public_key()))
        jwk.update({"kid": "emu", "use": "sig", "kty": "RSA"})
        return Response.json({"keys": [jwk]})

    def token(self, request: Request, form: dict[str, str]) -> Response:
        """The authorization_code grant of the token endpoint."""
        grant = self.codes.pop(form.get("code", ""), None)  # one use only
        if grant is None or time.monotonic() - grant["at"] > CODE_SECONDS:
            return Response.json({"error": "invalid_grant", "error_description":
                                  "AADSTS70008: the code has expired or was used."}, 400)
        if form.get("client_id") != grant["client_id"] \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return Response.json({"error": "invalid_grant"}, 400)
        app = self._app(grant["client_id"]) or {}
        if not app.get("client_secret") or not secrets.compare_digest(
                str(app["client_secret"]), form.get("client_secret", "")):
            return Response.json({"error": "invalid_client", "error_description":
                                  "AADSTS7000215: Invalid client secret provided."}, 401)
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(_s256(verifier), grant["challenge"]):
            return Response.json({"error": "invalid_grant", "error_description":
                                  "AADSTS501481: The Code_Verifier does not match."}, 400)
        user, client_id = grant["user"], grant["client_id"]
        tid = str(self.emu.tenant["tenant_id"])
        base = f"https://{request.headers.get('host', '127.0.0.1')}/{tid}"
        now = int(time.time())
        claims: JsonObject = {
            "iss": f"{base}/v2.0", "aud": client_id, "iat": now, "nbf": now,
            "exp": now + ID_TOKEN_SECONDS, "sub": hashlib.sha256(user["id"].encode()).hexdigest(),
            "oid": user["id"], "tid": tid, "ver": "2.0",
            "preferred_username": user["userPrincipalName"],
            "name": user.get("displayName", user["userPrincipalName"])}
        if user.get("mail"):
            claims["email"] = user["mail"]
        if grant.get("nonce"):
            claims["nonce"] = grant["nonce"]
        claims.update(self.overrides)
        id_token = self._sign({k: v for k, v in claims.items() if v is not None})
        access = jwt.encode({"iss": f"{base}/v2.0", "aud": client_id, "iat": now, "nbf": now,
                             "exp": now + ID_TOKEN_SECONDS, "oid": user["id"], "tid": tid,
                             "scp": "email openid profile"},
                            self.emu._key, algorithm="RS256", headers={"kid": "emu"})
        info = base64.urlsafe_b64encode(json.dumps(
            {"uid": user["id"], "utid": tid}).encode()).rstrip(b"=").decode()
        return Response.json({"token_type": "Bearer", "scope": "email openid profile",
                              "expires_in": ID_TOKEN_SECONDS, "ext_expires_in": ID_TOKEN_SECONDS,
                              "access_token": access, "id_token": id_token,
                              "client_info": info})

    def _sign(self, claims: JsonObject) -> str:
        if self.alg == "none":
            return jwt.encode(claims, "", algorithm="none", headers={"kid": "emu"})
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if self.forged \
            else self.emu._key
        return jwt.encode(claims, key, algorithm=self.alg, headers={"kid": "emu"})
