"""URL credentials never survive into a message or a log line."""

from __future__ import annotations

import logging

import pytest

from core.redact import RedactingFilter, redact_text, redact_url, secrets_of

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:s3cretTOK@cache.example:6379/0", "redis://:***@cache.example:6379/0"),
    ("rediss://clearance:pw0rd@cache.example:6380/1", "rediss://clearance:***@cache.example:6380/1"),
    ("https://admin:hunter22@search.example:9200/", "https://admin:***@search.example:9200/"),
    ("https://ghp_abcdef123@git.example/repo", "https://***@git.example/repo"),
    ("redis://:pa%40ss%2Fw@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://:p@ss@host:6379/0", "redis://:***@host:6379/0"),  # unencoded '@' in it
    ("redis://:pa/ss@host:6379/0", "redis://:***@host:6379/0"),  # unencoded '/' in it
    ("https://host/api?token=abc123&page=2", "https://host/api?token=***&page=2"),
    ("https://s3.example/o?X-Amz-Signature=ff00&X-Amz-Credential=AK%2F1",
     "https://s3.example/o?X-Amz-Signature=***&X-Amz-Credential=***"),
    ("https://host/api?password=x;api_key=y", "https://host/api?password=***;api_key=***"),
])
def test_credentials_are_masked_and_the_rest_is_kept(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0", "https://search.example:9200/_cluster/health",
    "https://host/users/a@b.example/profile",  # an '@' in the path is not userinfo
    "http://[::1]:8080/x?page=3&sort=name",
])
def test_urls_without_credentials_are_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_every_url_in_a_message_is_redacted() -> None:
    text = ("cannot reach the broker at redis://:tok1@a:6379/0 (also tried "
            "'rediss://u:tok2@b:6380/0', then <https://x:tok3@c/>)")
    out = redact_text(text)
    assert all(s not in out for s in ("tok1", "tok2", "tok3"))
    assert "redis://:***@a:6379/0" in out and "rediss://u:***@b:6380/0" in out


def test_a_known_secret_is_removed_wherever_a_library_printed_it() -> None:
    url = "redis://:s3cret%21TOK@cache:6379/0"
    assert set(secrets_of(url)) == {"s3cret%21TOK", "s3cret!TOK"}
    message = "AUTH s3cret!TOK failed; password was 's3cret%21TOK'"
    out = redact_text(message, [url])
    assert "s3cret" not in out and out.count("***") == 2
    assert secrets_of("redis://127.0.0.1:6379/0") == [] and secrets_of(None) == []


def test_the_log_filter_redacts_message_arguments_extras_and_tracebacks() -> None:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record) + repr(vars(record).get("reason")))

    handler = Keep()
    handler.addFilter(RedactingFilter(["redis://:hidden99@h:1/0"]))
    logger = logging.getLogger("clearance.test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("connect to %s failed", "redis://:hidden99@h:1/0",
                     extra={"reason": "AUTH hidden99 rejected"})
        try:
            raise ConnectionError("Error connecting to rediss://u:hidden99@h:2/0")
        except ConnectionError:
            logger.exception("broker down")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2
    assert all("hidden99" not in r for r in records), records
    assert "redis://:***@h:1/0" in records[0] and "rediss://u:***@h:2/0" in records[1]


def test_redacting_handlers_twice_adds_the_known_secrets_to_the_one_filter() -> None:
    from core.redact import redact_handlers

    logger = logging.getLogger("clearance.test.redact2")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        redact_handlers(logger, ["redis://:pw12345@h/0", None])
        redact_handlers(logger, ["redis://:pw12345@h/0"])
        filters = [f for f in handler.filters if isinstance(f, RedactingFilter)]
        assert len(filters) == 1 and filters[0].known == ["redis://:pw12345@h/0"]
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "AUTH pw12345", None, None)
        assert filters[0].filter(record) and record.getMessage() == "AUTH ***"
    finally:
        logger.removeHandler(handler)
