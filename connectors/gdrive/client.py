"""HTTP only: the Drive v3 and Admin SDK Directory calls the Google Drive connector makes.

google-api-python-client built from the discovery documents it ships (`static_discovery=True`,
nothing fetched), over `connectors.http.PolicyHttp` so that every request, token requests
included, goes through the connector's one HTTP policy (timeouts, trust, rate and concurrency
limits, back-off on 429, 5xx and Google's 403 `userRateLimitExceeded` / `rateLimitExceeded`).
The library's own retries stay off (`num_retries=0`).

Sign-in: a service account with domain-wide delegation (google-auth
`service_account.Credentials.with_subject`): one credential per impersonated user, the
Directory calls as the delegated admin, each My Drive as its owner, each shared drive as one of
its members. google-auth renews a token shortly before it expires, never per request; the token
URL is the key file's `token_uri`.

Errors arrive as `core.errors` types, decided by the HTTP status and Google's `reason` /
`location` fields (never by matching message text): an invalid changes page token (400/404 at
`pageToken`) is CursorExpired.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connectors.http import HttpPolicy, PolicyHttp, redact_text
from core.errors import (
    CursorExpired,
    SourceAuthError,
    SourceError,
    SourceForbidden,
    SourceNotFound,
)

JsonObject = dict[str, Any]
DRIVE_SCOPES = ("https://www.googleapis.com/auth/drive.readonly",)
DIRECTORY_SCOPES = ("https://www.googleapis.com/auth/admin.directory.group.readonly",
                    "https://www.googleapis.com/auth/admin.directory.user.readonly")
FILE_FIELDS = ("id,name,mimeType,driveId,parents,trashed,modifiedTime,version,size,"
               "md5Checksum,webViewLink,owners(emailAddress),shortcutDetails")
PERMISSION_FIELDS = ("nextPageToken,permissions(id,type,role,emailAddress,domain,"
                     "allowFileDiscovery,deleted,expirationTime,permissionDetails)")


@dataclass(frozen=True, repr=False)
class ServiceAccountKey:
    """What the connector reads of a JSON key file (the private key never leaves here)."""

    info: JsonObject

    def __repr__(self) -> str:  # a traceback or a log line never shows the key
        return f"ServiceAccountKey(client_email={self.client_email!r})"

    @property
    def client_email(self) -> str:
        return str(self.info.get("client_email", "?"))

    @classmethod
    def parse(cls, text: str) -> ServiceAccountKey:
        """ValueError (without key material in it) when the file is not a usable key."""
        try:
            info = json.loads(text)
        except ValueError:
            raise ValueError("not JSON") from None
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        if info.get("type") != "service_account":
            raise ValueError("not a service account key ('type' is not 'service_account')")
        for key in ("client_email", "private_key", "token_uri"):
            if not isinstance(info.get(key), str) or not info[key]:
                raise ValueError(f"{key!r} is missing")
        if not str(info["token_uri"]).startswith(("https://", "http://127.0.0.1",
                                                  "http://localhost")):
            raise ValueError("'token_uri' must be an https URL")
        from google.oauth2 import service_account

        try:
            service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info)
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError(f"the private key cannot be loaded ({type(exc).__name__})") \
                from None
        return cls(info)


def _reason(content: bytes) -> tuple[str, str, str]:
    """(reason, location, message) of Google's error body; empty strings when absent."""
    try:
        data = json.loads(content or b"null")
    except ValueError:
        return "", "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", "", ""
    first = next((e for e in error.get("errors", []) if isinstance(e, dict)), {})
    return (str(first.get("reason", "")), str(first.get("location", "")),
            redact_text(str(error.get("message", "")))[:160])


# Credentials live as long as the process, not the connector: a worker builds a connector per
# pass, and each would otherwise sign in again as every user it reads. The key is never part of
# the cache key (a digest of it is); each request still goes through its own connector's policy.
_SHARED: dict[tuple[str, str, tuple[str, ...]], Any] = {}
_SHARED_LOCK = threading.Lock()


def _key_digest(info: JsonObject) -> str:
    text = "\x00".join(str(info.get(k, "")) for k in ("client_email", "private_key",
                                                       "token_uri"))
    return hashlib.sha256(text.encode()).hexdigest()


