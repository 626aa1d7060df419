"""OpenID Connect on the relying party's side: the issuer's discovery document and JWKS, token
validation (signature by the issuer's key, `iss`, `aud` = client id, `exp`/`nbf`, the `alg`
the key declares and never `none`), the auth-code flow with PKCE, and who the token names."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from core.errors import ConfigError

# Asymmetric algorithms only: an HMAC `alg` would make the public key a shared secret.
ALLOWED_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                          "ES256", "ES384", "ES512"})
LEEWAY_SECONDS = 60
JWKS_REFRESH_SECONDS = 30.0  # an unknown kid re-reads the JWKS at most this often
MAX_TOKEN_CHARS = 16_384


class InvalidToken(Exception):
    """A token this deployment does not accept (the message names why, never the token)."""


@dataclass(frozen=True)
class Discovery:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def person_of(claims: dict[str, Any]) -> str:
    """The asker: `email`, else `preferred_username`, else `upn`; it must look like an address.
    An `email` the issuer says is unverified (`email_verified` false, or anything but true) is
    never the identity, nor replaced by a weaker claim: the sign-in is refused."""
    if "email" in claims and "email_verified" in claims \
            and claims["email_verified"] not in (True, "true"):
        raise InvalidToken("the issuer has not verified the token's email address")
    for name in ("email", "preferred_username", "upn"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            if "@" not in value or value.strip() != value or " " in value or len(value) > 320:
                raise InvalidToken(f"the token's {name} claim is not an email address")
            return value
    raise InvalidToken("the token names no person (no email, preferred_username or upn)")


class OidcClient:
    """One issuer and one client id; thread-safe (the JWKS is cached under a lock)."""

    def __init__(self, issuer: str, client_id: str, *, client_secret: str | None = None,
                 timeout: float = 10.0, session: requests.Session | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.timeout = timeout
        self.http = session or requests.Session()
        self._lock = threading.Lock()
        self._discovery: Discovery | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = 0.0

    def _get(self, url: str) -> Any:
        try:
            r = self.http.get(url, timeout=self.timeout)
            r.raise_for_status()
            return r.json()
        except (requests.RequestException, ValueError) as exc:
            raise ConfigError(f"cannot read the OIDC issuer's {url.rsplit('/', 1)[-1]} "
                              f"({type(exc).__name__})") from None

    def discovery(self) -> Discovery:
        with self._lock:
            if self._discovery is None:
                doc = self._get(f"{self.issuer}/.well-known/openid-configuration")
                if not isinstance(doc, dict) or doc.get("issuer", "").rstrip("/") != self.issuer:
                    raise ConfigError("the OIDC discovery document names another issuer")
                try:
                    self._discovery = Discovery(
                        self.issuer, str(doc["authorization_endpoint"]),
                        str(doc["token_endpoint"]), str(doc["jwks_uri"]),
                        doc.get("end_session_endpoint"))
                except KeyError as exc:
                    raise ConfigError(f"the OIDC discovery document has no {exc}") from None
            return self._discovery

    def _key(self, kid: str | None) -> jwt.PyJWK:
        jwks_uri = self.discovery().jwks_uri
        with self._lock:
            stale = time.monotonic() - self._keys_at > JWKS_REFRESH_SECONDS
            if (kid not in self._keys) and (stale or not self._keys):
                data = self._get(jwks_uri)
                keys: dict[str, jwt.PyJWK] = {}
                for entry in (data.get("keys", []) if isinstance(data, dict) else []):
                    try:
                        k = jwt.PyJWK(entry)
                    except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
                        continue  # a key we cannot use (an encryption key, an unknown kty)
                    keys[str(entry.get("kid"))] = k
                self._keys, self._keys_at = keys, time.monotonic()
            found = self._keys.get(str(kid))
        if found is None:
            raise InvalidToken("the token's key is not one of the issuer's")
        return found

    def validate(self, token: str, *, nonce: str | None = None) -> dict[str, Any]:
        """The claims of a token the issuer signed for this client, now valid; else
        InvalidToken."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("missing or oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise InvalidToken(f"token algorithm {alg!r} is not accepted")
        key = self._key(header.get("kid"))
        declared = key.algorithm_name if hasattr(key, "algorithm_name") else None
        if declared and declared != alg:
            raise InvalidToken("the token's algorithm is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.client_id, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token is from another issuer") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is not valid ({type(exc).__name__})") from None
        if nonce is not None and not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise InvalidToken("the token's nonce is not this sign-in's")
        return claims

    # -- the auth-code sign-in, as the web app drives it --------------------------------------
    def begin_sign_in(self, redirect_uri: str, state: str) -> tuple[str, dict[str, str]]:
        """(where to send the browser, what the callback needs back) for a new sign-in."""
        verifier, challenge = pkce_pair()
        nonce = secrets.token_urlsafe(24)
        return (self.authorize_url(redirect_uri, state, nonce, challenge),
                {"verifier": verifier, "nonce": nonce})

    def finish_sign_in(self, pending: dict[str, str], params: dict[str, str],
                       redirect_uri: str) -> dict[str, Any]:
        """The validated ID token's claims for the callback's `params`; else InvalidToken."""
        code = params.get("code")
        if not code:
            raise InvalidToken("the issuer returned no code")
        tokens = self.exchange(code, redirect_uri, pending["verifier"])
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise InvalidToken("the issuer returned no id_token")
        return self.validate(id_token, nonce=pending["nonce"])

    def authorize_url(self, redirect_uri: str, state: str, nonce: str, challenge: str) -> str:
        from urllib.parse import urlencode

        params = {"response_type": "code", "client_id": self.client_id,
                  "redirect_uri": redirect_uri, "scope": "openid email profile", "state": state,
                  "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
        return f"{self.discovery().authorization_endpoint}?{urlencode(params)}"

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": self.client_id, "code_verifier": verifier}
        if self.client_secret:
            form["client_secret"] = self.client_secret
        try:
            r = self.http.post(self.discovery().token_endpoint, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise InvalidToken(f"the token endpoint is unreachable ({type(exc).__name__})") \
                from None
        if r.status_code != 200:
            raise InvalidToken(f"the token endpoint refused the code (HTTP {r.status_code})")
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            raise InvalidToken("the token endpoint answered no JSON") from None
        return body
