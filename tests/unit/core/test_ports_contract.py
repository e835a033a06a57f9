"""One contract for each port, run on its in-memory fake and on its adapter over moto.

Why: unit tests of domain logic run on the fakes (``tests/fakes.py``); they are worth something only
while a fake behaves as AWS does. Each test here is parametrised over both implementations and makes
the same assertions, reading what happened through a small observer per implementation (the fake's
memory, or the queue / job list moto holds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from dqad.bus import EventPublisher
from dqad.contract import LoadCompleted
from dqad.ports import DeadLetter, DeadLetters, EventPublishing, JobRunner, NoDeadLetterQueue
from dqad.storage import IntegrityError, Storage
from dqad_dev.local import LocalCloud
from dqad_trainer.runners import JobSpec, SageMakerRunner
from tests.fakes import MemoryDeadLetters, MemoryJobRunner, MemoryPublisher, MemoryStorage

IMPLEMENTATIONS = ["fake", "moto"]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def moto_cloud(impl: str, aws_env: None) -> Iterator[LocalCloud | None]:
    if impl == "fake":
        yield None
        return
    with LocalCloud("dqad-contract") as cloud:
        yield cloud


@pytest.fixture
def store(moto_cloud: LocalCloud | None) -> Storage:
    if moto_cloud is None:
        return MemoryStorage()
    return Storage(moto_cloud.client("s3"), moto_cloud.dep.bucket)


# -- storage -----------------------------------------------------------------------------------------
def test_storage_bytes_json_and_listing(store: Storage) -> None:
    uri = store.uri("runs/ds/r1/blob.bin")
    sha = store.put_bytes(uri, b"payload")
    assert store.get_bytes(uri, sha256=sha) == b"payload"
    with pytest.raises(IntegrityError, match="does not match"):
        store.get_bytes(uri, sha256="0" * 64)
    assert store.exists(uri) and not store.exists(store.uri("runs/ds/r1/none.bin"))
    store.put_json(store.uri("runs/ds/r1/a.json"), {"n": 1, "at": datetime(2026, 11, 2, tzinfo=UTC)})
    assert store.get_json(store.uri("runs/ds/r1/a.json")) == {"n": 1, "at": "2026-11-02 00:00:00+00:00"}
    assert list(store.list_uris(store.uri("runs/ds/r1/"))) == [
        store.uri("runs/ds/r1/a.json"),
        store.uri("runs/ds/r1/blob.bin"),
    ]
    assert list(store.list_uris(store.uri("runs/other/"))) == []
    assert "runs/ds/r1/blob.bin" in store.presign(uri, 60)


def test_storage_parquet_pointer_is_checked(store: Storage) -> None:
    table = pa.table({"series": ["a", "b"], "value": [1.0, 2.0]})
    ref = store.write_parquet(store.uri("runs/ds/r1/new.parquet"), table)
    assert ref.rows == 2 and store.read_table(ref).equals(table)
    store.put_bytes(ref.uri, b"overwritten behind the run's back")
    with pytest.raises(IntegrityError):
        store.read_table(ref)


# -- event publishing ----------------------------------------------------------------------------------
@dataclass
class Bus:
    publisher: EventPublishing
    delivered: Callable[[], list[dict]]  # detail of each event delivered to the consuming stage


@pytest.fixture
def bus(moto_cloud: LocalCloud | None, store: Storage) -> Bus:
    if moto_cloud is None:
        fake = MemoryPublisher(store, "fetcher")
        return Bus(fake, lambda: [json.loads(e.model_dump_json()) for e in fake.events])
    cloud = moto_cloud
    real = EventPublisher(cloud.client("events"), cloud.dep.names.bus, store, "fetcher")

    def delivered() -> list[dict]:
        sqs = cloud.client("sqs")
        msgs = sqs.receive_message(QueueUrl=cloud.dep.queue_urls["fetcher"], MaxNumberOfMessages=10)
        return [json.loads(m["Body"])["detail"] for m in msgs.get("Messages", [])]

    return Bus(real, delivered)


def test_publish_archives_then_delivers(bus: Bus, store: Storage) -> None:
    event = LoadCompleted(
        run_id="20261102T0600-aaaaaaaaaaaa",
        dataset="shop_dq",
        log_id="981234",
        job_name="tln_load_orders",
        table_name="sales.orders",
        loaded_at=datetime(2026, 11, 2, 6, tzinfo=UTC),
        status="SUCCESS",
    )
    uri = bus.publisher.publish(event)
    assert uri == store.uri("events/20261102T0600-aaaaaaaaaaaa/LoadCompleted.json")
    archived = store.get_json(uri)
    assert archived["detail-type"] == "LoadCompleted" and archived["source"] == "dqad.fetcher"
    (detail,) = bus.delivered()
    assert detail == archived["detail"] and detail["log_id"] == "981234"


# -- dead letters ------------------------------------------------------------------------------------
@dataclass
class Queues:
    dead_letters: DeadLetters
    with_dlq: str  # source queue ARN that has a DLQ
    without_dlq: str  # one that has none
    parked: Callable[[], list[DeadLetter]]


@pytest.fixture
def queues(moto_cloud: LocalCloud | None) -> Queues:
    with_dlq, without = "arn:aws:sqs:us-east-1:123456789012:src", "arn:aws:sqs:us-east-1:123456789012:bare"
    if moto_cloud is None:
        fake = MemoryDeadLetters(with_dlq={with_dlq})
        return Queues(fake, with_dlq, without, lambda: fake.parked.get(with_dlq, []))
    from dqad.ports import SqsDeadLetters

    sqs = moto_cloud.client("sqs")
    dlq = sqs.create_queue(QueueName="src-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    src = sqs.create_queue(QueueName="src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    bare = sqs.create_queue(QueueName="bare")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bare_arn = sqs.get_queue_attributes(QueueUrl=bare, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def parked() -> list[DeadLetter]:
        msgs = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        out = []
        for m in msgs.get("Messages", []):
            a = {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
            out.append(DeadLetter(m["Body"], a["error_type"], a["error"], a["stage"], a["source_message_id"]))
        return out

    return Queues(SqsDeadLetters(sqs), arn, bare_arn, parked)


def test_dead_letter_keeps_body_and_reason_and_refuses_a_queue_without_dlq(queues: Queues) -> None:
    letter = DeadLetter('{"bad": true}', "ContractError", "detail.run_id: field required", "labeler", "m-1")
    queues.dead_letters.park(queues.with_dlq, letter)
    assert queues.parked() == [letter]
    with pytest.raises(NoDeadLetterQueue, match="no DLQ configured"):
        queues.dead_letters.park(queues.without_dlq, letter)


# -- job running -------------------------------------------------------------------------------------
@dataclass
class Jobs:
    runner: JobRunner
    started: Callable[[], list[str]]  # names of the jobs started


@pytest.fixture
def jobs(moto_cloud: LocalCloud | None) -> Jobs:
    if moto_cloud is None:
        fake = MemoryJobRunner()
        return Jobs(fake, lambda: [s.name for s in fake.started])
    sm = moto_cloud.client("sagemaker")
    real = SageMakerRunner(sm, "123456789012.dkr.ecr.us-east-1.amazonaws.com/dqad-train:1", _ROLE, "ml.m5.xlarge")
    return Jobs(real, lambda: [j["ProcessingJobName"] for j in sm.list_processing_jobs()["ProcessingJobSummaries"]])


_ROLE = "arn:aws:iam::123456789012:role/dqad-train"


def test_job_runner_starts_the_named_job(jobs: Jobs) -> None:
    spec = JobSpec(
        name="dqad-train-20261102T0600-aaaaaaaaaaaa",
        inputs={"data": "s3://b/runs/ds/r1/labeled.parquet"},
        output_uri="s3://b/models/ds/v1/",
        environment={"DQAD_DATASET": "ds"},
    )
    jobs.runner.start(spec)
    assert jobs.started() == [spec.name]
