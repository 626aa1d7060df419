"""Conversations in production: Amazon DynamoDB (boto3) or Redis, behind the protocol of
assistant.conversations, chosen by `[conversations] backend`.

DynamoDB (`backend = "dynamodb"`): one table, `table` (default `clearance-conversations`), with
partition key `owner` (the asker's email, ASCII letters lower-cased) and sort key `sk`
(`<conversation name>#<time in ns, 20 digits>#<random>`), one item per exchange (`question`,
`answer`, `at`) and the TTL attribute `expires_at` (epoch seconds, `ttl_days` after the write).
A history is one Query on (owner, `begins_with(sk, "<name>#")`), newest first, limited to the
window: the owner is part of the key, so another person's conversation name is a different,
empty conversation ("not found"), never its content. Items past `expires_at` are ignored
before DynamoDB's TTL sweep deletes them (which can lag by a day or two). `create_table` makes
the table with on-demand billing and turns TTL on (infrastructure code usually does this).
Credentials come from the standard AWS chain; `endpoint_url` is a VPC endpoint or, in tests,
moto's server on loopback.

Redis (`backend = "redis"`): a list per (owner, conversation) under
`<key_prefix>:<sha256 of owner and name>` (no address in a key name), RPUSH + LTRIM + EXPIRE in
one MULTI; `redis_url` defaults to `[jobs] broker_url`.

Every failure is a one-line StoreError without credentials: the caller gives no answer whose
conversation it could not read, and an exchange it could not write is reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from assistant.conversations import MAX_TEXT, Conversations, ConversationStore, owner_key
from assistant.llm.base import Turn
from core.errors import ConfigError, StoreError
from core.redact import redact_text
from core.settings import ConversationSettings

# Exchanges a conversation keeps in Redis (its list is trimmed to this; DynamoDB keeps all
# until their TTL, and reads only the window).
REDIS_KEEP = 100


def _exchanges(window: int) -> int:
    """Exchanges (a question and its answer) that hold the last `window` turns."""
    return (window + 1) // 2


def _turns(pairs: list[tuple[str, str]], window: int) -> list[Turn]:
    """Oldest first, the last `window` turns of these exchanges."""
    turns: list[Turn] = []
    for question, answer in pairs:
        turns += [Turn("user", question), Turn("assistant", answer)]
    return turns[-window:] if window > 0 else []


class DynamoConversations:
    def __init__(self, table: str, *, window: int = 6, ttl_days: float = 30.0,
                 client: Any, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.window = window
        self.ttl_seconds = ttl_days * 86400
        self._client = client
        self._clock = clock

    @classmethod
    def connect(cls, table: str, *, region: str | None, endpoint_url: str | None = None,
                ca_bundle: str | None = None, window: int = 6, ttl_days: float = 30.0,
                session: Any | None = None) -> DynamoConversations:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(retries={"mode": "standard", "max_attempts": 4},
                        connect_timeout=5, read_timeout=10, user_agent_extra="clearance")
        try:
            client = (session or boto3.session.Session()).client(
                "dynamodb", region_name=region, endpoint_url=endpoint_url,
                verify=ca_bundle or True, config=config)
        except Exception as exc:  # botocore raises several types for a bad region or endpoint
            raise ConfigError(f"[conversations] cannot set up the DynamoDB client: "
                              f"{type(exc).__name__}") from None
        return cls(table, window=window, ttl_days=ttl_days, client=client)

    def create_table(self) -> None:
        """The table this class expects, on-demand, with TTL on `expires_at`."""
        self._call("create the table", lambda: self._client.create_table(
            TableName=self.table, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "owner", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "owner", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}]))
        self._call("wait for the table", lambda: self._client.get_waiter(
            "table_exists").wait(TableName=self.table, WaiterConfig={"Delay": 1,
                                                                     "MaxAttempts": 60}))
        self._call("turn TTL on", lambda: self._client.update_time_to_live(
            TableName=self.table, TimeToLiveSpecification={"Enabled": True,
                                                           "AttributeName": "expires_at"}))

    def history(self, owner: str, conversation: str) -> list[Turn]:
        if self.window <= 0:
            return []
        response = self._call("read", lambda: self._client.query(
            TableName=self.table, ConsistentRead=True, ScanIndexForward=False,
            Limit=_exchanges(self.window),
            KeyConditionExpression="#o = :o AND begins_with(#s, :c)",
            ExpressionAttributeNames={"#o": "owner", "#s": "sk"},
            ExpressionAttributeValues={":o": {"S": owner_key(owner)},
                                       ":c": {"S": f"{conversation}#"}}))
        now = self._clock()
        pairs: list[tuple[str, str]] = []
        for item in reversed(response.get("Items") or []):
            question, answer = item.get("question", {}).get("S"), item.get("answer", {}).get("S")
            expires = item.get("expires_at", {}).get("N")
            if not isinstance(question, str) or not isinstance(answer, str) \
                    or not isinstance(expires, str):
                continue  # an item this code did not write: not context for anyone
            try:
                if float(expires) <= now:
                    continue  # expired, not yet swept by DynamoDB's TTL
            except ValueError:
                continue
            pairs.append((question, answer))
        return _turns(pairs, self.window)

    def append(self, owner: str, conversation: str, question: str, answer: str) -> None:
        now = self._clock()
        sk = f"{conversation}#{time.time_ns():020d}#{os.urandom(4).hex()}"
        self._call("write", lambda: self._client.put_item(
            TableName=self.table, ConditionExpression="attribute_not_exists(sk)",
            Item={"owner": {"S": owner_key(owner)}, "sk": {"S": sk},
                  "question": {"S": question[:MAX_TEXT]}, "answer": {"S": answer[:MAX_TEXT]},
                  "at": {"N": f"{now:.3f}"},
                  "expires_at": {"N": str(int(now + self.ttl_seconds))}}))

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            return fn()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "error"))
            hint = {"ResourceNotFoundException": "the table does not exist",
                    "AccessDeniedException": "access denied",
                    "ProvisionedThroughputExceededException": "throttled (retries exhausted)",
                    "ThrottlingException": "throttled (retries exhausted)"}.get(code, code)
            raise StoreError(f"cannot {what} conversations in DynamoDB table "
                             f"{self.table!r}: {hint}") from None
        except BotoCoreError as exc:  # no credentials, unreachable endpoint, bad TLS, a waiter
            raise StoreError(f"cannot {what} conversations in DynamoDB table {self.table!r}: "
                             f"{type(exc).__name__}") from None


class RedisConversations:
    def __init__(self, url: str, *, window: int = 6, ttl_days: float = 30.0,
                 prefix: str = "clearance:conv", client: Any | None = None) -> None:
        import redis

        self.window = window
        self.ttl_seconds = max(1, int(ttl_days * 86400))
        self.prefix = prefix
        self._url = url
        self._client = client or redis.Redis.from_url(url, socket_timeout=10,
                                                      socket_connect_timeout=5)

    def key(self, owner: str, conversation: str) -> str:
        digest = hashlib.sha256(f"{owner_key(owner)}\0{conversation}".encode()).hexdigest()
        return f"{self.prefix}:{digest}"

    def history(self, owner: str, conversation: str) -> list[Turn]:
        if self.window <= 0:
            return []
        raw = self._call("read", lambda: self._client.lrange(
            self.key(owner, conversation), -_exchanges(self.window), -1))
        pairs: list[tuple[str, str]] = []
        for entry in raw or []:
            try:
                data = json.loads(entry)
            except (ValueError, UnicodeDecodeError):
                continue  # not an exchange this code wrote
            if isinstance(data, dict) and isinstance(data.get("q"), str) \
                    and isinstance(data.get("a"), str):
                pairs.append((data["q"], data["a"]))
        return _turns(pairs, self.window)

    def append(self, owner: str, conversation: str, question: str, answer: str) -> None:
        key = self.key(owner, conversation)
        entry = json.dumps({"q": question[:MAX_TEXT], "a": answer[:MAX_TEXT],
                            "at": round(time.time(), 3)})

        def write() -> Any:
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, entry)
            pipe.ltrim(key, -REDIS_KEEP, -1)
            pipe.expire(key, self.ttl_seconds)
            return pipe.execute()

        self._call("write", write)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        import redis

        try:
            return fn()
        except redis.RedisError as exc:
            detail = redact_text(f"{type(exc).__name__}: {exc}", [self._url])
            raise StoreError(f"cannot {what} conversations in Redis "
                             f"({redact_text(self._url, [self._url])}): {detail}") from None


def from_settings(cfg: ConversationSettings, *, home: Path, window: int,
                  broker_url: str | None, base_dir: Path,
                  environ: Mapping[str, str] | None = None) -> Conversations:
    """The store `[conversations]` describes (ConfigError: what it needs is missing)."""
    if cfg.backend == "dynamodb":
        ca_bundle = None
        if cfg.ca_bundle:
            path = Path(cfg.ca_bundle).expanduser()
            ca_bundle = str(path if path.is_absolute() else base_dir / path)
            if not Path(ca_bundle).is_file():
                raise ConfigError(f"[conversations] ca_bundle {ca_bundle} is not a file")
        region = cfg.region or (environ or {}).get("AWS_REGION") \
            or (environ or {}).get("AWS_DEFAULT_REGION")
        if not region:
            raise ConfigError('[conversations] backend = "dynamodb" needs region')
        return DynamoConversations.connect(cfg.table, region=region,
                                           endpoint_url=cfg.endpoint_url, ca_bundle=ca_bundle,
                                           window=window, ttl_days=cfg.ttl_days)
    if cfg.backend == "redis":
        url = cfg.redis_url or broker_url
        if not url:
            raise ConfigError('[conversations] backend = "redis" needs redis_url (or [jobs] '
                              "broker_url)")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("[conversations] redis_url must be a redis://, rediss:// or "
                              "unix:// URL")
        return RedisConversations(url, window=window, ttl_days=cfg.ttl_days,
                                  prefix=cfg.key_prefix)
    return ConversationStore(home / "conversations.sqlite3", window=window)
