"""Sign-in with Microsoft Entra ID through msal: `[web] oidc_issuer` of Entra's v2 shape
(`https://<host>/<tenant>/v2.0`) selects it.

msal runs the auth-code flow: `initiate_auth_code_flow` makes the state, the nonce and the PKCE
pair, `acquire_token_by_auth_code_flow` checks the returned state, redeems the code with the
verifier and matches the nonce. msal does not validate the ID token (since 1.38), so its
signature (the tenant's JWKS), issuer (this tenant's), audience (`client_id`), expiry and nonce
are checked here as for every OIDC issuer. One tenant only: `common`/`organizations`/
`consumers` would let any tenant's admin name any address (the nOAuth pitfall).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import warnings
from typing import Any
from urllib.parse import urlsplit

from apps.web.oidc import InvalidToken, OidcClient
from core.errors import ConfigError

_ENTRA_PATH = re.compile(r"^/([^/]+)/v2\.0$")
MULTI_TENANT = frozenset({"common", "organizations", "consumers"})
SCOPES = ["email"]  # msal adds openid, profile and offline_access itself
# The callback is a GET (response_mode=query) on purpose: the login cookie that binds it to the
# browser is SameSite=Lax, which a cross-site form_post would not carry.
warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended",
                        module=r"msal\.")


def entra_tenant(issuer: str) -> str | None:
    """The tenant of an Entra v2 issuer URL, or None for any other issuer."""
    parts = urlsplit(issuer.rstrip("/"))
    match = _ENTRA_PATH.match(parts.path)
    return match.group(1) if parts.scheme == "https" and match else None


class EntraClient(OidcClient):
    """An OidcClient whose browser sign-in is msal's auth-code flow (bearer tokens are
    validated by the same checks as every issuer's)."""

    def __init__(self, issuer: str, client_id: str, *, client_secret: str | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(issuer, client_id, client_secret=client_secret, timeout=timeout)
        tenant = entra_tenant(self.issuer)
        if tenant is None:
            raise ConfigError("[web] oidc_issuer is not an Entra v2 issuer "
                              "(https://<host>/<tenant>/v2.0)")
        if tenant.lower() in MULTI_TENANT:
            raise ConfigError(f"[web] oidc_issuer names {tenant!r}: sign-in needs your "
                              "tenant's id (one tenant's directory names its people)")
        if not client_secret:
            raise ConfigError("[web] Entra sign-in needs client_secret_env (a confidential "
                              "client)")
        self.authority = self.issuer.removesuffix("/v2.0")
        self._msal: Any = None
        self._msal_lock = threading.Lock()

    def _app(self) -> Any:
        import msal
        import requests

        with self._msal_lock:
            if self._msal is None:
                try:
                    self._msal = msal.ConfidentialClientApplication(
                        self.client_id, client_credential=self.client_secret,
                        authority=self.authority, instance_discovery=False,
                        timeout=self.timeout)
                except (ValueError, requests.RequestException) as exc:
                    raise ConfigError(f"cannot read the Entra tenant's configuration "
                                      f"({type(exc).__name__})") from None
            return self._msal

    def begin_sign_in(self, redirect_uri: str, state: str) -> tuple[str, dict[str, str]]:
        flow = self._app().initiate_auth_code_flow(SCOPES, redirect_uri=redirect_uri,
                                                   state=state, response_mode="query")
        if not isinstance(flow, dict) or flow.get("state") != state or "auth_uri" not in flow:
            raise InvalidToken("msal did not start the sign-in")
        return str(flow["auth_uri"]), {"flow": json.dumps(flow)}

    def finish_sign_in(self, pending: dict[str, str], params: dict[str, str],
                       redirect_uri: str) -> dict[str, Any]:
        try:
            flow = json.loads(pending["flow"])
        except (KeyError, ValueError):
            raise InvalidToken("the sign-in was not started here") from None
        if flow.get("redirect_uri") != redirect_uri:
            raise InvalidToken("the sign-in was started for another address")
        import requests

        try:
            result = self._app().acquire_token_by_auth_code_flow(flow, params)
        except requests.RequestException as exc:
            raise InvalidToken(f"Entra's token endpoint is unreachable "
                               f"({type(exc).__name__})") from None
        except ValueError:  # msal: state mismatch, missing code
            raise InvalidToken("the sign-in response does not match its request") from None
        except RuntimeError:  # msal: the ID token's nonce is not this sign-in's
            raise InvalidToken("the token's nonce is not this sign-in's") from None
        if not isinstance(result, dict) or "error" in result:
            error = result.get("error") if isinstance(result, dict) else None
            raise InvalidToken(f"Entra refused the sign-in ({error or 'no answer'})")
        id_token = result.get("id_token")
        if not isinstance(id_token, str):
            raise InvalidToken("Entra returned no id_token")
        # msal sent the SHA-256 of its nonce: the ID token must carry exactly that.
        sent = hashlib.sha256(str(flow.get("nonce", "")).encode("ascii")).hexdigest()
        return self.validate(id_token, nonce=sent)
