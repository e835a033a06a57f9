"""Batch semantics shared by every stage: bad records go to the DLQ with a reason, others succeed."""

from __future__ import annotations

import json

from dqad.bus import envelope
from dqad.contract import StageFailed
from dqad.topology import stage
from dqad_dev.local import LocalCloud


def _send(cloud: LocalCloud, stage_name: str, body: str) -> None:
    cloud.client("sqs").send_message(QueueUrl=cloud.dep.queue_urls[stage_name], MessageBody=body)


def test_malformed_event_goes_to_dlq_with_reason_and_the_rest_of_the_batch_succeeds(cloud: LocalCloud) -> None:
    good = StageFailed(run_id="r-1", dataset="demo_dq", stage="scorer", error_type="Boom", message="it broke")
    bad = envelope(good, "dqad.scorer")
    bad["detail"].pop("run_id")
    _send(cloud, "notifier", json.dumps(bad))
    _send(cloud, "notifier", "{definitely not json")
    _send(cloud, "notifier", json.dumps(envelope(good, "dqad.scorer")))

    report = cloud.pump(only=("notifier",), deadline_s=30)

    assert report.failures["notifier"] == 0  # contract errors are parked, not retried
    dead = cloud.dead_letters("notifier")
    reasons = sorted(m["MessageAttributes"]["error"]["StringValue"] for m in dead)
    assert len(dead) == 2
    assert any("detail.run_id" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    assert all(m["MessageAttributes"]["error_type"]["StringValue"] == "ContractError" for m in dead)
    inbox = cloud.inbox()
    assert len(inbox) == 1 and "dqad replay --run-id r-1 --stage scorer" in inbox[0]["Message"]


def test_transient_failure_is_retried_then_redriven_with_a_stage_failed(cloud: LocalCloud, monkeypatch) -> None:
    """A record that keeps failing ends in the DLQ via SQS redrive, and the run is reported failed."""
    from dqad.contract import AnomaliesScored

    scored = AnomaliesScored(
        run_id="r-2",
        dataset="demo_dq",
        scores={"uri": "s3://nowhere-bucket/x.parquet", "rows": 1, "sha256": "0" * 64},
        scored_rows=1,
        anomaly_count=1,
        model_version="v1",
    )
    # No dataset catalog exists in this deployment: reading it raises a (retryable) S3 error.
    _send(cloud, "notifier", json.dumps(envelope(scored, "dqad.scorer")))
    cloud.pump(only=("notifier",), deadline_s=60)
    dead = cloud.dead_letters("notifier", expect=1)
    assert len(dead) == 1 and "error" not in dead[0].get("MessageAttributes", {})  # redriven by SQS itself
    stored = cloud.client("s3").list_objects_v2(Bucket=cloud.dep.bucket, Prefix="events/r-2/")["Contents"]
    assert [o["Key"] for o in stored if "StageFailed" in o["Key"]] == ["events/r-2/StageFailed-notifier.json"]


def test_every_consuming_stage_has_queue_dlq_and_rule(cloud: LocalCloud) -> None:
    events = cloud.client("events")
    for name, url in cloud.dep.queue_urls.items():
        st = stage(name)
        attrs = cloud.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])
        assert json.loads(attrs["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 3
        for rule in st.rules:
            bus = "default" if rule.on_default_bus else cloud.dep.names.bus
            got = events.describe_rule(Name=cloud.dep.names.rule(name, rule), EventBusName=bus)
            assert json.loads(got["EventPattern"]) == rule.pattern


def test_a_failing_operator_alert_does_not_loop(cloud: LocalCloud, monkeypatch) -> None:
    """If the operator alert itself cannot be sent, no new StageFailed is produced (the DLQ alarm speaks)."""
    import dqad_notifier.domain as notifier_domain

    def broken(*_a, **_k):
        raise RuntimeError("SNS is down")

    monkeypatch.setattr(notifier_domain, "notify", broken)
    failed = StageFailed(run_id="r-3", dataset="demo_dq", stage="scorer", error_type="Boom", message="x")
    _send(cloud, "notifier", json.dumps(envelope(failed, "dqad.scorer")))
    cloud.pump(only=("notifier",), deadline_s=60)
    assert len(cloud.dead_letters("notifier", expect=1, deadline_s=30)) == 1
    keys = [o["Key"] for o in cloud.client("s3").list_objects_v2(Bucket=cloud.dep.bucket).get("Contents", [])]
    assert not any("StageFailed-notifier" in k for k in keys)
