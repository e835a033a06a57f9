"""Alert emails as SNS delivers them, through the real notifier handler on moto: content,
attributes, silence on clean runs, exactly-once under redelivery, memory of what was sent."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest


def test_digest_content_and_attributes(notifier, sns_attrs) -> None:
    notifier.configure(max_in_body=20)
    detail = notifier.scored("run-a", notifier.incident_scores())
    result = notifier.deliver(detail)

    assert result == {"batchItemFailures": []}
    [msg] = notifier.inbox()
    assert msg["Subject"] == "[dqad] shop_dq: empty load, null spike - run run-a"
    assert sns_attrs(msg) == {
        "dataset": "shop_dq",
        "severity": "high",
        "anomaly_count": "3",
        "run_id": "run-a",
        "kind": "alert",
    }
    assert msg["MessageAttributes"]["anomaly_count"]["Type"] == "Number"
    body = msg["Message"]
    # the incidents first (named here from the scores: this event carries no incidents.json), then the metrics
    assert body.startswith("dqad found 2 incidents in shop_dq (3 anomalies: 2 high, 1 low).")
    assert (
        body.index("[HIGH] empty load: sales.orders loaded empty: 0 rows instead of about 3.1 million")
        < body.index("[LOW] null spike: crm.contacts: share of empty values rose to 9.5% (normally at most 3%)")
        < body.index("Metric detail:")
    )
    # grouped by table, the table with the worst anomaly first
    assert body.index("sales.orders: 2 anomalies, worst high") < body.index("crm.contacts: 1 anomaly, worst low")
    assert "[HIGH] rows loaded (row_count), load of 2026-11-02 02:16 UTC" in body
    assert "  Actual:   0\n  Expected: 2,900,000 to 3,400,000 (100% below the expected range)" in body
    assert "  Why:      value 0 is 100% below the usual 3,157,100 for Mondays" in body
    assert (
        "[LOW] share of empty values (null_pct)" in body and "9.5" in body and "217% above the expected range" in body
    )
    assert "crm.contacts/row_count" not in body  # a normal point is not in the email
    # presigned report link with the configured expiry (7 days by default)
    assert _link_lifetime_s(body) == pytest.approx(7 * 24 * 3600, abs=120)
    # signed with temporary credentials (a Lambda role's): the email says the link may end sooner
    assert "(link valid at most 7 days: it is signed with the notifier's" in body
    assert "The report stays at s3://" in body and "/runs/shop_dq/run-a/report.html" in body
    # no feedback URL configured (local): the email shows the exact CLI command per anomaly
    assert (
        "dqad feedback --dataset shop_dq --series sales.orders/row_count --timestamp 2026-11-02T02:16:07 --label normal"
        in body
    )
    sent = notifier.notification("run-a")
    assert (sent.kind, sent.anomaly_count, sent.suppressed_count) == ("alert", 3, 0)
    assert sent.message_id == msg["MessageId"]


def _link_lifetime_s(body: str) -> float:
    """Seconds the presigned report link in ``body`` stays valid (SigV4 or SigV2 query auth)."""
    link = re.search(r"^(https://\S+/report\.html\?\S+)$", body, re.M)
    assert link, body
    q = parse_qs(urlparse(link.group(1)).query)
    if "X-Amz-Expires" in q:
        return float(q["X-Amz-Expires"][0])
    return float(q["Expires"][0]) - time.time()


def test_report_link_expiry_is_configurable(notifier, monkeypatch) -> None:
    monkeypatch.setenv("DQAD_REPORT_LINK_EXPIRY_S", "7200")
    notifier.configure()
    notifier.deliver(notifier.scored("run-a", notifier.incident_scores()))
    [msg] = notifier.inbox()
    assert _link_lifetime_s(msg["Message"]) == pytest.approx(7200, abs=120)
    assert "(link valid at most 2 hours:" in msg["Message"]


def test_max_in_body_sends_the_rest_to_the_report(notifier) -> None:
    notifier.configure(max_in_body=1)
    notifier.deliver(notifier.scored("run-a", notifier.incident_scores()))
    [msg] = notifier.inbox()
    assert msg["Message"].count("  Actual:") == 1
    assert "... and 2 more anomalies in the report." in msg["Message"]


def test_min_severity_filters_and_counts_as_suppressed(notifier, sns_attrs) -> None:
    notifier.configure(min_severity="medium")
    notifier.deliver(notifier.scored("run-a", notifier.incident_scores()))
    [msg] = notifier.inbox()
    assert sns_attrs(msg)["anomaly_count"] == "2"
    assert "null_pct" not in msg["Message"]
    assert "1 below the minimum severity 'medium'" in msg["Message"]
    assert notifier.notification("run-a").suppressed_count == 1


def test_clean_run_sends_nothing(notifier) -> None:
    notifier.deliver(notifier.scored("run-clean", notifier.clean_scores()))
    assert notifier.inbox() == []
    sent = notifier.notification("run-clean")
    assert (sent.kind, sent.message_id, sent.anomaly_count) == ("none", None, 0)


def test_heartbeat_once_per_day_when_enabled(notifier, sns_attrs) -> None:
    notifier.configure(heartbeat=True)
    notifier.deliver(notifier.scored("run-1", notifier.clean_scores()))
    notifier.deliver(notifier.scored("run-2", notifier.clean_scores(notifier.t0 + pd.Timedelta(hours=1))))
    [msg] = notifier.inbox()
    assert sns_attrs(msg)["kind"] == "heartbeat" and sns_attrs(msg)["anomaly_count"] == "0"
    assert "all clear" in msg["Subject"]


def test_two_deliveries_of_one_event_send_one_email(notifier) -> None:
    detail = notifier.scored("run-a", notifier.incident_scores())
    notifier.deliver(detail, detail)  # same event twice in one batch (at-least-once delivery)
    notifier.deliver(detail)  # and again later (a replay)
    assert len(notifier.inbox()) == 1


def test_repeat_of_an_alerted_anomaly_is_suppressed(notifier) -> None:
    notifier.deliver(notifier.scored("run-a", notifier.incident_scores()))
    assert len(notifier.inbox()) == 1
    # a re-run of the same load under another run id: the same points, already mailed
    notifier.deliver(notifier.scored("run-b", notifier.incident_scores()))
    assert notifier.inbox() == []
    sent = notifier.notification("run-b")
    assert (sent.kind, sent.anomaly_count, sent.suppressed_count) == ("none", 3, 3)
    state = notifier.storage.get_json(notifier.storage.uri("alerts/shop_dq/state.json"))
    assert len(state["alerted"]) == 3 and set(state["incidents"]) == {
        "sales.orders/row_count",
        "sales.orders/sum_amount",
        "crm.contacts/null_pct",
    }


@pytest.mark.parametrize("realert_after_hours", [48])
def test_continuing_incident_realerts_only_after_the_interval(notifier, realert_after_hours) -> None:
    notifier.configure(realert_after_hours=realert_after_hours)
    day = pd.Timedelta(days=1)
    notifier.deliver(notifier.scored("run-d0", notifier.incident_scores(notifier.t0)))
    assert len(notifier.inbox()) == 1
    # next daily load, still broken (a few minutes earlier): same incident, within 48 h -> silent
    notifier.deliver(notifier.scored("run-d1", notifier.incident_scores(notifier.t0 + day - pd.Timedelta(minutes=7))))
    assert notifier.inbox() == []
    assert notifier.notification("run-d1").suppressed_count == 3
    # two days after the first alert: a reminder, saying since when
    notifier.deliver(
        notifier.scored("run-d2", notifier.incident_scores(notifier.t0 + 2 * day - pd.Timedelta(minutes=3)))
    )
    [msg] = notifier.inbox()
    assert "Ongoing since 2026-11-02 02:16 UTC (reminder)." in msg["Message"]
    # the table recovers, then breaks again: a new incident is mailed at once
    notifier.deliver(notifier.scored("run-d3", notifier.clean_scores(notifier.t0 + 3 * day)))
    notifier.deliver(notifier.scored("run-d4", notifier.incident_scores(notifier.t0 + 4 * day)))
    [msg] = notifier.inbox()
    assert "[HIGH] rows loaded (row_count)" in msg["Message"] and "Ongoing since" not in msg["Message"]


def test_signed_feedback_links_in_email_when_configured(notifier, cloud, monkeypatch) -> None:
    secret = cloud.client("secretsmanager").create_secret(Name="dqad-feedback-email", SecretString="k" * 32)
    monkeypatch.setenv("DQAD_FEEDBACK_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("DQAD_FEEDBACK_URL", "https://fb.lambda-url.us-east-1.on.aws/")
    notifier.deliver(notifier.scored("run-a", notifier.incident_scores()))
    [msg] = notifier.inbox()
    normal = re.findall(r"Expected - not an anomaly: (\S+)", msg["Message"])
    confirmed = re.findall(r"Confirmed incident:        (\S+)", msg["Message"])
    assert len(normal) == len(confirmed) == 3
    query = parse_qs(urlparse(normal[0]).query)
    assert query["s"] == ["sales.orders/row_count"] and query["l"] == ["normal"] and query["sig"]
    assert parse_qs(urlparse(confirmed[0]).query)["l"] == ["anomaly"]
    assert "dqad feedback --dataset" not in msg["Message"]