class DriveClient:
    def __init__(self, policy: HttpPolicy, key: ServiceAccountKey, *, delegated_admin: str,
                 domain: str, api_endpoint: str | None = None, page_size: int = 100,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.policy = policy
        self.key = key
        self.delegated_admin = delegated_admin
        self.domain = domain
        self.api_endpoint = api_endpoint.rstrip("/") if api_endpoint else None
        self.page_size = page_size
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._credentials: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._services: dict[tuple[str, str], Any] = {}

    # -- auth and services -------------------------------------------------------------------
    def _creds(self, subject: str, scopes: tuple[str, ...]) -> Any:
        from google.oauth2 import service_account

        digest = _key_digest(self.key.info)
        with self._lock:
            held = self._credentials.get((subject, scopes))
            if held is not None:
                return held
        with _SHARED_LOCK:
            held = _SHARED.get((digest, subject, scopes))
            if held is None:
                # The key is parsed once per scope set; with_subject shares its signer.
                base = _SHARED.get((digest, "", scopes))
                if base is None:
                    base = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                        self.key.info, scopes=list(scopes))
                    _SHARED[(digest, "", scopes)] = base
                held = base.with_subject(subject)
                _SHARED[(digest, subject, scopes)] = held
        with self._lock:
            self._credentials[(subject, scopes)] = held
        return held

    def _service(self, api: str, subject: str) -> Any:
        from googleapiclient.discovery import build

        with self._lock:
            held = self._services.get((api, subject))
        if held is not None:
            return held
        scopes = DRIVE_SCOPES if api == "drive" else DIRECTORY_SCOPES
        http = PolicyHttp(self.policy.session(raise_errors=False),
                          credentials=self._creds(subject, scopes))
        options: dict[str, str] | None = None
        if self.api_endpoint:
            # The override replaces the whole base URL (the discovery servicePath is dropped):
            # Drive's paths carry no prefix, Directory's do (admin/directory/v1/...).
            options = {"api_endpoint": f"{self.api_endpoint}/drive/v3/" if api == "drive"
                       else f"{self.api_endpoint}/"}
        name, version = ("drive", "v3") if api == "drive" else ("admin", "directory_v1")
        service = build(name, version, http=http, static_discovery=True, cache_discovery=False,
                        client_options=options)
        with self._lock:
            self._services[(api, subject)] = service
        return service

    def drive(self, subject: str) -> Any:
        return self._service("drive", subject)

    def directory(self) -> Any:
        return self._service("directory", self.delegated_admin)

    def execute(self, request: Any, what: str, *, cursor: bool = False,
                subject: str | None = None) -> Any:
        """Run one API request; failures as core.errors types."""
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import HttpError

        try:
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                if int(exc.resp.status) != 401 or subject is None:
                    raise
                # A token revoked or expired early: a new one for this user, once.
                self._forget_tokens(subject)
                return request.execute(num_retries=0)
        except HttpError as exc:
            status = int(exc.resp.status)
            reason, location, message = _reason(exc.content)
            text = f"{what}: HTTP {status}{f' {reason}' if reason else ''}" \
                   f"{f' ({message})' if message else ''}"
            # An expired or unknown page token: 400 `invalid` (or 404/410) at `pageToken`;
            # a 400 about another parameter is a request the connector got wrong.
            if cursor and status in (400, 404, 410) and (location == "pageToken" or (
                    not location and reason in ("invalid", "notFound"))):
                raise CursorExpired(text) from None
            if status == 401:
                raise SourceAuthError(text) from None
            if status == 403:
                raise SourceForbidden(text) from None
            if status == 404:
                raise SourceNotFound(text) from None
            raise SourceError(text) from None
        except RefreshError as exc:
            raise SourceAuthError(self._refresh_problem(exc, subject)) from None
        except TransportError as exc:
            raise SourceError(f"{what}: sign-in transport failed ({type(exc).__name__})") \
                from None
        except ValueError as exc:  # the library cannot decode the answer
            raise SourceError(f"{what}: an answer that cannot be read "
                              f"({type(exc).__name__})") from None

    def _forget_tokens(self, subject: str) -> None:
        with self._lock:
            for (who, _), creds in self._credentials.items():
                if who == subject:
                    creds.token = None  # not valid: the next request signs a new assertion

    def _refresh_problem(self, exc: Exception, subject: str | None) -> str:
        # RefreshError args: (message, response body). The body is Google's
        # {"error", "error_description"}: neither holds the assertion or the key.
        body = exc.args[1] if len(exc.args) > 1 else None
        error = description = ""
        if isinstance(body, dict):
            error = str(body.get("error", ""))
            description = str(body.get("error_description", ""))
        detail = redact_text(f"{error}{f' ({description})' if description else ''}")
        who = f" as {subject}" if subject else ""
        return (f"sign-in of service account {self.key.client_email}{who} refused: "
                f"{detail[:200] or type(exc).__name__}")

    def _pages(self, method: Any, what: str, key: str, *, subject: str,
               cursor: bool = False, **params: Any) -> Iterator[JsonObject]:
        token: str | None = params.pop("pageToken", None)
        seen: set[str] = set()
        while True:
            answer = self.execute(method(**params, **({"pageToken": token} if token else {})),
                                  what, cursor=cursor, subject=subject)
            if not isinstance(answer, dict) or not isinstance(answer.get(key, []), list):
                raise SourceError(f"{what}: no {key!r} list in the answer")
            yield answer
            token = answer.get("nextPageToken")
            if not token:
                return
            if not isinstance(token, str) or token in seen:
                raise SourceError(f"{what}: a nextPageToken that loops")
            seen.add(token)

    # -- Directory ---------------------------------------------------------------------------
    def users(self) -> Iterator[JsonObject]:
        users = self.directory().users()
        for page in self._pages(users.list, "users.list", "users", subject=self.delegated_admin,
                                domain=self.domain, maxResults=min(500, self.page_size * 5),
                                projection="basic"):
            yield from (u for u in page.get("users", []) if isinstance(u, dict))

    def groups(self) -> Iterator[JsonObject]:
        groups = self.directory().groups()
        for page in self._pages(groups.list, "groups.list", "groups",
                                subject=self.delegated_admin, domain=self.domain,
                                maxResults=min(200, self.page_size)):
            yield from (g for g in page.get("groups", []) if isinstance(g, dict))

    def members(self, group_key: str) -> Iterator[JsonObject]:
        members = self.directory().members()
        for page in self._pages(members.list, f"members.list {group_key}", "members",
                                subject=self.delegated_admin, groupKey=group_key,
                                maxResults=min(200, self.page_size)):
            yield from (m for m in page.get("members", []) if isinstance(m, dict))

    # -- Drive -------------------------------------------------------------------------------
    def shared_drives(self) -> Iterator[JsonObject]:
        drives = self.drive(self.delegated_admin).drives()
        for page in self._pages(drives.list, "drives.list", "drives",
                                subject=self.delegated_admin, useDomainAdminAccess=True,
                                pageSize=min(100, self.page_size),
                                fields="nextPageToken,drives(id,name)"):
            yield from (d for d in page.get("drives", []) if isinstance(d, dict))

    def drive_members(self, drive_id: str) -> list[JsonObject]:
        """A shared drive's members, read as the delegated admin (useDomainAdminAccess)."""
        perms = self.drive(self.delegated_admin).permissions()
        out: list[JsonObject] = []
        for page in self._pages(perms.list, f"permissions.list drive {drive_id}",
                                "permissions", subject=self.delegated_admin, fileId=drive_id,
                                supportsAllDrives=True, useDomainAdminAccess=True,
                                pageSize=100, fields=PERMISSION_FIELDS):
            out.extend(p for p in page.get("permissions", []) if isinstance(p, dict))
        return out

    def list_files(self, subject: str, drive_id: str | None, token: str | None
                   ) -> Iterator[tuple[list[JsonObject], str | None]]:
        """(files, nextPageToken) of the subject's own My Drive files, or of one shared drive,
        not trashed, from `token` on."""
        files = self.drive(subject).files()
        params: dict[str, Any] = {"pageSize": self.page_size,
                                  "fields": f"nextPageToken,files({FILE_FIELDS})"}
        if drive_id is None:
            params.update(corpora="user", q="'me' in owners and trashed = false")
        else:
            params.update(corpora="drive", driveId=drive_id, includeItemsFromAllDrives=True,
                          supportsAllDrives=True, q="trashed = false")
        if token:
            params["pageToken"] = token
        for page in self._pages(files.list, "files.list", "files", subject=subject,
                                cursor=token is not None, **params):
            entries = [f for f in page.get("files", []) if isinstance(f, dict)]
            following = page.get("nextPageToken")
            yield entries, following if isinstance(following, str) else None

    def list_children(self, subject: str, drive_id: str | None, folder_id: str
                      ) -> Iterator[tuple[list[JsonObject], str | None]]:
        """The live files and folders directly under a folder."""
        files = self.drive(subject).files()
        params: dict[str, Any] = {"pageSize": self.page_size,
                                  "q": f"'{folder_id.replace(chr(39), '')}' in parents and "
                                       "trashed = false",
                                  "fields": f"nextPageToken,files({FILE_FIELDS})"}
        if drive_id is None:
            params.update(corpora="user")
        else:
            params.update(corpora="drive", driveId=drive_id, includeItemsFromAllDrives=True,
                          supportsAllDrives=True)
        for page in self._pages(files.list, "files.list", "files", subject=subject, **params):
            entries = [f for f in page.get("files", []) if isinstance(f, dict)]
            yield entries, None

    def start_token(self, subject: str, drive_id: str | None) -> str:
        changes = self.drive(subject).changes()
        params: dict[str, Any] = {}
        if drive_id is not None:
            params.update(driveId=drive_id, supportsAllDrives=True)
        answer = self.execute(changes.getStartPageToken(**params), "changes.getStartPageToken",
                              subject=subject)
        token = answer.get("startPageToken") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError("changes.getStartPageToken: no startPageToken")
        return token

    def changes(self, subject: str, drive_id: str | None, token: str
                ) -> Iterator[tuple[list[JsonObject], str | None, str | None]]:
        """(changes, nextPageToken, newStartPageToken) from `token` on; a token the source no
        longer accepts raises CursorExpired."""
        changes = self.drive(subject).changes()
        params: dict[str, Any] = {
            "pageToken": token, "pageSize": self.page_size, "includeRemoved": True,
            "fields": f"nextPageToken,newStartPageToken,changes(fileId,removed,time,driveId,"
                      f"file({FILE_FIELDS}))"}
        if drive_id is not None:
            params.update(driveId=drive_id, includeItemsFromAllDrives=True,
                          supportsAllDrives=True)
        for page in self._pages(changes.list, "changes.list", "changes", subject=subject,
                                cursor=True, **params):
            entries = [c for c in page.get("changes", []) if isinstance(c, dict)]
            following = page.get("nextPageToken")
            new_start = page.get("newStartPageToken")
            yield (entries, following if isinstance(following, str) else None,
                   new_start if isinstance(new_start, str) else None)

    def permissions(self, subject: str, file_id: str) -> list[JsonObject]:
        perms = self.drive(subject).permissions()
        out: list[JsonObject] = []
        for page in self._pages(perms.list, f"permissions.list {file_id}", "permissions",
                                subject=subject, fileId=file_id, supportsAllDrives=True,
                                pageSize=100, fields=PERMISSION_FIELDS):
            out.extend(p for p in page.get("permissions", []) if isinstance(p, dict))
        return out

    def download(self, subject: str, file_id: str) -> bytes:
        data = self.execute(self.drive(subject).files().get_media(
            fileId=file_id, supportsAllDrives=True), f"files.get media {file_id}",
            subject=subject)
        return self._bytes(data, file_id)

    def export(self, subject: str, file_id: str, mime: str) -> bytes:
        data = self.execute(self.drive(subject).files().export(fileId=file_id, mimeType=mime),
                            f"files.export {file_id}", subject=subject)
        return self._bytes(data, file_id)

    def _bytes(self, data: Any, file_id: str) -> bytes:
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, bytes):
            raise SourceError(f"file {file_id}: the download is not bytes")
        return data  # the extractor refuses more than max_file_bytes (reported, not retried)
