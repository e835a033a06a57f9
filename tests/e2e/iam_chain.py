"""The chain on moto with every stage's AWS requests evaluated against its Terraform role.

Shared by the permission-enforced chain test and the grant-removal test (tests/e2e/): one run of
the whole chain, recorded invocation by invocation (who acted, on which input, from which bucket
and table state, with which outcome), so that one invocation can be replayed alone under a
reduced policy without running the chain again.

Who acts for whom (docs/security.md):
* the SQS-fed handler *and* the event source mapping's receive/delete: the stage's role;
* an entry point with its own role in Terraform (the feedback page): that role;
* the roles an AWS service invokes an entry point with (``INVOKER_ROLES``): the freshness check's
  EventBridge Scheduler schedule and the Aurora trigger are authorised ``lambda:InvokeFunction``
  on the function before it runs, which then acts as the stage's role;
* the training job: the trainer asks SageMaker for it (``CreateProcessingJob`` with the request
  :class:`~dqad_trainer.runners.SageMakerRunner` sends, ``iam:PassRole`` of the job role); the job's
  input listing and downloads and its output uploads run as the SageMaker job role; the job-state
  event is put by SageMaker itself (no role of ours).
"""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pytest

import dqad.stage
import dqad_dev.local as local_runtime
from dqad import signing
from dqad.feedback import write_label
from dqad.storage import Storage
from dqad.topology import STAGES, stage
from dqad_dev.demo import FRESHNESS_CHECK_AFTER, LOAD_LOG_KEY, demo_catalog, seed_demo_dataset
from dqad_dev.local import LocalCloud, PumpReport
from dqad_dev.run import drive_chain
from dqad_notifier import channels
from dqad_notifier.channels.http import Retry
from dqad_trainer import runners
from tests.iam_enforce import (
    PARTITION,
    SAGEMAKER_JOB,
    Deployed,
    Enforcer,
    invoker_of,
    principal_of,
    requests_for,
    role_policies,
)
from tests.iam_policy import Request

PREFIX = "dqad-iam"
DAYS = 45  # of history: enough for the detector to find the forced incidents, small enough to replay fast
SHARDS = {"max_rows": 1000}  # 12 tables × 5 metrics × 45 days: 3 shards, so the shard joins run under the roles
FEEDBACK_URL = "https://iamtest.lambda-url.us-east-1.on.aws/"
FEEDBACK_SECRET = "feedback-hmac-for-the-permission-tests-" + "k" * 24
TRAINER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/dqad-iam/trainer:test"
CHANNEL_SECRET = f"{PREFIX}-channel-slack"  # the webhook URL of the demo dataset's one channel
CHANNEL = {"kind": "slack", "secret": CHANNEL_SECRET, "name": "dq-slack"}


@dataclass
class Invocation:
    """One call of an entry point, with what is needed to run it again alone."""

    principal: str
    kind: str  # "sqs:<stage>" or "invoke:<stage>:<entry>"
    payload: Any  # the SQS message bodies, or the event of a direct invocation
    bucket: dict[str, str]  # key -> ETag (bytes in _BODIES)
    table: dict[str, list[dict]]  # the DynamoDB tables' items (idempotency, shards)
    dlq: int = 0
    outcome: tuple = ()
    seconds: float = 0.0  # how long it took: the grant-removal test replays the quickest one it can
    requests: list = field(default_factory=list)  # Evaluated entries made during it


@dataclass
class Recorded:
    cloud: LocalCloud
    enforcer: Enforcer
    deployed: Deployed
    invocations: list[Invocation]
    job_outputs: dict[str, dict[str, bytes]]  # job name -> output files (the training's result)
    run_id: str
    notification: dict | None
    feedback_statuses: list[int]
    freshness: dict  # what the scheduled freshness check returned
    freshness_notification: dict | None  # the email of its LoadLogChecked
    webhook_posts: list[tuple[str, bytes]]  # what the channel's endpoint received (path, body)

    def replay(self, inv: Invocation, policy_override: dict | None = None) -> tuple:
        return _replay(self, inv, policy_override)


# -- state snapshots (the harness acts, unchecked) -----------------------------------------------------
_BODIES: dict[str, bytes] = {}  # ETag -> object bytes, read once
_CLIENTS: dict[tuple[int, str], Any] = {}


