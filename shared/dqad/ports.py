"""The ports a stage's domain code talks through: storage, event publishing, dead letters, job running.

Each is the smallest surface the domain uses, as a :class:`typing.Protocol`, so domain code can be
unit-tested on an in-memory fake (``tests/fakes.py``) instead of AWS, and the fakes cannot drift from
the adapters: ``tests/unit/core/test_ports_contract.py`` runs one set of assertions against each fake
and against its adapter on moto (docs/architecture.md §8, habits 1 and 12).

The adapters: :class:`dqad.storage.Storage` (S3 or local files), :class:`dqad.bus.EventPublisher`
(EventBridge + the S3 event log), :class:`SqsDeadLetters` (a source queue's DLQ, found from its redrive
policy) and, in the trainer, ``SageMakerRunner`` / ``LocalRunner``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dqad.contract import DataRef, EventDetail


class ObjectStore(Protocol):
    """Objects by URI: bytes and JSON, with sha256 checked on read (Parquet builds on these)."""

    def uri(self, key: str) -> str: ...

    def put_bytes(self, uri: str, data: bytes, content_type: str = ...) -> str: ...

    def get_bytes(self, uri: str, sha256: str | None = None) -> bytes: ...

    def exists(self, uri: str) -> bool: ...

    def list_uris(self, prefix_uri: str) -> Iterator[str]: ...

    def put_json(self, uri: str, obj: Any) -> str: ...  # any JSON-serialisable value

    def get_json(self, uri: str) -> Any: ...  # whatever JSON was stored

    def write_parquet(self, uri: str, frame: Any) -> DataRef: ...  # a pandas DataFrame or pyarrow Table


class EventPublishing(Protocol):
    """Put one contract event on the bus, archived first; returns the archive's URI."""

    def publish(self, detail: EventDetail) -> str: ...


@dataclass(frozen=True)
class DeadLetter:
    """A record parked in a DLQ, with why (what an operator reads before fixing and redriving)."""

    body: str
    error_type: str
    reason: str
    stage: str
    source_message_id: str


class DeadLetters(Protocol):
    """Park a record that cannot be processed in the DLQ of the queue it came from."""

    def park(self, source_arn: str, letter: DeadLetter) -> None: ...


class JobSpecification(Protocol):
    """What a training job needs: a name carrying the run id, input URIs, an output prefix, environment."""

    @property
    def name(self) -> str: ...

    @property
    def inputs(self) -> Mapping[str, str]: ...

    @property
    def output_uri(self) -> str: ...

    @property
    def environment(self) -> Mapping[str, str]: ...


class JobRunner(Protocol):
    """Start a training job; its end arrives later as a job-state event, never as a return value."""

    def start(self, spec: JobSpecification) -> None: ...


#: How far a long loop is: called with ``done`` steps of ``total`` (None when not known ahead, e.g. the
#: rows of a query) after each step; a count below the previous one starts the loop over. Runtime code
#: takes one as an optional argument (None: tell nothing) and never draws anything itself: the CLI
#: draws a terminal bar from it (``dqad_dev.progress``), a Lambda passes none.
ProgressCallback = Callable[[int, int | None], None]


class NoDeadLetterQueue(RuntimeError):
    """The source queue has no redrive policy: refusing to drop the record."""


class SqsDeadLetters:
    """:class:`DeadLetters` on SQS: the DLQ is read from the source queue's redrive policy."""

    def __init__(self, sqs_client: Any) -> None:
        self.sqs = sqs_client

    def dlq_url(self, source_arn: str) -> str:
        url = _dlq_url(self.sqs, source_arn)
        if url is None:
            raise NoDeadLetterQueue(f"queue {source_arn} has no DLQ configured; refusing to drop a record")
        return url

    def park(self, source_arn: str, letter: DeadLetter) -> None:
        self.sqs.send_message(
            QueueUrl=self.dlq_url(source_arn),
            MessageBody=letter.body,
            MessageAttributes={
                "error_type": {"DataType": "String", "StringValue": letter.error_type[:256]},
                "error": {"DataType": "String", "StringValue": letter.reason[:4096] or letter.error_type},
                "stage": {"DataType": "String", "StringValue": letter.stage},
                "source_message_id": {"DataType": "String", "StringValue": letter.source_message_id},
            },
        )


@functools.lru_cache(maxsize=32)
def _dlq_url(sqs: Any, source_arn: str) -> str | None:
    """The DLQ of a source queue, read from its redrive policy: no naming convention assumed."""
    name = source_arn.rsplit(":", 1)[-1]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    policy = attrs.get("RedrivePolicy")
    if not policy:
        return None
    dlq_name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
    return str(sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"])
