"""Faults on the real chain (embedded moto): every run still ends in the same anomalies and one email.

Each test injects one kind of failure into the AWS clients the stages really use (botocore
``before-call`` hooks on the cached stage runtime's clients: the call fails *after* botocore's own
retries, as a persistent throttle or timeout would), or into the delivery itself (a worker dying
mid-batch, duplicates, reordering, replays), and compares the outcome with the module's fault-free
``baseline``: per run the same flagged (series, timestamp) pairs, the same scores file (sha256), and
exactly one email. Failures that cannot heal by retrying must land in the DLQ with their reason and
complete once redriven.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError

from dqad.stage import runtime
from dqad.storage import Storage
from dqad.topology import STAGES, stage
from dqad_dev.cli import input_event_key
from dqad_dev.loadtest import outcomes, run_results, seed_datasets, start_loads
from dqad_dev.local import LocalCloud, load_entry_point, sqs_event

pytestmark = pytest.mark.slow


# -- injection ---------------------------------------------------------------------------------------
def client_error(code: str, operation: str) -> Callable[[], Exception]:
    return lambda: ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


@contextmanager
def failing(stage_name: str, service: str, operation: str, fault: Callable[[], Any], times: int) -> Iterator[dict]:
    """The first ``times`` calls of ``operation`` by ``stage_name``'s client fail with ``fault()``.

    ``fault`` either returns an exception (raised) or a parsed response (returned instead of calling
    AWS, e.g. a ``put_events`` answer with ``FailedEntryCount`` > 0).
    """
    client = runtime(stage_name).clients(service)
    seen = {"calls": 0, "faults": 0}

    def hook(**_: Any) -> Any:
        seen["calls"] += 1
        if seen["faults"] >= times:
            return None
        seen["faults"] += 1
        result = fault()
        if isinstance(result, Exception):
            raise result
        return AWSResponse("https://injected", 200, {}, None), result

    event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
    uid = f"fault-{stage_name}-{operation}"
    client.meta.events.register(event, hook, unique_id=uid)
    try:
        yield seen
    finally:
        client.meta.events.unregister(event, unique_id=uid)


def assert_as_baseline(cloud: LocalCloud, storage: Storage, baseline: Any, run_ids: list[str]) -> None:
    """Same anomalies, same scores file, as many emails as without faults (0 or 1), ended in a notification."""
    assert run_ids == list(baseline.runs)
    got = run_results(cloud, storage, run_ids)
    for run_id, want in baseline.runs.items():
        assert got[run_id].anomalies == want.anomalies, run_id
        assert got[run_id].scores_sha256 == want.scores_sha256, run_id
        assert got[run_id].emails == want.emails, run_id
    assert {r: o.kind for r, o in outcomes(storage, run_ids).items()} == dict.fromkeys(run_ids, "notified")


def assert_dlqs_empty(cloud: LocalCloud) -> None:
    assert {st.name: len(cloud.dead_letters(st.name)) for st in STAGES} == {st.name: 0 for st in STAGES}


def redrive(cloud: LocalCloud, stage_name: str, expect: int) -> list[dict]:
    """Move a stage's DLQ back to its queue (what ``aws sqs start-message-move-task`` does)."""
    sqs = cloud.client("sqs")
    parked = cloud.dead_letters(stage_name, expect=expect, deadline_s=30)
    for m in parked:
        sqs.send_message(QueueUrl=cloud.dep.queue_urls[stage_name], MessageBody=m["Body"])
        sqs.delete_message(QueueUrl=cloud.dep.dlq_urls[stage_name], ReceiptHandle=m["ReceiptHandle"])
    return parked


def deliver_without_ack(cloud: LocalCloud, stage_name: str) -> BaseException | None:
    """One Lambda invocation whose process dies before SQS hears back: nothing is deleted."""
    sqs = cloud.client("sqs")
    url = cloud.dep.queue_urls[stage_name]
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    assert len(msgs) == 2, "both runs must be in the batch"
    try:
        load_entry_point(stage(stage_name).handler)(sqs_event(msgs, cloud._queue_arn(url)), None)
    except BaseException as exc:
        return exc
    return None


