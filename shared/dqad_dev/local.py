"""The embedded runtime: the whole deployment on moto, in this process, from ``dqad.topology``.

It provisions what Terraform provisions (bus + archive, one rule → queue + DLQ per consuming stage,
SageMaker job-state rule on the default bus, topics, bucket, idempotency table), then *pumps*: it
receives each stage queue's messages and calls the stage's real handler with a Lambda-shaped SQS
event, deleting what succeeded and leaving failures for SQS to redeliver (and eventually redrive to
the DLQ), until every queue is quiet. Events travel through moto's EventBridge → SQS delivery, so
rule patterns are exercised exactly as deployed.

Handlers are found by the ``module:function`` names in the topology (imported on first use), which
is how ``shared/`` runs services without importing them.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from dqad.settings import Settings
from dqad.topology import MAX_RECEIVE_COUNT, STAGES, Names, Stage

REGION = "us-east-1"
ACCOUNT = "123456789012"
LOCAL_VISIBILITY_S = 1  # failed records come back after a second, not the 15 minutes used on AWS


def load_entry_point(spec: str) -> Callable[..., Any]:
    module, _, func = spec.partition(":")
    return getattr(importlib.import_module(module), func)


@dataclass
class Deployment:
    """What was provisioned: names, URLs and ARNs."""

    names: Names
    bucket: str
    queue_urls: dict[str, str] = field(default_factory=dict)
    dlq_urls: dict[str, str] = field(default_factory=dict)
    alerts_topic_arn: str = ""
    operator_topic_arn: str = ""
    inbox_url: str = ""  # an SQS subscription on both topics: "the SNS message as delivered"

    def settings(self) -> Settings:
        return Settings(
            bus_name=self.names.bus,
            bucket=self.bucket,
            datasets_uri=f"s3://{self.bucket}/config/datasets.toml",
            alerts_topic_arn=self.alerts_topic_arn,
            operator_topic_arn=self.operator_topic_arn,
            idempotency_table=self.names.idempotency_table,
            job_runner="local",
        )


def provision(session: boto3.session.Session, prefix: str = "dqad-local") -> Deployment:
    names = Names(prefix)
    s3, sqs, events = session.client("s3"), session.client("sqs"), session.client("events")
    sns, ddb = session.client("sns"), session.client("dynamodb")
    dep = Deployment(names=names, bucket=f"{prefix}-bucket".lower())
    s3.create_bucket(Bucket=dep.bucket)
    bus_arn = events.create_event_bus(Name=names.bus)["EventBusArn"]
    events.create_archive(ArchiveName=names.archive, EventSourceArn=bus_arn, RetentionDays=30)
    for st in STAGES:
        dlq_url = sqs.create_queue(QueueName=names.dlq(st.name))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName=names.queue(st.name),
            Attributes={
                "VisibilityTimeout": str(LOCAL_VISIBILITY_S),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}),
            },
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        dep.queue_urls[st.name], dep.dlq_urls[st.name] = url, dlq_url
        for rule in st.rules:
            bus = "default" if rule.on_default_bus else names.bus
            rule_name = names.rule(st.name, rule)
            events.put_rule(Name=rule_name, EventBusName=bus, EventPattern=rule.pattern_json(), State="ENABLED")
            events.put_targets(Rule=rule_name, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    dep.alerts_topic_arn = sns.create_topic(Name=names.alerts_topic)["TopicArn"]
    dep.operator_topic_arn = sns.create_topic(Name=names.operator_topic)["TopicArn"]
    dep.inbox_url = sqs.create_queue(QueueName=f"{prefix}-inbox")["QueueUrl"]
    inbox_arn = sqs.get_queue_attributes(QueueUrl=dep.inbox_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for topic in (dep.alerts_topic_arn, dep.operator_topic_arn):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
    ddb.create_table(
        TableName=names.idempotency_table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dep


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """The event Lambda's SQS integration passes to a handler."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": m.get("Attributes", {}).get("SentTimestamp", "0"),
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": "0",
                },
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


@dataclass
class PumpReport:
    invocations: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    wall_s: float = 0.0


