"""Publishing events: EventBridge ``put_events`` that never drops silently, plus the S3 event log.

``put_events`` answers HTTP 200 even when it rejected an entry; the only sign is
``FailedEntryCount``. A stage that ignores it loses the run without a trace, so here a rejected
entry is an exception (the SQS record is then retried, and the stage is idempotent).

Every event is also written to ``events/<run_id>/<DetailType>.json`` *before* it is put on the bus:
that copy is what ``dqad replay`` re-sends and what a StageFailed points to.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from dqad.contract import EventDetail, parse_event
from dqad.storage import Storage
from dqad.topology import STAGE_FAILED, source_of


class PublishError(RuntimeError):
    """EventBridge rejected an entry (FailedEntryCount > 0)."""


def event_key(run_id: str, detail_type: str, stage: str | None = None, shard: int | None = None) -> str:
    """Where an event is archived: ``events/<run_id>/<DetailType>[-<stage>][-shard<NNNN>].json``.

    Each message of a sharded run has its own copy (``-shard0003``), which is what ``dqad replay
    --shard`` re-sends and what the StageFailed of a failed shard points to.
    """
    suffix = f"-{stage}" if detail_type == STAGE_FAILED and stage else ""
    if shard is not None:
        suffix += f"-shard{shard:04d}"
    return f"events/{run_id}/{detail_type}{suffix}.json"


def shard_of(detail: EventDetail) -> int | None:
    """The shard index a message carries (a StageFailed: the shard that failed), None when unsharded."""
    shard = getattr(detail, "shard", None)
    return shard if isinstance(shard, int) or shard is None else shard.index


def envelope(detail: EventDetail, source: str, region: str = "us-east-1", account: str = "000000000000") -> dict:
    """The event as EventBridge delivers it to a target: what a consumer and a replay both see."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail.detail_type,
        "source": source,
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": json.loads(detail.model_dump_json()),
    }


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str, storage: Storage, stage: str) -> None:
        self.events = events_client
        self.bus_name = bus_name
        self.storage = storage
        self.stage = stage

    def archive_uri(self, detail: EventDetail) -> str:
        stage = getattr(detail, "stage", None)
        return self.storage.uri(event_key(detail.run_id, detail.detail_type, stage, shard_of(detail)))

    def publish(self, detail: EventDetail) -> str:
        """Store the event under events/<run_id>/ then put it on the bus. Returns the stored URI."""
        source = source_of(self.stage)
        event = envelope(detail, source)
        uri = self.archive_uri(detail)
        self.storage.put_json(uri, event)
        response = self.events.put_events(
            Entries=[
                {
                    "EventBusName": self.bus_name,
                    "Source": source,
                    "DetailType": detail.detail_type,
                    "Detail": json.dumps(event["detail"]),
                    "Resources": [],
                }
            ]
        )
        if response.get("FailedEntryCount", 0):
            failed = [e for e in response.get("Entries", []) if e.get("ErrorCode")]
            codes = ", ".join(f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}" for e in failed) or "unknown"
            raise PublishError(f"EventBridge rejected {detail.detail_type} for run {detail.run_id}: {codes}")
        return uri


def load_stored_event(storage: Storage, uri: str) -> tuple[dict, EventDetail]:
    """Read an archived event and check it still parses under the current contract."""
    event = storage.get_json(uri)
    return event, parse_event(event)
