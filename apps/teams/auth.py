"""Who may post to the Teams bot, and how the bot signs its replies.

Inbound: every activity carries a JWT from the Bot Framework channel. It is accepted only when
signed by a key of the channel's OpenID metadata (`openid_metadata_url` -> `jwks_uri`) that is
endorsed for the activity's channel, with `iss` = the Bot Framework, `aud` = this bot's app id,
`exp`/`nbf` current, an RSA `alg` (never `none`, never HMAC) and a `serviceurl` claim equal to
the activity's service URL (the bot's own token is only ever sent where the channel said).
Skill and emulator tokens are not accepted: this bot talks to Teams only.

Outbound: msal client credentials at `oauth_endpoint` (the app's tenant, else
`botframework.com`) for the Bot Connector audience, built with `instance_discovery=False` so
that an overridden endpoint is the only one contacted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import requests
from botbuilder.schema import Activity
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
)

from core.errors import ConfigError

CHANNEL_ISSUER = "https://api.botframework.com"
CONNECTOR_SCOPE = "https://api.botframework.com"
TEAMS_CHANNEL = "msteams"
ALLOWED_ALGS = frozenset({"RS256", "RS384", "RS512"})
LEEWAY_SECONDS = 300  # the Bot Framework's own clock tolerance
JWKS_REFRESH_SECONDS = 30.0
METADATA_SECONDS = 24 * 3600.0
MAX_TOKEN_CHARS = 16_384
CONNECTOR_TIMEOUT_SECONDS = 10


class Unauthorized(Exception):
    """A request this bot does not accept (the message names why, never the token)."""


class ChannelTokens:
    """The channel's signing keys (cached, refreshed on an unknown kid at most every 30 s) and
    the checks on one activity's token. Thread-safe."""

    def __init__(self, app_id: str, metadata_url: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.app_id = app_id
        self.metadata_url = metadata_url
        self.timeout = timeout
        self.http = session or requests.Session()
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._jwks_at = 0.0
        self._keys: dict[str, tuple[jwt.PyJWK, tuple[str, ...]]] = {}
        self._keys_at = 0.0

    def _get(self, url: str) -> Any:
        try:
            r = self.http.get(url, timeout=self.timeout)
            r.raise_for_status()
            return r.json()
        except (requests.RequestException, ValueError) as exc:
            raise Unauthorized(f"cannot read the Bot Framework's signing keys "
                               f"({type(exc).__name__})") from None

    def _jwks(self) -> str:
        if self._jwks_uri is None or time.monotonic() - self._jwks_at > METADATA_SECONDS:
            doc = self._get(self.metadata_url)
            uri = doc.get("jwks_uri") if isinstance(doc, dict) else None
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise Unauthorized("the Bot Framework's OpenID metadata names no jwks_uri")
            self._jwks_uri, self._jwks_at = uri, time.monotonic()
        return self._jwks_uri

    def key(self, kid: str) -> tuple[jwt.PyJWK, tuple[str, ...]]:
        with self._lock:
            stale = time.monotonic() - self._keys_at > JWKS_REFRESH_SECONDS
            if kid not in self._keys and (stale or not self._keys):
                data = self._get(self._jwks())
                keys: dict[str, tuple[jwt.PyJWK, tuple[str, ...]]] = {}
                for entry in (data.get("keys", []) if isinstance(data, dict) else []):
                    if not isinstance(entry, dict) or entry.get("kty") != "RSA":
                        continue
                    try:
                        k = jwt.PyJWK(entry, algorithm="RS256")
                    except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
                        continue
                    endorsed = entry.get("endorsements", [])
                    keys[str(entry.get("kid"))] = (k, tuple(
                        e for e in endorsed if isinstance(e, str)) if isinstance(
                            endorsed, list) else ())
                self._keys, self._keys_at = keys, time.monotonic()
            found = self._keys.get(kid)
        if found is None:
            raise Unauthorized("the token's key is not one of the Bot Framework's")
        return found

    def validate(self, authorization: str | None, channel_id: str | None,
                 service_url: str | None) -> dict[str, Any]:
        """The claims of the channel's token for this activity; else Unauthorized."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a bearer token from the Bot Framework is required")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("oversized token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALLOWED_ALGS:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("the token names no key")
        key, endorsements = self.key(kid)
        if channel_id != TEAMS_CHANNEL or channel_id not in endorsements:
            raise Unauthorized("the token's key is not endorsed for this channel")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.app_id, issuer=CHANNEL_ISSUER,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another bot") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token is not from the Bot Framework") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token is not valid ({type(exc).__name__})") from None
        signed_url = claims.get("serviceurl")
        if not isinstance(signed_url, str) or not isinstance(service_url, str) \
                or signed_url.rstrip("/") != service_url.rstrip("/"):
            raise Unauthorized("the activity's service URL is not the one the token names")
        return claims


class MsalCredentials(AppCredentials):  # type: ignore[misc]
    """The bot's client-credentials token for the Bot Connector, from msal (cached by it)."""

    def __init__(self, app_id: str, password: str, authority: str) -> None:
        super().__init__(app_id=app_id, oauth_scope=CONNECTOR_SCOPE)
        self._password = password
        self._authority = authority
        self._app: Any = None
        self._lock = threading.Lock()

    def get_access_token(self, force_refresh: bool = False) -> str:
        from msal import ConfidentialClientApplication

        scopes = [f"{CONNECTOR_SCOPE}/.default"]
        with self._lock:
            if self._app is None:
                try:
                    self._app = ConfidentialClientApplication(
                        self.microsoft_app_id, client_credential=self._password,
                        authority=self._authority, instance_discovery=False, timeout=10)
                except (ValueError, requests.RequestException) as exc:
                    raise PermissionError(f"cannot reach the bot's token authority "
                                          f"({type(exc).__name__})") from None
            result = self._app.acquire_token_for_client(scopes=scopes)
        token = result.get("access_token") if isinstance(result, dict) else None
        if not isinstance(token, str):
            error = result.get("error", "unknown") if isinstance(result, dict) else "unknown"
            raise PermissionError(f"the bot could not sign in for its replies ({error})")
        return token


class Connectors(ConnectorFactory):  # type: ignore[misc]
    """Connector clients for the service URL of a validated activity, with the bot's token."""

    def __init__(self, credentials: MsalCredentials) -> None:
        self.credentials = credentials

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        client = ConnectorClient(self.credentials, base_url=service_url)
        client.config.connection.timeout = CONNECTOR_TIMEOUT_SECONDS  # msrest's default is 100
        return client


class TeamsAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]
    """botbuilder's authentication plug-in point, answered by ChannelTokens and msal."""

    def __init__(self, tokens: ChannelTokens, credentials: MsalCredentials) -> None:
        self.tokens = tokens
        self.connectors = Connectors(credentials)

    async def authenticate_request(self, activity: Activity,
                                   auth_header: str) -> AuthenticateRequestResult:
        import asyncio

        claims = await asyncio.to_thread(self.tokens.validate, auth_header,
                                         activity.channel_id, activity.service_url)
        result = AuthenticateRequestResult()
        result.claims_identity = ClaimsIdentity(claims, True)
        result.audience = CONNECTOR_SCOPE
        result.caller_id = "urn:botframework:azure"
        result.connector_factory = self.connectors
        return result

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self.connectors

    def get_originating_audience(self) -> str:
        return CONNECTOR_SCOPE

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        raise PermissionError("only activities are accepted")

    async def authenticate_streaming_request(self, auth_header: str,
                                             channel_id_header: str) -> Any:
        raise PermissionError("streaming is not supported")

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> Any:
        return None  # no user sign-in prompts: the asker is named by the member list

    def create_bot_framework_client(self) -> Any:
        raise PermissionError("skills are not used by this bot")


def authority(oauth_endpoint: str | None, tenant: str | None) -> str:
    base = (oauth_endpoint or "https://login.microsoftonline.com").rstrip("/")
    if not base.startswith("https://"):
        raise ConfigError("[teams] oauth_endpoint must be an https:// URL (msal refuses others)")
    return f"{base}/{tenant or 'botframework.com'}"