# -- tests -------------------------------------------------------------------------------------------
def test_s3_errors_and_timeouts_are_retried_to_the_same_outcome(chain, baseline) -> None:
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    with (
        failing("fetcher", "s3", "PutObject", client_error("SlowDown", "PutObject"), 1) as put,
        failing("labeler", "s3", "GetObject", lambda: ReadTimeoutError(endpoint_url="https://s3"), 1) as timeout,
        failing("scorer", "s3", "PutObject", client_error("InternalError", "PutObject"), 2) as internal,
    ):
        report = cloud.pump(deadline_s=120)
    assert (put["faults"], timeout["faults"], internal["faults"]) == (1, 1, 2)
    assert report.failures["fetcher"] >= 1 and report.failures["labeler"] >= 1 and report.failures["scorer"] >= 1
    assert_as_baseline(cloud, storage, baseline, run_ids)
    assert_dlqs_empty(cloud)


def test_sns_throttling_is_retried_without_a_second_email(chain, baseline) -> None:
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    with failing("notifier", "sns", "Publish", client_error("Throttling", "Publish"), 2) as sns:
        report = cloud.pump(deadline_s=120)
    assert sns["faults"] == 2 and report.failures["notifier"] == 2
    assert_as_baseline(cloud, storage, baseline, run_ids)
    assert_dlqs_empty(cloud)


def test_put_events_partial_failure_is_an_error_and_is_retried(chain, baseline) -> None:
    """HTTP 200 with FailedEntryCount > 0: the event is not silently dropped (docs/architecture.md §8.4)."""
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    rejected = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}]}
    with (
        failing("labeler", "events", "PutEvents", lambda: rejected, 1) as labeler,
        failing("scorer", "events", "PutEvents", lambda: rejected, 1) as scorer,
    ):
        report = cloud.pump(deadline_s=120)
    assert labeler["faults"] == scorer["faults"] == 1
    assert report.failures["labeler"] == 1 and report.failures["scorer"] == 1
    assert_as_baseline(cloud, storage, baseline, run_ids)