def _client(cloud: LocalCloud, service: str) -> Any:
    """The harness's own clients, made once (a client costs tens of milliseconds to build)."""
    key = (id(cloud), service)
    if key not in _CLIENTS:
        _CLIENTS[key] = cloud.client(service)
    return _CLIENTS[key]


def _bucket(cloud: LocalCloud) -> dict[str, str]:
    """The bucket as key -> ETag (a listing: no object is read)."""
    s3 = _client(cloud, "s3")
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.dep.bucket):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["ETag"]
    return out


def _snapshot(cloud: LocalCloud) -> dict[str, str]:
    """The bucket as key -> ETag, with every object's bytes kept so that it can be restored."""
    s3 = _client(cloud, "s3")
    listing = _bucket(cloud)
    for key, etag in listing.items():
        if etag not in _BODIES:
            _BODIES[etag] = s3.get_object(Bucket=cloud.dep.bucket, Key=key)["Body"].read()
    return listing


def _tables(cloud: LocalCloud) -> tuple[str, ...]:
    return cloud.dep.names.idempotency_table, cloud.dep.names.shards_table


def _table(cloud: LocalCloud) -> dict[str, list[dict]]:
    ddb = _client(cloud, "dynamodb")
    return {name: ddb.scan(TableName=name).get("Items", []) for name in _tables(cloud)}


def _restore(cloud: LocalCloud, bucket: dict[str, str], table: dict[str, list[dict]]) -> None:
    s3, ddb, sqs = _client(cloud, "s3"), _client(cloud, "dynamodb"), _client(cloud, "sqs")
    current = _bucket(cloud)
    for key in current:
        if key not in bucket:
            s3.delete_object(Bucket=cloud.dep.bucket, Key=key)
    for key, etag in bucket.items():
        if current.get(key) != etag:
            s3.put_object(Bucket=cloud.dep.bucket, Key=key, Body=_BODIES[etag])
    for name, items in _table(cloud).items():
        for item in items:
            ddb.delete_item(TableName=name, Key={"id": item["id"]})
    for name, items in table.items():
        for item in items:
            ddb.put_item(TableName=name, Item=item)
    for url in [*cloud.dep.queue_urls.values(), *cloud.dep.dlq_urls.values(), cloud.dep.inbox_url]:
        _empty_queue(sqs, url)


def _empty_queue(sqs: Any, url: str) -> None:
    """Empty a queue, in-flight messages included: recreate it with its attributes (same name, so
    same URL and ARN; the rules and subscriptions that target it keep working). PurgeQueue would do,
    but SQS allows one per minute."""
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    if int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0:
        return
    keep = {k: v for k, v in attrs.items() if k in ("VisibilityTimeout", "RedrivePolicy", "Policy")}
    sqs.delete_queue(QueueUrl=url)
    new = sqs.create_queue(QueueName=url.rsplit("/", 1)[-1], Attributes=keep)["QueueUrl"]
    assert new == url, (new, url)