class LocalCloud:
    """A running embedded deployment. Use as a context manager: ``with LocalCloud() as cloud: ...``."""

    def __init__(self, prefix: str = "dqad-local", *, start_moto: bool = True) -> None:
        self.prefix = prefix
        self.start_moto = start_moto
        self._mock: Any = None
        self._saved_env: dict[str, str | None] = {}
        self.session: boto3.session.Session | None = None
        self.deployment: Deployment | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> LocalCloud:
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "MOTO_ALLOW_NONEXISTENT_REGION": "true",
        }
        if self.start_moto:
            from moto import mock_aws

            self._mock = mock_aws()
            self._mock.start()
        self.session = boto3.session.Session(region_name=REGION)
        self.deployment = provision(self.session, self.prefix)
        env.update(self.deployment.settings().to_env())
        for k, v in env.items():
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._mock is not None:
            self._mock.stop()

    @property
    def dep(self) -> Deployment:
        assert self.deployment is not None, "use LocalCloud as a context manager"
        return self.deployment

    def client(self, service: str) -> Any:
        assert self.session is not None
        return self.session.client(service)

    # -- driving the chain -----------------------------------------------------------------------
    def invoke(self, stage: Stage, entry: str, event: Any) -> Any:
        """Call a non-SQS entry point (e.g. the fetcher's Aurora one) as Lambda would."""
        return load_entry_point(stage.extra_entry_points[entry])(event, None)

    def _queue_arn(self, url: str) -> str:
        name = url.rsplit("/", 1)[-1]
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def pump_once(self, st: Stage, report: PumpReport, batch_size: int = 10) -> int:
        sqs = self.client("sqs")
        url = self.dep.queue_urls[st.name]
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return 0
        handler = load_entry_point(st.handler)
        started = time.perf_counter()
        result = handler(sqs_event(messages, self._queue_arn(url)), None) or {}
        report.seconds[st.name] += time.perf_counter() - started
        report.invocations[st.name] += 1
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        report.failures[st.name] += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i : i + 10])],
            )
        return len(messages)

    def depth(self, stage_name: str) -> int:
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=self.dep.queue_urls[stage_name],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def pump(self, deadline_s: float = 120.0, only: tuple[str, ...] | None = None) -> PumpReport:
        """Run stage handlers until every queue is empty (including in-flight retries) or the deadline."""
        report = PumpReport()
        started = time.perf_counter()
        stages = [s for s in STAGES if only is None or s.name in only]
        while True:
            moved = sum(self.pump_once(st, report) for st in stages)
            if moved:
                continue
            if all(self.depth(st.name) == 0 for st in stages):
                # moto counts visible and in-flight messages at two instants: a message whose visibility
                # expires between them is in neither count. One more pass sees it if it exists.
                if sum(self.pump_once(st, report) for st in stages) == 0:
                    break
                continue
            if time.perf_counter() - started > deadline_s:
                raise TimeoutError(
                    f"chain not quiet after {deadline_s}s: "
                    + ", ".join(f"{s.name}={self.depth(s.name)}" for s in stages)
                )
            time.sleep(0.05)  # only in-flight retries remain: wait for their visibility timeout
        report.wall_s = time.perf_counter() - started
        return report

    def inbox(self) -> list[dict]:
        """SNS notifications delivered to the inbox subscription, as SNS delivers them (envelope)."""
        sqs = self.client("sqs")
        out: list[dict[str, Any]] = []
        while True:
            msgs = sqs.receive_message(QueueUrl=self.dep.inbox_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                "Messages", []
            )
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=self.dep.inbox_url, ReceiptHandle=m["ReceiptHandle"])

    def dead_letters(self, stage_name: str, expect: int = 0, deadline_s: float = 15.0) -> list[dict]:
        """Messages parked in a stage's DLQ; with ``expect``, poll until that many arrived or the deadline.

        SQS moves a message to the DLQ on the receive *after* its last allowed attempt, and the message
        keeps the visibility it had, so it can take a moment to show: poll, never sleep a fixed time.
        """
        sqs = self.client("sqs")
        found: list[dict] = []
        deadline = time.perf_counter() + deadline_s
        while True:
            found += sqs.receive_message(
                QueueUrl=self.dep.dlq_urls[stage_name],
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if len(found) >= expect or time.perf_counter() > deadline:
                return found
            time.sleep(0.1)

    # -- persistence between processes (demo → replay) -------------------------------------------
    def export_bucket(self, target: Path) -> int:
        s3 = self.client("s3")
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.dep.bucket):
            for obj in page.get("Contents", []):
                path = target / obj["Key"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket=self.dep.bucket, Key=obj["Key"])["Body"].read())
                count += 1
        return count

    def import_bucket(self, source: Path) -> int:
        """Upload a folder written by :meth:`export_bucket`; a top-level name starting with ``.`` is
        the folder's own (``dqad run`` keeps its signing secret there) and never enters the bucket."""
        s3 = self.client("s3")
        count = 0
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = path.relative_to(source)
            if key.parts[0].startswith("."):
                continue
            s3.put_object(Bucket=self.dep.bucket, Key=key.as_posix(), Body=path.read_bytes())
            count += 1
        return count


@contextmanager
def local_cloud(prefix: str = "dqad-local", start_moto: bool = True) -> Iterator[LocalCloud]:
    with LocalCloud(prefix, start_moto=start_moto) as cloud:
        yield cloud
