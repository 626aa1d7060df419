"""The demo's emulated sources: a Confluence site, a SharePoint site and a Google shared drive,
served in-process.

Each `DemoSource` names a connector (its `name` is the doc_id prefix), the emulator that plays the
source, the tenant it serves (a file in `apps/demo/tenants/`), the connector's TOML keys given
where the emulator runs, and the secrets the connector reads from environment variables.

`serve(home)` starts every emulator on a free 127.0.0.1 port for the duration of the demo, with
a fresh random secret per run: put into the emulator's tenant (in memory) and into this
process's environment under the variable the connector's `*_env` key names, so no secret is
ever written to a file or printed. The CA that signs an emulator's TLS certificate is copied
under the demo home (it is public; its private key never leaves the emulator's process).

Stability: the emulators' ports change from run to run, so nothing that lands in a document's
text, id or URL may come from the port. The Graph tenant gives each site a fixed `webUrl` and
the Google tenant each file a fixed `webViewLink`; the Confluence emulator answers as a site
behind a proxy at a fixed public host (`public_host`), so `_links.base` (web URLs, the links
inside pages) is the same on every run. Cursors do carry the port (Graph's nextLink):
`clearance demo` drops an emulated source's checkpoint before its sync. The Google key file's
`token_uri` names this run's emulator, so its secret maker returns a function of `Served`.
Adding a source: its tenant file in `tenants/` (the Acme people, no secret in it), an entry in
`SOURCES`, and a scripted question in `acme_people.json` whose two answers differ because of
that source's own access rule (with a test against a reference evaluator, as in
tests/e2e/test_demo.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_urlsafe

from emulators.base import Emulator, EmulatorServer, JsonObject, Request, Response, load_tenant
from emulators.confluence import ConfluenceEmulator
from emulators.google import GoogleEmulator
from emulators.google.generate import ServiceAccount
from emulators.graph import GraphEmulator

TENANTS = Path(__file__).resolve().parent / "tenants"
TomlValue = str | int | bool | list[str]


@dataclass(frozen=True)
class Served:
    """Where one emulator runs during this demo."""

    base_url: str  # https://127.0.0.1:<port>, for this run only
    ca_bundle: Path | None  # the CA to trust, under the demo home


# A secret maker: takes the tenant (in memory) and returns the variable's value, or a function
# of where the emulator runs that returns it.
SecretMaker = Callable[[JsonObject], "str | Callable[[Served], str]"]


@dataclass(frozen=True)
class DemoSource:
    """One emulated source of the demo tenant."""

    name: str  # the connector's name: the doc_id prefix
    kind: str  # the connector kind (`confluence`, `sharepoint`, ...)
    title: str  # one line for the demo's header
    emulator: Callable[[JsonObject], Emulator]  # the emulator class (or a factory) for a tenant
    tenant: str | Path  # a file name under apps/demo/tenants/ (or a path)
    # The connector's keys (besides name and kind), given where the emulator runs.
    options: Callable[[Served], Mapping[str, TomlValue]]
    # Environment variable -> makes this run's fresh secret, puts the emulator's side of it
    # into the tenant (a token, a client secret, a public key) and returns the variable's value,
    # or what makes it once the emulator's address is known (a key file naming its token URL).
    secrets: Mapping[str, SecretMaker] = field(default_factory=dict)
    tls: bool = True  # served over TLS with a throwaway CA (written under the demo home)

    def load_tenant(self) -> JsonObject:
        return load_tenant(TENANTS / self.tenant)


@dataclass(frozen=True)
class Running:
    source: DemoSource
    served: Served

    def options(self) -> Mapping[str, TomlValue]:
        return self.source.options(self.served)


# -- Confluence ------------------------------------------------------------------------------
CONFLUENCE_USER = "clearance-demo@acme.example"
CONFLUENCE_TOKEN_ENV = "CLEARANCE_DEMO_CONFLUENCE_TOKEN"
CONFLUENCE_HOST = "wiki.acme.example"  # the site's public address: fixed web URLs and links


class PublicConfluence(ConfluenceEmulator):
    """The Confluence emulator answering as a site behind a reverse proxy at `public_host`: the
    site knows its public base URL, so `_links.base` never names the emulator's port."""

    public_host = CONFLUENCE_HOST

    def dispatch(self, request: Request) -> Response:
        request.headers["host"] = self.public_host
        return super().dispatch(request)


def fresh_secret() -> str:
    return token_urlsafe(24)


def _confluence_token(tenant: JsonObject) -> str:
    secret = fresh_secret()
    for cred in tenant.get("credentials", []):
        if cred.get("email") == CONFLUENCE_USER:
            cred["token"] = secret
    return secret


def _confluence_options(served: Served) -> Mapping[str, TomlValue]:
    out: dict[str, TomlValue] = {
        "url": f"{served.base_url}/wiki", "username": CONFLUENCE_USER,
        "token_env": CONFLUENCE_TOKEN_ENV, "spaces": ["ENG", "NEWS"],
        "timezone": "America/Los_Angeles"}
    if served.ca_bundle is not None:
        out["ca_bundle"] = str(served.ca_bundle)
    return out