def _dlq_depth(cloud: LocalCloud) -> int:
    sqs = _client(cloud, "sqs")
    return sum(
        int(sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"])
        for u in cloud.dep.dlq_urls.values()
    )  # fmt: skip


def _outcome(cloud: LocalCloud, before: dict[str, str], dlq_before: int, result: Any) -> tuple:
    """What an invocation did, comparably: its result, the events it logged, what it dead-lettered."""
    after = _bucket(cloud)
    logged = sorted(k.rsplit("/", 1)[-1] for k in after if k.startswith("events/") and k not in before)
    written = sorted(k for k, etag in after.items() if not k.startswith("events/") and before.get(k) != etag)
    return (result, tuple(logged), tuple(written), _dlq_depth(cloud) - dlq_before)


# -- the wiring ---------------------------------------------------------------------------------------
class Wiring:
    """Patches the embedded runtime so that each entry point acts as its role, and records."""

    def __init__(self, mp: pytest.MonkeyPatch, cloud: LocalCloud, enforcer: Enforcer, deployed: Deployed) -> None:
        self.cloud, self.enforcer, self.deployed = cloud, enforcer, deployed
        self.invocations: list[Invocation] = []
        self.recording = True
        self.job_outputs: dict[str, dict[str, bytes]] = {}
        self.replay_jobs = False
        self._bodies: list[str] | None = None
        original_pump_once = LocalCloud.pump_once
        original_invoke = LocalCloud.invoke
        original_start = runners.LocalRunner.start
        original_sqs_event = local_runtime.sqs_event
        original_run = subprocess.run
        wiring = self

        def sqs_event(messages: list[dict], queue_arn: str) -> dict:
            if wiring._bodies is not None:
                wiring.snapshot()
                wiring._bodies.extend(m["Body"] for m in messages)
            return original_sqs_event(messages, queue_arn)

        def pump_once(cloud_: LocalCloud, st: Any, report: PumpReport, batch_size: int = 10) -> int:
            with wiring.invocation(st.name, f"sqs:{st.name}") as inv:
                failed = report.failures.get(st.name, 0)
                moved = original_pump_once(cloud_, st, report, batch_size)
                inv.payload = list(wiring._bodies or [])
                inv.outcome = (report.failures.get(st.name, 0) - failed,)
                return moved

        def invoke(cloud_: LocalCloud, st: Any, entry: str, event: Any) -> Any:
            with wiring.invocation(principal_of(st.name, entry), f"invoke:{st.name}:{entry}") as inv:
                wiring.snapshot()
                inv.payload = event
                invoker = invoker_of(st.name, entry)
                if invoker is not None:  # the schedule / the Aurora trigger invokes it with its own role
                    arn = wiring.deployed.function_arn(wiring.deployed.names.function(st.name, entry))
                    enforcer.check(invoker, "lambda.Invoke", [Request("lambda:InvokeFunction", arn)])
                result = original_invoke(cloud_, st, entry, event)
                inv.outcome = (_comparable(result),)
                return result

        def start(runner: runners.LocalRunner, spec: runners.JobSpec) -> None:
            # What the trainer asks of SageMaker on AWS, authorised as the trainer.
            request = runners.SageMakerRunner(
                None, TRAINER_IMAGE, wiring.deployed.sagemaker_role_arn, "ml.m5.large"
            ).request(spec)
            enforcer.check(
                "trainer",
                "sagemaker.CreateProcessingJob",
                requests_for("sagemaker", "CreateProcessingJob", request, {}),
            )
            events = runner.events
            runner.events = _AsSageMaker(enforcer, events)
            try:
                with enforcer.acting_as(SAGEMAKER_JOB):
                    for item in request["ProcessingInputs"]:  # S3Prefix inputs: SageMaker lists, then gets
                        bucket, _, key = item["S3Input"]["S3Uri"].removeprefix("s3://").partition("/")
                        listing = Request("s3:ListBucket", f"arn:{PARTITION}:s3:::{bucket}", {"s3:prefix": key})
                        enforcer.check(SAGEMAKER_JOB, "s3.ListObjectsV2 (job input)", [listing])
                    wiring._job = spec.name
                    original_start(runner, spec)
            finally:
                runner.events = events

        def run(args: Any, *a: Any, **kw: Any) -> Any:
            if not (isinstance(args, list) and "dqad_trainer.job" in args):
                return original_run(args, *a, **kw)
            out = Path(args[args.index("--output") + 1])
            if wiring.replay_jobs:  # the training's result as recorded: its compute calls no AWS
                for rel, data in wiring.job_outputs[wiring._job].items():
                    (out / rel).parent.mkdir(parents=True, exist_ok=True)
                    (out / rel).write_bytes(data)
                return subprocess.CompletedProcess(args, 0, "", "")
            proc = original_run(args, *a, **kw)
            wiring.job_outputs[wiring._job] = {
                p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            }
            return proc

        mp.setattr("dqad_dev.local.sqs_event", sqs_event)
        mp.setattr(LocalCloud, "pump_once", pump_once)
        mp.setattr(LocalCloud, "invoke", invoke)
        mp.setattr(runners.LocalRunner, "start", start)
        mp.setattr(runners.subprocess, "run", run)

    _job: str = ""  # the job the runner is running (its recorded outputs are keyed by name)

    _current: Invocation | None = None

    def snapshot(self) -> None:
        """The state the current invocation starts from (taken only when it has input to handle)."""
        inv = self._current
        if self.recording and inv is not None:
            with self.enforcer.acting_as(None):
                inv.bucket, inv.table, inv.dlq = _snapshot(self.cloud), _table(self.cloud), _dlq_depth(self.cloud)

    @contextmanager
    def invocation(self, principal: str, kind: str) -> Iterator[Invocation]:
        inv = Invocation(principal, kind, None, {}, {})
        self._current = inv
        # Keys cached by one stage must not serve another: on AWS each function is its own process,
        # and each fetches the key with its own role (a warm container did so at its cold start).
        signing._key_cache.clear()
        dqad.stage._runtime_for.cache_clear()  # a cold container: its own clients, catalog read afresh
        start = len(self.enforcer.log)
        started = time.perf_counter()
        self._bodies = []
        try:
            with self.enforcer.acting_as(principal):
                yield inv
        finally:
            self._bodies = None
            self._current = None
            inv.requests = self.enforcer.log[start:]
            inv.seconds = time.perf_counter() - started
            # an empty poll of a queue is no invocation of the function
            if self.recording and (not kind.startswith("sqs:") or inv.payload):
                inv.outcome = _outcome(self.cloud, inv.bucket, inv.dlq, inv.outcome)
                self.invocations.append(inv)


def _comparable(result: Any) -> Any:
    if isinstance(result, dict) and "statusCode" in result:
        return result["statusCode"]
    return json.dumps(result, sort_keys=True, default=str)


class _AsSageMaker:
    """The job-state event of a finished job is put by SageMaker, not by a role of ours."""

    def __init__(self, enforcer: Enforcer, events: Any) -> None:
        self.enforcer, self.events = enforcer, events

    def put_events(self, **kw: Any) -> Any:
        with self.enforcer.acting_as(None):
            return self.events.put_events(**kw)


def _feedback_link(message: dict) -> str:
    links = re.findall(re.escape(FEEDBACK_URL) + r"\?[^\s\"'<>)]+", message["Message"])
    assert links, "the email carries no feedback link"
    return links[0]


class _Webhook:
    """A local HTTP endpoint standing in for Slack: it records each POST and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append((self.path, self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def url_event(method: str, url: str, body: str | None = None) -> dict:
    from urllib.parse import parse_qsl

    query = dict(parse_qsl(urlparse(url).query))
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": urlparse(url).query,
        "headers": {"host": urlparse(FEEDBACK_URL).netloc, "content-type": "application/x-www-form-urlencoded"},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "anonymous",
            "http": {
                "method": method,
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "t",
            },
            "requestId": f"req-{method}",
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }


@contextmanager
def recorded_chain() -> Iterator[Recorded]:
    """Run the chain once under the enforced roles and keep the recording (module fixtures use it)."""
    with closing(_Webhook()) as webhook, pytest.MonkeyPatch.context() as mp, LocalCloud(PREFIX) as cloud:
        dep = cloud.dep
        sm = cloud.client("secretsmanager")
        secret_arn = sm.create_secret(Name=f"{PREFIX}-notifier-feedback-hmac", SecretString=FEEDBACK_SECRET)["ARN"]
        # the channel's webhook URL, in the secret the deployment lists in var.channel_secret_arns
        channel_arn = sm.create_secret(Name=CHANNEL_SECRET, SecretString=webhook.url("/slack"))["ARN"]
        mp.setenv("DQAD_FEEDBACK_SECRET_ARN", secret_arn)
        mp.setenv("DQAD_FEEDBACK_URL", FEEDBACK_URL)
        mp.setattr(channels, "RETRY", Retry(attempts=2, backoff_s=0.01, timeout_s=5))
        deployed = Deployed(
            PREFIX, dep.bucket, dep.model_signing_secret_arn, secret_arn, channel_secret_arns=(channel_arn,)
        )
        # the catalog names the channel's secret by name: AWS authorises the secret's ARN
        enforcer = Enforcer(role_policies(deployed), secrets={CHANNEL_SECRET: channel_arn})
        enforcer.install(mp)
        wiring = Wiring(mp, cloud, enforcer, deployed)

        storage = Storage(cloud.client("s3"), dep.bucket)
        demo = seed_demo_dataset(storage, seed=3, tables=12, days=DAYS)
        # the demo's catalog with one Slack channel (the notifier delivers each alert there too)
        catalog = demo_catalog(dep.bucket, demo.data.holidays, demo.new_window_hours, channels=[CHANNEL], shards=SHARDS)
        storage.put_bytes(storage.uri("config/datasets.toml"), catalog.encode())
        # the scheduled freshness check reads the demo's ETL log, a CSV in the bucket (as `dqad demo`)
        mp.setenv("DQAD_LOAD_LOG_URI", storage.uri(LOAD_LOG_KEY))
        # one earlier human label, so that the labeler and the trainer read labels/ as they do on AWS
        first = demo.data.metrics.iloc[0]
        write_label(storage, "demo_dq", f"{first['table_name']}/{first['metric_name']}",
                    pd.Timestamp(first["load_ts"]).isoformat(), "normal", note="seeded", by="test")  # fmt: skip
        runs = cloud.invoke(stage("fetcher"), "aurora", demo.payload)["runs"]
        drive_chain(cloud, None, deadline_s=300)
        [run_id] = runs
        notification = next(iter(cloud.inbox()), None)
        # the scheduled freshness check, once, an hour after the last load: the missing loads of the
        # demo's one table go out as a LoadLogChecked, which the notifier mails
        checked_at = demo.loaded_at + FRESHNESS_CHECK_AFTER
        freshness = cloud.invoke(stage("fetcher"), "freshness", {"checked_at": checked_at.isoformat()})
        drive_chain(cloud, None, deadline_s=60)
        freshness_notification = next(iter(cloud.inbox()), None)
        # a poison record per stage: the dead-letter path runs under each role too
        for st in STAGES:
            cloud.client("sqs").send_message(QueueUrl=dep.queue_urls[st.name], MessageBody="not an event")
            cloud.pump_once(st, PumpReport())
        statuses = []
        if notification is not None:
            link = _feedback_link(notification)
            statuses.append(cloud.invoke(stage("notifier"), "feedback", url_event("GET", link))["statusCode"])
            statuses.append(
                cloud.invoke(stage("notifier"), "feedback", url_event("POST", link, "note=planned"))["statusCode"]
            )
            # the same link again: its first use is on record, so it records nothing and says so
            statuses.append(
                cloud.invoke(stage("notifier"), "feedback", url_event("POST", link, "note=again"))["statusCode"]
            )
        wiring.recording = False
        recorded = Recorded(
            cloud, enforcer, deployed, wiring.invocations, wiring.job_outputs, run_id, notification, statuses,
            freshness, freshness_notification, list(webhook.received),
        )  # fmt: skip
        recorded._wiring = wiring  # type: ignore[attr-defined]
        try:
            yield recorded
        finally:
            _CLIENTS.clear()
            _BODIES.clear()


def _replay(rec: Recorded, inv: Invocation, policy_override: dict | None) -> tuple:
    """Run one recorded invocation again, alone, from the state it started in."""
    wiring: Wiring = rec._wiring  # type: ignore[attr-defined]
    cloud, enforcer = rec.cloud, rec.enforcer
    _restore(cloud, inv.bucket, inv.table)
    saved = dict(enforcer.policies)
    enforcer.policies.update(policy_override or {})
    wiring.replay_jobs = True
    try:
        if inv.kind.startswith("sqs:"):
            st = stage(inv.kind.split(":", 1)[1])
            sqs = _client(cloud, "sqs")
            for body in inv.payload:
                sqs.send_message(QueueUrl=cloud.dep.queue_urls[st.name], MessageBody=body)
            report = PumpReport()
            try:
                with enforcer.acting_as(inv.principal):
                    LocalCloud.pump_once(cloud, st, report)
                result: Any = (report.failures.get(st.name, 0),)
            except Exception as exc:  # the poll or the handler itself failed
                result = (f"raised {type(exc).__name__}",)
        else:
            _, stage_name, entry = inv.kind.split(":")
            try:
                result = (_comparable(LocalCloud.invoke(cloud, stage(stage_name), entry, inv.payload)),)
            except Exception as exc:
                result = (f"raised {type(exc).__name__}",)
        return _outcome(cloud, inv.bucket, 0, result)
    finally:
        wiring.replay_jobs = False
        enforcer.policies.clear()
        enforcer.policies.update(saved)


ALL_STAGES = tuple(s.name for s in STAGES)
