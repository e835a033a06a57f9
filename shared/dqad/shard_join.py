"""The join of a sharded stage: the next event goes out once, when the last shard completes.

One DynamoDB item per (run, stage, fan-out) in the shards table (docs/architecture.md §12):

* each shard, once its outputs are written, adds its index to the item's number set ``done``
  (``ADD`` is atomic and idempotent: a redelivered shard adds nothing, two shards finishing at once
  both count);
* whoever sees the set full then *claims* the join with a conditional write: only if nobody has
  emitted it and no claim is live (``attribute_not_exists(emitted_at) AND (attribute_not_exists(
  claimed_until) OR claimed_until < :now)``). Exactly one of two racing last shards wins; the
  loser returns without publishing;
* the winner assembles and publishes the joined event, then marks it emitted. A winner that dies in
  between leaves a claim that lapses after :data:`CLAIM_LEASE_S` (the queue's visibility timeout),
  when its redelivered message claims it again: the joined event is published at least once and,
  short of that crash, exactly once (and every consumer is idempotent on the run id).

Each shard's result (its outputs' pointers, counts) is a small JSON object in the run's prefix,
written before the shard counts itself, so the winner reads every shard's result from S3.

``dqad replay --shard`` takes a shard out of ``done`` (and clears the emitted mark) before re-sending
it, so its completion joins again; a failed shard never entered ``done``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from dqad.contract import EventDetail, Shard
from dqad.stage import StageRuntime
from dqad.topology import VISIBILITY_TIMEOUT_S

CLAIM_LEASE_S = VISIBILITY_TIMEOUT_S
ITEM_TTL_S = 30 * 24 * 3600


def item_id(run_id: str, stage: str, join: str) -> str:
    return f"{run_id}#{stage}#{join}"


class ShardJoin:
    """The shards table: record a shard's completion, claim and mark the joined event."""

    def __init__(self, dynamodb: Any, table: str, clock: Callable[[], float] = time.time) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.clock = clock

    def record(self, run_id: str, stage: str, shard: Shard) -> int:
        """Count ``shard`` as done; return how many distinct shards of its fan-out are done now."""
        response = self.dynamodb.update_item(
            TableName=self.table,
            Key={"id": {"S": item_id(run_id, stage, shard.join)}},
            UpdateExpression="ADD #done :index SET #count = :count, #expires = :expires",
            ExpressionAttributeNames={"#done": "done", "#count": "shard_count", "#expires": "expires_at"},
            ExpressionAttributeValues={
                ":index": {"NS": [str(shard.index)]},
                ":count": {"N": str(shard.count)},
                ":expires": {"N": str(int(self.clock()) + ITEM_TTL_S)},
            },
            ReturnValues="ALL_NEW",
        )
        return len(response["Attributes"].get("done", {}).get("NS", []))

    def claim(self, run_id: str, stage: str, shard: Shard) -> bool:
        """Claim the right to emit the joined event: True for exactly one caller while the claim lives."""
        now = self.clock()
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={"id": {"S": item_id(run_id, stage, shard.join)}},
                UpdateExpression="SET #claimed = :until",
                ConditionExpression=(
                    "attribute_exists(#done) AND attribute_not_exists(#emitted) "
                    "AND (attribute_not_exists(#claimed) OR #claimed < :now)"
                ),
                ExpressionAttributeNames={"#done": "done", "#emitted": "emitted_at", "#claimed": "claimed_until"},
                ExpressionAttributeValues={":until": {"N": str(now + CLAIM_LEASE_S)}, ":now": {"N": str(now)}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def emitted(self, run_id: str, stage: str, shard: Shard) -> None:
        """The joined event is out: no later completion of this fan-out publishes it again."""
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"id": {"S": item_id(run_id, stage, shard.join)}},
            UpdateExpression="SET #emitted = :now REMOVE #claimed",
            ExpressionAttributeNames={"#emitted": "emitted_at", "#claimed": "claimed_until"},
            ExpressionAttributeValues={":now": {"N": str(self.clock())}},
        )


def result_uri(rt: StageRuntime, detail: EventDetail, shard: Shard) -> str:
    return f"{rt.run_prefix(detail.dataset, detail.run_id)}/shards/{rt.stage}-{shard.join}/{shard.index:04d}.json"


def complete(
    rt: StageRuntime, detail: EventDetail, shard: Shard, result: dict, assemble: Callable[[list[dict]], object]
) -> bool:
    """Store this shard's ``result``, count it, and if it completes the fan-out, ``assemble`` the join.

    ``assemble`` gets every shard's result in shard order and publishes the joined event. Returns
    whether this call published it.
    """
    rt.settings.require("shards_table")
    rt.storage.put_json(result_uri(rt, detail, shard), result)
    join = ShardJoin(rt.clients("dynamodb"), rt.settings.shards_table)
    if join.record(detail.run_id, rt.stage, shard) < shard.count:
        return False
    if not join.claim(detail.run_id, rt.stage, shard):
        return False
    results = [
        rt.storage.get_json(result_uri(rt, detail, shard.model_copy(update={"index": i}))) for i in range(shard.count)
    ]
    assemble(results)
    join.emitted(detail.run_id, rt.stage, shard)
    return True
