"""Conversations in production stores: DynamoDB through real boto3 against moto's server mode on
loopback (ThreadedMotoServer), and Redis on a real redis-server. The same contract for both:
a conversation is only its starter's (another person's id reads as empty, "not found", never
its content; a look-alike address is another person), the window is bounded, names that
prefix each other never mix, concurrent appends lose nothing, broken items are ignored and an
unusable store is one StoreError line; DynamoDB items carry the TTL attribute, and expired
ones are not context even before the sweep."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
import redis

from assistant.conversations import Conversations
from assistant.conversations_remote import DynamoConversations, RedisConversations, from_settings
from assistant.llm.base import Turn
from core.errors import ConfigError, StoreError
from core.settings import ConversationSettings
from indexer.jobs.testing import RedisServer

pytestmark = pytest.mark.integration
ADA, BOB = "ada@example.org", "bob@example.org"
TABLE = "clearance-conversations"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def session() -> Any:
    return boto3.session.Session(aws_access_key_id="AKIDEXAMPLE",
                                 aws_secret_access_key="not-a-secret", region_name="eu-west-1")


_tables = iter(range(10_000))


def dynamo(moto_url: str, clock: Callable[[], float] | None = None, window: int = 6,
           table: str | None = None, create: bool = True) -> DynamoConversations:
    name = table or f"{TABLE}-{next(_tables)}"
    store = DynamoConversations.connect(name, region="eu-west-1", endpoint_url=moto_url,
                                        window=window, ttl_days=2, session=session())
    if clock is not None:
        store._clock = clock
    if create:
        store.create_table()
    return store


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as s:
        yield s


_prefixes = iter(range(10_000))


@pytest.fixture(params=["dynamodb", "redis"])
def make(request: pytest.FixtureRequest) -> Callable[[int], Conversations]:
    if request.param == "dynamodb":
        url = request.getfixturevalue("moto_url")
        return lambda window: dynamo(url, window=window)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda window: RedisConversations(server.url, window=window,
                                             prefix=f"t{next(_prefixes)}:conv")


def test_a_conversation_is_only_its_starters(make: Callable[[int], Conversations]) -> None:
    store = make(6)
    store.append(ADA, "c1", "Which company do we acquire?", "Lumen Robotics [1].")
    # Bob holding Ada's conversation id: not found, never its content.
    assert store.history(BOB, "c1") == []
    store.append(BOB, "c1", "And for how much?", "I could not find this.")
    assert store.history(ADA, "c1") == [Turn("user", "Which company do we acquire?"),
                                        Turn("assistant", "Lumen Robotics [1].")]
    assert store.history(BOB, "c1") == [Turn("user", "And for how much?"),
                                        Turn("assistant", "I could not find this.")]
    # ASCII case folds; a look-alike (U+212A KELVIN SIGN for K) is another person.
    store.append("kim@example.org", "k", "q", "a")
    assert store.history("KIM@example.org", "k") == [Turn("user", "q"), Turn("assistant", "a")]
    assert store.history("\u212aim@example.org", "k") == []


def test_the_window_is_bounded_and_names_never_mix(make: Callable[[int], Conversations]
                                                  ) -> None:
    store = make(3)
    for i in range(5):
        store.append(ADA, "c1", f"q{i}", f"a{i}")
    store.append(ADA, "c10", "other", "x")
    store.append(ADA, "c", "shorter", "y")
    assert store.history(ADA, "c1") == [Turn("assistant", "a3"), Turn("user", "q4"),
                                        Turn("assistant", "a4")]
    assert store.history(ADA, "c10") == [Turn("user", "other"), Turn("assistant", "x")]
    assert store.history(ADA, "c") == [Turn("user", "shorter"), Turn("assistant", "y")]
    assert make(0).history(ADA, "c1") == []


def test_concurrent_appends_lose_nothing(make: Callable[[int], Conversations]) -> None:
    store = make(100)

    def ask(who: int) -> None:
        for i in range(8):
            store.append(ADA, "busy", f"q{who}-{i}", f"a{who}-{i}")

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    questions = [t.text for t in store.history(ADA, "busy") if t.role == "user"]
    assert sorted(questions) == sorted(f"q{w}-{i}" for w in range(3) for i in range(8))
    for w in range(3):  # each asker's own turns stay in order
        mine = [q for q in questions if q.startswith(f"q{w}-")]
        assert mine == [f"q{w}-{i}" for i in range(8)]


def test_long_turns_are_cut_to_what_a_store_item_holds(make: Callable[[int], Conversations]
                                                       ) -> None:
    store = make(2)
    store.append(ADA, "long", "q" * 50_000, "a" * 500_000)  # DynamoDB refuses items > 400 KB
    [question, answer] = store.history(ADA, "long")
    assert len(question.text) == len(answer.text) == 16_000


def test_dynamodb_items_carry_the_ttl_and_expired_ones_are_not_context(moto_url: str) -> None:
    now = [1_900_000_000.0]
    store = dynamo(moto_url, clock=lambda: now[0])
    store.append(ADA, "c1", "old question", "old answer")
    raw = boto3_client(moto_url)
    ttl = raw.describe_time_to_live(TableName=store.table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    [item] = raw.scan(TableName=store.table)["Items"]
    assert item["expires_at"] == {"N": str(int(now[0] + 2 * 86400))}
    assert item["owner"] == {"S": ADA} and item["sk"]["S"].startswith("c1#")
    now[0] += 2 * 86400 + 1  # past its TTL; DynamoDB's sweep has not run yet
    store.append(ADA, "c1", "new question", "new answer")
    assert store.history(ADA, "c1") == [Turn("user", "new question"),
                                        Turn("assistant", "new answer")]


def boto3_client(url: str) -> Any:
    return session().client("dynamodb", endpoint_url=url)


def test_dynamodb_items_this_code_did_not_write_are_ignored(moto_url: str) -> None:
    store = dynamo(moto_url)
    store.append(ADA, "c1", "q1", "a1")
    raw = boto3_client(moto_url)
    for item in ({"sk": {"S": "c1#0"}}, {"sk": {"S": "c1#1"}, "question": {"N": "7"},
                                         "answer": {"S": "x"}},
                 {"sk": {"S": "c1#2"}, "question": {"S": "q"}, "answer": {"S": "a"},
                  "expires_at": {"S": "never"}}):
        raw.put_item(TableName=store.table, Item={"owner": {"S": ADA}, **item})
    assert store.history(ADA, "c1") == [Turn("user", "q1"), Turn("assistant", "a1")]


def test_redis_entries_this_code_did_not_write_are_ignored(redis_server: RedisServer) -> None:
    store = RedisConversations(redis_server.url, prefix="junk:conv", window=20)
    client = redis.Redis.from_url(redis_server.url)
    key = store.key(ADA, "c1")
    client.rpush(key, b"\xff\xfe", b"[1]", b'{"q": 1, "a": "x"}', b"{not json")
    store.append(ADA, "c1", "q1", "a1")
    assert re.fullmatch(r"junk:conv:[0-9a-f]{64}", key)  # no address in a key name
    assert client.ttl(key) > 0
    client.close()
    assert store.history(ADA, "c1") == [Turn("user", "q1"), Turn("assistant", "a1")]


def test_a_missing_table_or_an_unreachable_store_is_one_store_error(moto_url: str) -> None:
    missing = dynamo(moto_url, table="no-such-table", create=False)
    with pytest.raises(StoreError, match="'no-such-table': the table does not exist") as err:
        missing.history(ADA, "c1")
    assert "\n" not in str(err.value)
    with pytest.raises(StoreError, match="the table does not exist"):
        missing.append(ADA, "c1", "q", "a")
    gone = DynamoConversations.connect(TABLE, region="eu-west-1",
                                       endpoint_url="http://127.0.0.1:9", session=session())
    with pytest.raises(StoreError, match="EndpointConnectionError"):
        gone.history(ADA, "c1")
    secret = "hunter2hunter2"
    unreachable = RedisConversations(f"redis://:{secret}@127.0.0.1:9/0")
    with pytest.raises(StoreError, match="cannot read conversations in Redis") as err:
        unreachable.history(ADA, "c1")
    assert secret not in str(err.value) and "\n" not in str(err.value)


def test_the_backend_is_chosen_by_config(tmp_path: Path, moto_url: str) -> None:
    def build(**cfg: Any) -> Conversations:
        return from_settings(ConversationSettings.model_validate(cfg), home=tmp_path, window=4,
                             broker_url=None, base_dir=tmp_path, environ={})

    assert type(build()).__name__ == "ConversationStore"
    made = build(backend="dynamodb", region="eu-west-1", endpoint_url=moto_url)
    assert isinstance(made, DynamoConversations) and made.window == 4
    with pytest.raises(ConfigError, match="needs region"):
        build(backend="dynamodb")
    with pytest.raises(ConfigError, match="ca_bundle"):
        build(backend="dynamodb", region="eu-west-1", ca_bundle="nope.pem")
    with pytest.raises(ConfigError, match="needs redis_url"):
        build(backend="redis")
    with pytest.raises(ConfigError, match="redis://"):
        build(backend="redis", redis_url="http://127.0.0.1:6379")
    assert isinstance(build(backend="redis", redis_url="redis://127.0.0.1:9/0"),
                      RedisConversations)
