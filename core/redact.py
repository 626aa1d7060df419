"""Secrets out of every message and log line: the one place URLs lose their credentials.

`redact_url` masks the userinfo of a URL (`redis://:token@`, `rediss://user:pw@`,
`https://user:pw@`, or a bare token `https://TOKEN@`) and the values of query parameters that
look like credentials (`?password=`, `&token=`, `X-Amz-Signature=`). `redact_text` does the same
to every URL inside free text (library errors quote URLs), and also removes any literal secret
the caller knows (the password of the configured broker URL, wherever a library printed it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:[\w.\-]*(?:pass|pwd|token|secret|key|auth|sig|credential|session)"
    r"[\w.\-]*)=)([^&;#\s]*)")


def _mask_userinfo(userinfo: str) -> str:
    user, sep, _password = userinfo.partition(":")
    # `user:pw` keeps the user name; a lone `TOKEN@` is the secret itself.
    return f"{user}:{MASK}" if sep and user else MASK if not sep else f":{MASK}"


def redact_url(url: str) -> str:
    """`url` with its password (or bare token) and credential-like query values masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_PARAM.sub(rf"\1{MASK}", url)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    at = authority.rfind("@")
    if at < 0 and "@" in rest[end:] and re.match(r"^[^:]*:(?!\d*$)", authority):
        # `redis://:pa/ss@host`: an unencoded '/' in the password; mask up to the last '@'.
        at = end + rest[end:].rfind("@")
    if at >= 0:
        rest = _mask_userinfo(rest[:at]) + rest[at:]
    return _SECRET_PARAM.sub(rf"\1{MASK}", f"{scheme}://{rest}")


def secrets_of(url: str | None) -> list[str]:
    """The literal secrets in `url` (its password, or a bare token), raw and percent-decoded."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        secret = parts.password if parts.password is not None else (
            parts.username if parts.username and ":" not in parts.netloc.rpartition("@")[0]
            else None)
    except ValueError:
        return []
    if not secret:
        return []
    return sorted({secret, unquote(secret)}, key=len, reverse=True)


def redact_text(text: str, known: Iterable[str | None] = ()) -> str:
    """`text` with every URL redacted and the secrets of the `known` URLs removed anywhere."""
    out = _URL.sub(lambda m: redact_url(m.group(0)), text)
    for url in known:
        for secret in secrets_of(url):
            if len(secret) >= 3:  # a one-letter password would mask half the message
                out = out.replace(secret, MASK)
    return out


class RedactingFilter(logging.Filter):
    """Redacts a record's message, its string extras and its traceback before any handler."""

    def __init__(self, known: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.known = [k for k in known if k]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message, self.known)
        if clean != message:
            record.msg, record.args = clean, None
        for name, value in list(vars(record).items()):
            if name not in ("msg", "args") and isinstance(value, str):
                setattr(record, name, redact_text(value, self.known))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.known)
        return True


def redact_handlers(logger: logging.Logger, known: Iterable[str | None] = ()) -> None:
    """One RedactingFilter on each of `logger`'s handlers, knowing the secrets of `known`."""
    secrets = [k for k in known if k]
    for handler in logger.handlers:
        present = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        if present:
            present[0].known.extend(k for k in secrets if k not in present[0].known)
        else:
            handler.addFilter(RedactingFilter(secrets))
