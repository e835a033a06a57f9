"""The shard join's conditional writes (dqad.shard_join), on moto's DynamoDB, checked strictly.

moto accepts more than DynamoDB does, so besides the outcomes the tests pin the expressions
themselves: every attribute through a placeholder (DynamoDB refuses reserved words such as
``count``), the claim's condition exactly as docs/architecture.md §12 states it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from dqad.contract import Shard
from dqad.shard_join import CLAIM_LEASE_S, ShardJoin, item_id

TABLE = "t-shards"
JOIN = "0123456789abcdef"


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def shard(i: int, n: int = 3) -> Shard:
    return Shard(index=i, count=n, join=JOIN)


def test_a_redelivered_shard_counts_once(ddb) -> None:
    join = ShardJoin(ddb, TABLE)
    assert join.record("r1", "labeler", shard(0)) == 1
    assert join.record("r1", "labeler", shard(0)) == 1
    assert join.record("r1", "labeler", shard(2)) == 2
    item = ddb.get_item(TableName=TABLE, Key={"id": {"S": item_id("r1", "labeler", JOIN)}})["Item"]
    assert sorted(item["done"]["NS"]) == ["0", "2"] and item["shard_count"] == {"N": "3"}


def test_two_last_shards_completing_together_claim_the_join_once(ddb) -> None:
    """The interleaving that matters: both see the set full, both try to claim; one wins."""
    a, b = ShardJoin(ddb, TABLE), ShardJoin(ddb, TABLE)
    a.record("r1", "scorer", shard(0))
    assert a.record("r1", "scorer", shard(1)) == 2
    assert b.record("r1", "scorer", shard(2)) == 3
    assert a.record("r1", "scorer", shard(1)) == 3  # a's retry also sees it full
    assert [a.claim("r1", "scorer", shard(1)), b.claim("r1", "scorer", shard(2))] == [True, False]


def test_racing_threads_claim_once(ddb) -> None:
    for run in range(20):
        run_id = f"race{run}"
        ShardJoin(ddb, TABLE).record(run_id, "scorer", shard(0))
        barrier = threading.Barrier(2)
        won: list[bool] = []

        def finish(i: int, run_id: str = run_id, barrier: threading.Barrier = barrier, won: list[bool] = won) -> None:
            join = ShardJoin(ddb, TABLE)
            barrier.wait()
            if join.record(run_id, "scorer", shard(i)) == 3:
                won.append(join.claim(run_id, "scorer", shard(i)))

        threads = [threading.Thread(target=finish, args=(i,)) for i in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert won.count(True) == 1, (run, won)


def test_an_unfinished_join_cannot_be_claimed_and_an_emitted_one_never_again(ddb) -> None:
    clock = Clock()
    join = ShardJoin(ddb, TABLE, clock)
    assert not join.claim("r2", "labeler", shard(0))  # no item yet: attribute_exists(done) fails
    for i in range(3):
        join.record("r2", "labeler", shard(i))
    assert join.claim("r2", "labeler", shard(0))
    assert not join.claim("r2", "labeler", shard(1))  # the claim is live
    join.emitted("r2", "labeler", shard(0))
    clock.now += 10 * CLAIM_LEASE_S
    assert not join.claim("r2", "labeler", shard(1))  # emitted: never again, however late


def test_a_claim_whose_holder_died_lapses_after_the_lease(ddb) -> None:
    clock = Clock()
    join = ShardJoin(ddb, TABLE, clock)
    for i in range(3):
        join.record("r3", "scorer", shard(i))
    assert join.claim("r3", "scorer", shard(2))  # ... and the holder dies before publishing
    clock.now += CLAIM_LEASE_S - 1
    assert not join.claim("r3", "scorer", shard(2))
    clock.now += 2
    assert join.claim("r3", "scorer", shard(2))  # its redelivered message publishes


def test_each_fan_out_joins_apart(ddb) -> None:
    """A retrained model is a new fan-out of the same run: its own join, claimable again."""
    join = ShardJoin(ddb, TABLE)
    other = Shard(index=0, count=1, join="fedcba9876543210")
    for i in range(3):
        join.record("r4", "scorer", shard(i))
    assert join.claim("r4", "scorer", shard(0))
    join.emitted("r4", "scorer", shard(0))
    assert join.record("r4", "scorer", other) == 1 and join.claim("r4", "scorer", other)


def test_the_expressions_name_every_attribute_through_a_placeholder(ddb, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict] = []
    original = ddb.update_item

    def update_item(**kw):  # type: ignore[no-untyped-def]
        sent.append(kw)
        return original(**kw)

    monkeypatch.setattr(ddb, "update_item", update_item)
    join = ShardJoin(ddb, TABLE)
    join.record("r5", "labeler", shard(0, 1))
    join.claim("r5", "labeler", shard(0, 1))
    join.emitted("r5", "labeler", shard(0, 1))
    keywords = {"ADD", "SET", "REMOVE", "DELETE", "AND", "OR", "NOT", "attribute_exists", "attribute_not_exists"}
    for kw in sent:
        for expression in (kw["UpdateExpression"], kw.get("ConditionExpression", "")):
            bare = {w for w in re.findall(r"(?<![#:\w])[A-Za-z_]\w*", expression)} - keywords
            assert not bare, f"attribute names outside placeholders in {expression!r}: {bare}"
            for ref in re.findall(r"#\w+", expression):
                assert ref in kw["ExpressionAttributeNames"]
            for ref in re.findall(r":\w+", expression):
                assert ref in kw["ExpressionAttributeValues"]
    claim = sent[1]["ConditionExpression"]
    assert claim == (
        "attribute_exists(#done) AND attribute_not_exists(#emitted) "
        "AND (attribute_not_exists(#claimed) OR #claimed < :now)"
    )
    assert sent[0]["UpdateExpression"].startswith("ADD #done :index") and "ConditionExpression" not in sent[0]