@pytest.mark.parametrize("stage_name", ["scorer", "notifier"])
def test_a_worker_killed_mid_batch_is_redelivered_without_a_second_email(
    chain, baseline, stage_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after handling the first record of a batch, before deleting anything."""
    import dqad_notifier.domain as notifier_domain
    import dqad_scorer.domain as scorer_domain

    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    upstream = tuple(s.name for s in STAGES[: [s.name for s in STAGES].index(stage_name)])
    cloud.pump(deadline_s=120, only=upstream)

    module, attr = (scorer_domain, "score") if stage_name == "scorer" else (notifier_domain, "notify")
    real = getattr(module, attr)
    handled: list[str] = []

    def dies_on_second(rt: Any, detail: Any, *args: Any, **kwargs: Any) -> Any:
        if handled:
            raise SystemExit("worker killed")  # BaseException: escapes the batch processor like a dead process
        handled.append(detail.run_id)
        return real(rt, detail, *args, **kwargs)

    monkeypatch.setattr(module, attr, dies_on_second)
    death = deliver_without_ack(cloud, stage_name)
    assert isinstance(death, SystemExit) and len(handled) == 1
    monkeypatch.setattr(module, attr, real)

    cloud.pump(deadline_s=120)
    assert_as_baseline(cloud, storage, baseline, run_ids)
    assert_dlqs_empty(cloud)


def test_duplicated_deliveries_change_nothing(chain, baseline) -> None:
    """The same log row inserted twice, and each stage's input delivered twice."""
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    assert start_loads(cloud, baseline.loads) == run_ids  # same log row -> same run id
    cloud.pump(deadline_s=120)
    sqs = cloud.client("sqs")
    for st in STAGES[1:]:
        for run_id in run_ids:
            body = json.dumps(storage.get_json(input_event_key(storage, run_id, st.name)))
            for _ in range(2):
                sqs.send_message(QueueUrl=cloud.dep.queue_urls[st.name], MessageBody=body)
    cloud.pump(deadline_s=180)
    assert_as_baseline(cloud, storage, baseline, run_ids)
    assert_dlqs_empty(cloud)


def test_reordered_deliveries_give_each_run_its_own_outcome(chain, baseline) -> None:
    """The later load runs the whole chain before the earlier one even starts."""
    cloud, storage = chain
    later = start_loads(cloud, baseline.loads[1:])
    cloud.pump(deadline_s=120)
    earlier = start_loads(cloud, baseline.loads[:1])
    cloud.pump(deadline_s=120)
    assert_as_baseline(cloud, storage, baseline, earlier + later)


def test_replaying_every_stage_rebuilds_the_same_outputs_and_sends_no_email(chain, baseline) -> None:
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    cloud.pump(deadline_s=120)
    first = run_results(cloud, storage, run_ids)
    sqs = cloud.client("sqs")
    for st in STAGES:  # dqad replay --stage <st> for every run, each followed downstream
        for run_id in run_ids:
            body = json.dumps(storage.get_json(input_event_key(storage, run_id, st.name)))
            sqs.send_message(QueueUrl=cloud.dep.queue_urls[st.name], MessageBody=body)
        cloud.pump(deadline_s=180)
    again = run_results(cloud, storage, run_ids)
    assert all(r.emails == 0 for r in again.values()), "a replay must not email again"
    for run_id in run_ids:
        assert again[run_id].anomalies == first[run_id].anomalies == baseline.runs[run_id].anomalies
        assert again[run_id].scores_sha256 == baseline.runs[run_id].scores_sha256
    assert_dlqs_empty(cloud)


def test_a_permanent_failure_is_parked_with_its_reason_and_completes_once_redriven(chain, baseline) -> None:
    """A configuration error: StageFailed + operator email + DLQ with the column; fix, redrive, done."""
    cloud, storage = chain
    good = storage.get_bytes(storage.uri("config/datasets.toml"))
    storage.put_bytes(
        storage.uri("config/datasets.toml"), good.replace(b'value = "metric_value"', b'value = "metric_val"')
    )
    run_ids = start_loads(cloud, baseline.loads)
    cloud.pump(deadline_s=120)
    parked = cloud.dead_letters("fetcher", expect=2)
    assert len(parked) == 2
    for m in parked:
        attrs = m["MessageAttributes"]
        assert attrs["error_type"]["StringValue"] == "PermanentError"
        assert "metric_val" in attrs["error"]["StringValue"]
    assert {r: o.failures for r, o in outcomes(storage, run_ids).items()} == {
        key: ["StageFailed-fetcher.json"] for key in run_ids
    }
    operator = cloud.inbox()
    assert sorted(m["MessageAttributes"]["run_id"]["Value"] for m in operator) == sorted(run_ids)
    for m in parked:  # put them back so redrive() can move them
        cloud.client("sqs").change_message_visibility(
            QueueUrl=cloud.dep.dlq_urls["fetcher"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )

    seed_datasets(
        storage, datasets=1, tables=4, days=60, loads_per_dataset=2
    )  # the operator fixes the configuration...
    assert len(redrive(cloud, "fetcher", expect=2)) == 2  # ...and redrives the DLQ
    cloud.pump(deadline_s=120)
    assert_dlqs_empty(cloud)
    got = run_results(cloud, storage, run_ids)
    for run_id, want in baseline.runs.items():
        assert got[run_id].anomalies == want.anomalies and got[run_id].emails == want.emails


def test_a_fault_that_outlasts_the_retries_ends_in_stage_failed_and_the_dlq_then_redrives(chain, baseline) -> None:
    cloud, storage = chain
    run_ids = start_loads(cloud, baseline.loads)
    with failing("scorer", "s3", "GetObject", lambda: ReadTimeoutError(endpoint_url="https://s3"), 10**9):
        cloud.pump(deadline_s=120)
        parked = cloud.dead_letters("scorer", expect=2, deadline_s=30)
    assert len(parked) == 2  # moved by SQS after maxReceiveCount
    assert {r: o.failures for r, o in outcomes(storage, run_ids).items()} == {
        key: ["StageFailed-scorer.json"] for key in run_ids
    }
    failed = storage.get_json(storage.uri(f"events/{run_ids[0]}/StageFailed-scorer.json"))["detail"]
    assert failed["error_type"] == "ReadTimeoutError" and failed["input_event"].endswith("ModelTrained.json")
    assert all(m["MessageAttributes"]["kind"]["Value"] == "operator" for m in cloud.inbox())
    for m in parked:
        cloud.client("sqs").change_message_visibility(
            QueueUrl=cloud.dep.dlq_urls["scorer"], ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )

    assert len(redrive(cloud, "scorer", expect=2)) == 2
    cloud.pump(deadline_s=120)
    got = run_results(cloud, storage, run_ids)
    for run_id, want in baseline.runs.items():
        assert got[run_id].anomalies == want.anomalies and got[run_id].emails == want.emails
        assert got[run_id].scores_sha256 == want.scores_sha256
