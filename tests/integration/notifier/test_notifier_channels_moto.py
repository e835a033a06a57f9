"""Slack, Teams and the signed webhook delivered end to end: the real notifier handler on moto, the
webhook URLs in Secrets Manager, a local HTTP server as the three platforms."""

from __future__ import annotations

import json

import pytest

from dqad_notifier import channels
from dqad_notifier.channels import webhook
from dqad_notifier.channels.http import Retry

KEY = "s" * 32
TABLES = [f"sales.t{i}" for i in range(5)]


@pytest.fixture
def wired(notifier, webhooks, monkeypatch):
    """The notifier with one channel of each kind, pointed at the local server; retries without waiting."""
    monkeypatch.setattr(channels, "RETRY", Retry(attempts=3, backoff_s=0.01, timeout_s=5))
    sm = notifier.cloud.client("secretsmanager")
    sm.create_secret(Name="dqad-test-channel-slack", SecretString=webhooks.url("/slack"))
    sm.create_secret(Name="dqad-test-channel-teams", SecretString=webhooks.url("/teams"))
    sm.create_secret(
        Name="dqad-test-channel-hook", SecretString=json.dumps({"url": webhooks.url("/hook"), "signing_key": KEY})
    )
    notifier.configure(
        channels=(
            {"kind": "slack", "secret": "dqad-test-channel-slack", "name": "sales-slack"},
            {"kind": "teams", "secret": "dqad-test-channel-teams"},
            {"kind": "webhook", "secret": "dqad-test-channel-hook", "name": "pager"},
        )
    )
    return notifier


def five_empty_tables(make_scores) -> object:
    points = [
        {"table": t, "metric": "row_count", "value": 0, "low": 900, "high": 1100, "severity": "high", "job": "dq_sales"}
        for t in TABLES
    ]
    points.append(
        {"table": "crm.contacts", "metric": "row_count", "value": 1000, "low": 900, "high": 1100, "job": "dq_crm"}
    )
    return make_scores(points)


def test_a_job_that_loads_five_tables_empty_is_one_incident_and_one_message_per_channel(
    wired, webhooks, make_scores
) -> None:
    detail = wired.scored("run-j", five_empty_tables(make_scores), incidents=True)
    assert wired.deliver(detail) == {"batchItemFailures": []}

    [email] = wired.inbox()
    assert email["Subject"] == "[dqad] shop_dq: empty load - run run-j"
    assert "dqad found 1 incident in shop_dq (5 anomalies: 5 high)." in email["Message"]
    assert "[HIGH] empty load: job dq_sales: 5 tables loaded empty" in email["Message"]
    assert [len(webhooks.at(p)) for p in ("/slack", "/teams", "/hook")] == [1, 1, 1]

    [slack] = webhooks.at("/slack")
    assert "job dq_sales: 5 tables loaded empty" in slack.json()["blocks"][2]["text"]["text"]
    [teams] = webhooks.at("/teams")
    card = teams.json()["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and "job dq_sales: 5 tables loaded empty" in json.dumps(card)
    [hook] = webhooks.at("/hook")
    headers = {k.lower(): v for k, v in hook.headers.items()}
    assert webhook.verify(KEY.encode(), hook.body, headers["x-dqad-timestamp"], headers["x-dqad-signature"])
    assert headers["x-dqad-delivery"] == "run-j/pager"
    [incident] = hook.json()["incidents"]
    assert incident["kind"] == "empty_load" and incident["tables"] == TABLES and incident["job"] == "dq_sales"


def test_a_failing_slack_does_not_stop_the_email_or_the_others_and_reaches_the_operator(
    wired, webhooks, make_scores, sns_attrs
) -> None:
    webhooks.statuses["/slack"] = [500, 500, 500]
    assert wired.deliver(wired.scored("run-s", wired.incident_scores())) == {"batchItemFailures": []}

    assert len(webhooks.at("/slack")) == 3  # retried, then given up
    assert len(webhooks.at("/teams")) == 1 and len(webhooks.at("/hook")) == 1
    inbox = wired.inbox()
    [email] = [m for m in inbox if m["TopicArn"] == wired.cloud.dep.alerts_topic_arn]
    assert email["Subject"] == "[dqad] shop_dq: empty load, null spike - run run-s"
    [operator] = [m for m in inbox if m["TopicArn"] == wired.cloud.dep.operator_topic_arn]
    assert operator["Subject"] == "[dqad] CHANNEL FAILED slack sales-slack: shop_dq run run-s"
    assert "Error: HTTP 500 Internal Server Error after 3 attempts" in operator["Message"]
    assert sns_attrs(operator)["error_type"] == "ChannelDeliveryFailed" and sns_attrs(operator)["kind"] == "operator"


def test_each_channel_is_sent_once_per_run(wired, webhooks, monkeypatch) -> None:
    """The email failing after the channels went out fails the record; its retry mails, and does not
    post to the channels again."""
    from dqad import stage

    detail = wired.scored("run-r", wired.incident_scores())
    topic = wired.cloud.dep.alerts_topic_arn
    monkeypatch.setenv("DQAD_ALERTS_TOPIC_ARN", topic + "-gone")  # SNS refuses: the email fails
    stage._runtime_for.cache_clear()
    assert wired.deliver(detail)["batchItemFailures"]
    assert [len(webhooks.at(p)) for p in ("/slack", "/teams", "/hook")] == [1, 1, 1]

    monkeypatch.setenv("DQAD_ALERTS_TOPIC_ARN", topic)
    stage._runtime_for.cache_clear()
    assert wired.deliver(detail) == {"batchItemFailures": []}
    assert [len(webhooks.at(p)) for p in ("/slack", "/teams", "/hook")] == [1, 1, 1]
    assert len([m for m in wired.inbox() if m["TopicArn"] == topic]) == 1
