"""Notifier: one readable email digest per scored run, and operator alerts for failed stages.

Exactly once per run: the SNS publish runs under Powertools idempotency keyed on
``(run_id, version)`` in DynamoDB, so a redelivered or replayed AnomaliesScored returns the first
result instead of mailing twice.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from aws_lambda_powertools import Logger
from dqad.contract import AnomaliesScored, EventDetail, NotificationSent, StageFailed
from dqad.stage import StageRuntime

logger = Logger(service="dqad-notifier")
SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "": 3}


def _fmt(v: float) -> str:
    if pd.isna(v):
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def digest(detail: AnomaliesScored, anomalies: pd.DataFrame, report_link: str, max_in_body: int) -> tuple[str, str]:
    """Subject and plain-text body: grouped by table (the load group), worst first."""
    n = len(anomalies)
    subject = f"[dqad] {detail.dataset}: {n} anomal{'y' if n == 1 else 'ies'} in run {detail.run_id}"
    ranked = anomalies.assign(_sev=anomalies["severity"].map(SEVERITY_ORDER).fillna(3))
    ranked = ranked.sort_values(["_sev", "score"], ascending=[True, False])
    shown = ranked.head(max_in_body)
    group_rank = shown.groupby("group", sort=False)["_sev"].min().sort_values(kind="stable")
    lines = [
        f"dqad found {n} anomal{'y' if n == 1 else 'ies'} in dataset {detail.dataset} "
        f"({detail.scored_rows} points scored, model {detail.model_version}).",
        "",
    ]
    for group in group_rank.index:
        lines.append(f"== {group}")
        for row in shown[shown["group"] == group].itertuples(index=False):
            metric = row.series[len(group) + 1 :] if row.series.startswith(f"{group}/") else row.series
            lines.append(
                f"  - {metric} at {row.timestamp:%Y-%m-%d %H:%M} UTC: {_fmt(row.value)} "
                f"(expected {_fmt(row.expected_low)} to {_fmt(row.expected_high)}), "
                f"severity {row.severity}, score {row.score:.2f}"
            )
            if row.reasons:
                lines.append(f"    why: {row.reasons}")
        lines.append("")
    if n > len(shown):
        lines.append(f"... and {n - len(shown)} more in the report.")
    lines += [
        f"Full report with plots: {report_link}",
        "",
        "To mark a point as expected, run: dqad feedback --dataset "
        f"{detail.dataset} --series <series> --timestamp <time> --label normal",
    ]
    return subject[:99], "\n".join(lines)


def _attrs(**values: Any) -> dict:
    out = {}
    for k, v in values.items():
        dtype = "Number" if isinstance(v, int) else "String"
        out[k] = {"DataType": dtype, "StringValue": str(v)}
    return out


def _send_alert(rt: StageRuntime, detail: AnomaliesScored) -> dict:
    ds = rt.catalog.get(detail.dataset)
    scores = rt.storage.read_parquet(detail.scores)
    anomalies = scores[scores["is_anomaly"]]
    if anomalies.empty:
        return {"message_id": None, "anomaly_count": 0, "suppressed_count": 0, "kind": "none"}
    link = rt.storage.presign(detail.report, rt.settings.report_link_expiry_s) if detail.report else "(no report)"
    subject, body = digest(detail, anomalies, link, ds.notifier.max_in_body)
    worst = min(anomalies["severity"], key=lambda s: SEVERITY_ORDER.get(s, 3))
    rt.settings.require("alerts_topic_arn")
    response = rt.clients("sns").publish(
        TopicArn=rt.settings.alerts_topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes=_attrs(
            dataset=detail.dataset, severity=worst or "low", anomaly_count=len(anomalies), run_id=detail.run_id
        ),
    )
    return {
        "message_id": response["MessageId"],
        "anomaly_count": len(anomalies),
        "suppressed_count": 0,
        "kind": "alert",
    }


def _send_operator_alert(rt: StageRuntime, detail: StageFailed) -> dict:
    rt.settings.require("operator_topic_arn")
    body = "\n".join(
        [
            f"dqad stage '{detail.stage}' failed for dataset {detail.dataset}, run {detail.run_id}.",
            f"Error: {detail.error_type}: {detail.message}",
            f"Input event: {detail.input_event or '(none)'}",
            "",
            "After fixing the cause, re-run the stage with:",
            f"  dqad replay --run-id {detail.run_id} --stage {detail.stage}",
        ]
    )
    response = rt.clients("sns").publish(
        TopicArn=rt.settings.operator_topic_arn,
        Subject=f"[dqad] {detail.stage} failed: {detail.dataset} run {detail.run_id}"[:99],
        Message=body,
        MessageAttributes=_attrs(dataset=detail.dataset, stage=detail.stage, kind="operator"),
    )
    return {"message_id": response["MessageId"], "anomaly_count": 0, "suppressed_count": 0, "kind": "operator"}


def _once(rt: StageRuntime, detail: EventDetail, send) -> dict:
    """Run ``send`` at most once per (run_id, detail-type, version), remembered in DynamoDB."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    rt.settings.require("idempotency_table")
    persistence = DynamoDBPersistenceLayer(
        table_name=rt.settings.idempotency_table, boto3_client=rt.clients("dynamodb")
    )
    config = IdempotencyConfig(
        event_key_jmespath="[run_id, kind, version]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=30 * 24 * 3600,
    )

    @idempotent_function(data_keyword_argument="key", persistence_store=persistence, config=config)
    def once(key: dict) -> dict:
        return send(rt, detail)

    return once(key={"run_id": detail.run_id, "kind": detail.detail_type, "version": detail.version})


def notify(rt: StageRuntime, detail: EventDetail) -> NotificationSent:
    send = _send_operator_alert if isinstance(detail, StageFailed) else _send_alert
    result = _once(rt, detail, send)
    event = NotificationSent(run_id=detail.run_id, dataset=detail.dataset, **result)
    rt.publisher.publish(event)
    return event