# -- SharePoint ------------------------------------------------------------------------------
SHAREPOINT_CLIENT_ID = "clearance-demo"
SHAREPOINT_SECRET_ENV = "CLEARANCE_DEMO_SHAREPOINT_SECRET"


def _sharepoint_secret(tenant: JsonObject) -> str:
    secret = fresh_secret()
    for app in tenant.get("apps", []):
        if app.get("client_id") == SHAREPOINT_CLIENT_ID:
            app["client_secret"] = secret
    return secret


def _sharepoint_options(served: Served) -> Mapping[str, TomlValue]:
    tenant = load_tenant(TENANTS / "sharepoint.json")
    out: dict[str, TomlValue] = {
        "tenant_id": str(tenant["tenant_id"]), "client_id": SHAREPOINT_CLIENT_ID,
        "client_secret_env": SHAREPOINT_SECRET_ENV, "sites": ["site-finance"],
        "authority_host": served.base_url, "graph_url": f"{served.base_url}/v1.0"}
    if served.ca_bundle is not None:
        out["ca_bundle"] = str(served.ca_bundle)
    return out


# -- Google Drive ----------------------------------------------------------------------------
GDRIVE_KEY_ENV = "CLEARANCE_DEMO_GDRIVE_KEY"
GDRIVE_ADMIN = "raj.patel@acme.example"  # an admin of the tenant: the Directory reader


def _gdrive_key(tenant: JsonObject) -> Callable[[Served], str]:
    """A fresh RSA key pair for the tenant's service account: the public half goes into the
    tenant; the key file's JSON (private half, token URL of this run's emulator) is the
    variable's value. It lives in this process's memory and environment only."""
    entry = tenant["service_accounts"][0]
    account = ServiceAccount.new(str(entry["client_email"]), str(entry["client_id"]))
    entry["public_key_pem"] = account.public_key_pem
    return lambda served: json.dumps(account.key_file(served.base_url))


def _gdrive_options(served: Served) -> Mapping[str, TomlValue]:
    tenant = load_tenant(TENANTS / "google.json")
    out: dict[str, TomlValue] = {
        "service_account_json_env": GDRIVE_KEY_ENV, "delegated_admin": GDRIVE_ADMIN,
        "domain": str(tenant["domain"]), "shared_drives": True, "my_drives": [],
        "api_endpoint": served.base_url}
    if served.ca_bundle is not None:
        out["ca_bundle"] = str(served.ca_bundle)
    return out


SOURCES: tuple[DemoSource, ...] = (
    DemoSource("confluence", "confluence", "a Confluence site (spaces ENG and NEWS)",
               PublicConfluence, "confluence.json", _confluence_options,
               {CONFLUENCE_TOKEN_ENV: _confluence_token}),
    DemoSource("sharepoint", "sharepoint", "a SharePoint site (Finance)", GraphEmulator,
               "sharepoint.json", _sharepoint_options,
               {SHAREPOINT_SECRET_ENV: _sharepoint_secret}),
    DemoSource("gdrive", "gdrive", "a Google shared drive (Sales)", GoogleEmulator,
               "google.json", _gdrive_options, {GDRIVE_KEY_ENV: _gdrive_key}),
)


@contextmanager
def serve(home: Path, sources: Sequence[DemoSource] = SOURCES) -> Iterator[list[Running]]:
    """Every source's emulator on a free loopback port, and its secrets in this process's
    environment, until the block ends (then the servers stop and the environment is as it
    was)."""
    saved: dict[str, str | None] = {}

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    certs = home / "demo"
    with ExitStack() as stack:
        stack.callback(restore)
        running: list[Running] = []
        for source in sources:
            tenant = source.load_tenant()
            deferred: dict[str, Callable[[Served], str]] = {}
            for env, make in source.secrets.items():
                secret = make(tenant)
                saved.setdefault(env, os.environ.get(env))
                if isinstance(secret, str):
                    os.environ[env] = secret
                else:
                    os.environ.pop(env, None)  # set below, once the address is known
                    deferred[env] = secret
            server = stack.enter_context(EmulatorServer(source.emulator(tenant),
                                                        tls=source.tls))
            ca: Path | None = None
            if server.ca_bundle is not None:
                certs.mkdir(parents=True, exist_ok=True)
                ca = certs / f"{source.name}-ca.pem"
                shutil.copyfile(server.ca_bundle, ca)
            served = Served(server.base_url, ca)
            for env, finish in deferred.items():
                os.environ[env] = finish(served)
            running.append(Running(source, served))
        yield running


def toml_string(value: str) -> str:
    """A TOML basic string. JSON's escapes are TOML's, except that TOML takes no surrogate
    pairs (so characters beyond the BMP stay as they are) and wants DEL escaped."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: TomlValue) -> str:
    """A TOML literal for the few value types connector keys take."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_string(v) for v in value) + "]"
    return toml_string(value)


def connector_toml(name: str, kind: str, options: Mapping[str, TomlValue]) -> str:
    """One `[[connectors]]` table."""
    lines = ["[[connectors]]", f"name = {toml_string(name)}", f"kind = {toml_string(kind)}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"
