"""The email digest as text: ordering, limits, links or commands, subject rules of SNS."""

from __future__ import annotations

from dqad.contract import StageFailed
from dqad_notifier.domain import DigestContext, digest, heartbeat_message, operator_message
from dqad_notifier.scores import ScoredPoint

POINTS = [
    ("crm.contacts", "null_pct", 9.5, 0, 3, "low"),
    ("sales.orders", "row_count", 0, 2.9e6, 3.4e6, "high"),
    ("sales.orders", "null_pct", 2.0, 0, 3, "medium"),
    ("finance.gl", "sum_amount", 3.3e7, 2.5e7, 3.1e7, "medium"),
]


def ctx(**kw) -> DigestContext:
    base = dict(
        dataset="shop_dq",
        run_id="run-a",
        scored_rows=100,
        model_version="v1",
        report_link="https://bucket/report.html?X-Amz-Expires=604800",
        report_link_expiry_s=604800,
        max_in_body=20,
        realert_after_hours=24,
    )
    return DigestContext(**(base | kw))


def anomalies(points) -> list[ScoredPoint]:
    return points(POINTS)


def test_groups_worst_first_and_anomalies_worst_first(points) -> None:
    subject, body = digest(anomalies(points), ctx())
    assert subject == "[dqad] shop_dq: 4 anomalies (1 high) - run run-a"
    order = [body.index(h) for h in ("sales.orders: 2", "finance.gl: 1", "crm.contacts: 1")]
    assert order == sorted(order)
    assert body.index("[HIGH] rows loaded (row_count)") < body.index("[MEDIUM] share of empty values (null_pct)")
    assert "Expected: 25,000,000 to 31,000,000 (6% above the expected range)" in body


def test_max_in_body_and_links(points) -> None:
    links = []

    def linker(series: str, ts: str, label: str) -> str:
        links.append((series, ts, label))
        return f"https://fb/?s={series}&l={label}"

    _, body = digest(anomalies(points), ctx(max_in_body=2, feedback=linker))
    assert body.count("  Actual:") == 2 and "... and 2 more anomalies in the report." in body
    assert links == [
        ("sales.orders/row_count", "2026-11-02T02:16:07", "normal"),
        ("sales.orders/row_count", "2026-11-02T02:16:07", "anomaly"),
        ("sales.orders/null_pct", "2026-11-02T02:16:07", "normal"),
        ("sales.orders/null_pct", "2026-11-02T02:16:07", "anomaly"),
    ]
    assert "dqad feedback" not in body


def test_cli_command_is_quoted_and_carries_flags(points) -> None:
    _, body = digest(points([("weird table", "row count", 0, 1, 2, "high")]), ctx(cli_flags=" --aws"))
    assert (
        "dqad feedback --dataset shop_dq --series 'weird table/row count' --timestamp 2026-11-02T02:16:07 "
        "--label normal --aws" in body
    )


def test_subject_is_sns_safe(points) -> None:
    subject, _ = digest(anomalies(points), ctx(run_id="r" * 40, dataset="d" * 60))
    assert len(subject) < 100 and subject.isascii() and "\n" not in subject


def test_suppressed_counts_are_explained(points) -> None:
    _, body = digest(anomalies(points), ctx(repeated=2, continuing=1, below_threshold=3, min_severity="medium"))
    assert "Not repeated here: 2 anomalies already sent in an earlier alert; 1 anomaly of incidents already" in body
    assert "3 below the minimum severity 'medium'" in body


def test_heartbeat_and_operator_messages() -> None:
    subject, body = heartbeat_message("shop_dq", "run-a", 1234, 2)
    assert subject == "[dqad] shop_dq: all clear - run run-a" and "1,234 points" in body
    failed = StageFailed(run_id="run-a", dataset="shop_dq", stage="trainer", error_type="Boom", message="x" * 10)
    subject, body = operator_message(failed, "dqad-prod", local=False)
    assert "  dqad replay --run-id run-a --stage trainer --aws --prefix dqad-prod" in body
    assert "Input event:  (not stored)" in body


def test_the_digest_leads_with_incidents_and_renders_them_without_scores(points) -> None:
    """Incidents from elsewhere (a late load, no metric anomaly) render through the same digest."""
    from datetime import datetime

    from dqad.incidents import Incident, Kind, find_incidents

    alert = anomalies(points)
    found = find_incidents(alert)
    subject, body = digest(alert, ctx(incidents=found))
    assert subject == "[dqad] shop_dq: empty load, other, null spike - run run-a"
    assert body.startswith("dqad found 3 incidents in shop_dq (4 anomalies: 1 high, 2 medium, 1 low).")
    assert (
        body.index("[HIGH] empty load: sales.orders loaded empty: 0 rows instead of about 3.1 million")
        < body.index("Metric detail:")
        < body.index("[HIGH] rows loaded (row_count), load of")
    )

    late = Incident(
        Kind.LATE, ("sales.orders",), datetime(2026, 11, 2, 4, 15), "medium", "sales.orders: due 02:15, late"
    )
    subject, body = digest([], ctx(incidents=[late]))
    assert subject == "[dqad] shop_dq: late load - run run-a"
    assert body.startswith("dqad found 1 incident in shop_dq.\n")
    assert "  [MEDIUM] late load: sales.orders: due 02:15, late (load of 2026-11-02 04:15 UTC)" in body
    assert "Metric detail:" not in body


def test_a_session_bound_report_link_says_it_may_end_sooner_and_where_the_report_stays(points) -> None:
    _, exact = digest(anomalies(points), ctx())
    assert "(link valid 7 days):" in exact and "stays at" not in exact
    uri = "s3://bucket/runs/shop_dq/run-a/report.html"
    _, bound = digest(anomalies(points), ctx(report_uri=uri, report_link_session_bound=True))
    assert "(link valid at most 7 days: it is signed with the notifier's" in bound
    assert f"The report stays at {uri}" in bound
