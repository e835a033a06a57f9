"""Bad input is refused clearly and safely: no credential in a failure, whatever echoes it."""

from __future__ import annotations

import json

import pytest

from dqad.bus import envelope
from dqad.contract import AnomaliesScored
from dqad.stage import PermanentError, StageRuntime, redact, run_batch, runtime
from dqad_dev.local import LocalCloud, sqs_event

PASSWORD = "s3cr3t-Pa55w0rd-never-echoed"


@pytest.mark.parametrize(
    "text",
    [
        f"invalid connection option: postgresql://etl:{PASSWORD}@db.internal:5432/dwh?sslmode=x",
        f"missing '=' after 'oops' in: host=db user=etl password={PASSWORD} oops",
        f"bad dsn \"host=db password='{PASSWORD}' dbname=x\"",
        f"redshift+psycopg2://u:{PASSWORD}@cluster/db",
    ],
)
def test_redact_masks_passwords_of_urls_and_key_value_dsns(text: str) -> None:
    out = redact(text)
    assert PASSWORD not in out and "***" in out


def test_a_failure_carrying_a_dsn_never_reaches_the_event_the_dlq_or_the_logs(
    cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"postgresql://etl:{PASSWORD}@db.internal:5432/dwh"
    sqs = cloud.client("sqs")
    scored = AnomaliesScored(
        run_id="r-dsn",
        dataset="demo_dq",
        scores={"uri": "s3://nowhere-bucket/x.parquet", "rows": 1, "sha256": "0" * 64},
        scored_rows=1,
        anomaly_count=1,
        model_version="v1",
    )
    event = envelope(scored, "dqad.scorer")
    url = cloud.dep.queue_urls["notifier"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
    [msg] = sqs.receive_message(QueueUrl=url, AttributeNames=["All"])["Messages"]

    def handle(rt: StageRuntime, detail: object) -> None:
        raise PermanentError(f"cannot connect with {dsn}: invalid port")

    queue_arn = f"arn:aws:sqs:us-east-1:123456789012:{cloud.dep.names.queue('notifier')}"
    run_batch(sqs_event([msg], queue_arn), None, runtime("notifier"), handle)

    [dead] = cloud.dead_letters("notifier", expect=1)
    assert PASSWORD not in json.dumps(dead["MessageAttributes"]) and "etl:***@db.internal" in json.dumps(dead)
    stored = [
        cloud.client("s3").get_object(Bucket=cloud.dep.bucket, Key=o["Key"])["Body"].read().decode()
        for o in cloud.client("s3").list_objects_v2(Bucket=cloud.dep.bucket, Prefix="events/").get("Contents", [])
    ]
    failed = [json.loads(s)["detail"] for s in stored if '"StageFailed"' in s]
    assert len(failed) == 1 and "etl:***@db.internal" in failed[0]["message"]
    assert all(PASSWORD not in s for s in stored)
    assert PASSWORD not in capsys.readouterr().out


@pytest.mark.parametrize("loaded_at", ["9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_a_load_time_out_of_range_is_refused_at_the_trigger_entry_point(loaded_at: str) -> None:
    from dqad_fetcher.domain import LogRow, LogRowError

    payload = {"log_id": "1", "table_name": "t", "status": "SUCCESS", "loaded_at": loaded_at}
    with pytest.raises(LogRowError, match=r"loaded_at .* is outside 2000-01-01"):
        LogRow.from_payload(payload)


def test_a_load_time_out_of_range_is_a_contract_error_so_it_is_parked_once() -> None:
    from datetime import UTC, datetime, timedelta

    from dqad.contract import ContractError, LoadCompleted, parse_detail

    fine = LoadCompleted(run_id="r", dataset="d", log_id="1", table_name="t", loaded_at=datetime.now(UTC), status="OK")
    body = fine.model_dump(mode="json")
    parse_detail("LoadCompleted", {**body, "loaded_at": (datetime.now(UTC) + timedelta(hours=23)).isoformat()})
    with pytest.raises(ContractError, match="loaded_at"):
        parse_detail("LoadCompleted", {**body, "loaded_at": "9999-12-31T00:00:00Z"})


def test_the_notifier_presigns_only_the_report_of_the_run_it_notifies(cloud: LocalCloud) -> None:
    from dqad_notifier.domain import report_link

    rt = runtime("notifier")

    def scored(report: str) -> AnomaliesScored:
        return AnomaliesScored(
            run_id="r-1", dataset="demo_dq", scores={"uri": rt.storage.uri("runs/demo_dq/r-1/scores.parquet"),
            "rows": 1, "sha256": "0" * 64}, scored_rows=1, anomaly_count=1, model_version="v1", report=report,
        )  # fmt: skip

    good = report_link(rt, scored(rt.storage.uri("runs/demo_dq/r-1/report.html")), 3600)
    assert good is not None and "runs/demo_dq/r-1/report.html" in good and "Signature=" in good
    for other in (
        rt.storage.uri("alerts/demo_dq/state.json"),
        rt.storage.uri("runs/demo_dq/r-2/report.html"),
        rt.storage.uri("runs/other/r-1/report.html"),
        "s3://someone-elses-bucket/runs/demo_dq/r-1/report.html",
        rt.storage.uri("runs/demo_dq/r-1/../r-2/report.html"),
    ):
        assert report_link(rt, scored(other), 3600) is None, other
