"""The late/missing/arrived/empty-load email (dqad_notifier.freshness): one line per table, in plain
words, tables of one ETL job grouped under it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dqad.contract import LoadIncidentDetail, LoadLogChecked
from dqad.freshness import LoadIncident
from dqad_notifier.freshness import duration_words, message

NOW = datetime(2026, 11, 7, 5, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 7, 2, 15, tzinfo=UTC)


def event(*incidents: LoadIncident) -> LoadLogChecked:
    return LoadLogChecked(
        run_id="fresh-0123456789abcdef01234567",
        dataset="sales_dq",
        checked_at=NOW,
        incidents=tuple(LoadIncidentDetail.model_validate(i.to_json()) for i in incidents),
    )


def late(table: str, job: str) -> LoadIncident:
    return LoadIncident(
        kind="late_load", table=table, job=job, due_at=DUE, cadence="daily at 02:15 UTC",
        lateness_s=(NOW - DUE).total_seconds(), last_arrival=DUE - timedelta(days=1), missed=1,
    )  # fmt: skip


def test_tables_of_one_job_are_grouped_under_it_one_line_each() -> None:
    subject, body = message(
        event(late("sales.orders", "dq_sales"), late("sales.lines", "dq_sales"), late("hr.staff", "dq_hr"))
    )
    assert subject == "dqad sales_dq: 3 late loads"
    assert (
        "Late loads\n"
        "  hr.staff: the load due 02:15 UTC has not arrived, 2 h 45 min late so far (daily at 02:15 UTC) [job dq_hr]\n"
        "  job dq_sales: 2 tables\n"
        "    sales.lines: the load due 02:15 UTC has not arrived, 2 h 45 min late so far (daily at 02:15 UTC)\n"
        "    sales.orders: the load due 02:15 UTC has not arrived, 2 h 45 min late so far (daily at 02:15 UTC)\n"
    ) in body


def test_an_arrival_closes_with_when_it_came_and_how_late() -> None:
    came = datetime(2026, 11, 7, 4, 40, tzinfo=UTC)
    arrived = LoadIncident(
        kind="load_arrived", table="sales.orders", job="dq_sales", due_at=DUE, arrived_at=came,
        lateness_s=(came - DUE).total_seconds(), missed=1,
    )  # fmt: skip
    subject, body = message(event(arrived))
    assert subject == "dqad sales_dq: 1 late load arrived"
    assert "  sales.orders: the load due 02:15 arrived at 04:40, 2 h 25 min late [job dq_sales]\n" in body


def test_durations_in_words() -> None:
    assert [duration_words(s) for s in (59, 60 * 40, 3600 * 2, 8700, 86400 * 3 + 3600 * 4, 86400)] == [
        "1 min", "40 min", "2 h", "2 h 25 min", "3 d 4 h", "1 d",
    ]  # fmt: skip
