"""The scheduled freshness check end to end: ETL log rows in a real PostgreSQL (the repo's sql/
installed in a scratch database) → the fetcher's freshness entry point → LoadLogChecked on moto's
bus → the notifier's queue → the email on the alerts topic. And the log's own row count: a load
logged with 0 rows is reported as an empty load by the Aurora entry point, before any metric run."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dqad.datasets import long_format_dataset, render_catalog
from dqad.storage import Storage
from dqad.topology import stage
from dqad_dev.local import LocalCloud
from dqad_fetcher import handler

pytestmark = pytest.mark.postgres

SATURDAY = datetime(2026, 11, 7, tzinfo=UTC)


def catalog() -> str:
    return render_catalog(
        {
            "sales_dq": long_format_dataset(
                trigger_tables=["sales.*"],
                source={"kind": "file", "path": "s3://unused/metrics.csv"},
            )
        }
    )


def log_rows(
    conn: psycopg.Connection[Any],
    table: str,
    job: str,
    times: list[datetime],
    rows: int = 1000,
    took: timedelta | None = None,
) -> None:
    with conn.transaction():
        for at in times:
            conn.execute(
                "INSERT INTO edo_dms.qe_query_logs"
                " (job_name, table_name, status, row_count, started_at, ended_at, loaded_at)"
                " VALUES (%s, %s, 'SUCCESS', %s, %s, %s, %s)",
                (job, table, rows, None if took is None else at - took, at, at),
            )


def days(
    first: datetime, last: datetime, hour: int, minute: int, weekdays: range = range(7), jitter_min: int = 0
) -> list[datetime]:
    """Loads at hour:minute (plus up to ``jitter_min`` minutes) on the given weekdays."""
    rng = random.Random(hour * 60 + minute)
    out, day = [], first
    while day <= last:
        if day.weekday() in weekdays:
            out.append(day.replace(hour=hour, minute=minute) + timedelta(minutes=rng.randint(0, jitter_min)))
        day += timedelta(days=1)
    return out


def emails(cloud: LocalCloud) -> list[dict]:
    cloud.pump(only=("notifier",), deadline_s=60)
    return [m for m in cloud.inbox() if m.get("Subject", "").startswith("dqad sales_dq")]


@pytest.fixture
def setup(cloud: LocalCloud, storage: Storage, dqad_pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> psycopg.Connection:
    storage.put_bytes(cloud.dep.settings().datasets_uri, catalog().encode())
    monkeypatch.setenv(handler.OUTBOX_DSN_ENV, dqad_pg_dsn)  # the log is read with the sweeper's DSN
    conn = psycopg.connect(dqad_pg_dsn, autocommit=True)
    first = SATURDAY - timedelta(days=37)
    log_rows(conn, "sales.orders", "dq_sales", days(first, SATURDAY - timedelta(days=1), 2, 15))
    log_rows(
        conn, "sales.customers", "dq_sales", days(first, SATURDAY - timedelta(days=1), 6, 0, range(5), jitter_min=20)
    )
    log_rows(conn, "sales.returns", "dq_returns", days(first, SATURDAY - timedelta(days=2), 1, 0))
    log_rows(conn, "sales.new_table", "dq_sales", days(SATURDAY - timedelta(days=3), SATURDAY, 1, 30))
    return conn


def check(at: datetime) -> dict:
    return handler.freshness_check({"checked_at": at.isoformat()})


def test_late_then_arrived_missing_weekday_quiet_and_repeats_silent(
    cloud: LocalCloud, setup: psycopg.Connection
) -> None:
    report = check(SATURDAY.replace(hour=3, minute=30))
    assert report["late"] == ["sales.orders"] and report["missing"] == ["sales.returns"]
    assert "sales.customers" not in report["late"] + report["missing"]  # weekdays only: Saturday is not a load day
    assert "too little history" in report["not_judged"]["sales.new_table"]
    (first,) = emails(cloud)
    body = first["Message"]
    assert first["Subject"] == "dqad sales_dq: 1 missing load, 1 late load"
    assert (
        "  sales.orders: the load due 02:15 UTC has not arrived, 1 h 15 min late so far (daily at 02:15 UTC)"
        " [job dq_sales]\n" in body
    )
    assert (
        "  sales.returns: 2 loads missing, the first due Fri 6 Nov 01:00 UTC; the last one came Thu 5 Nov 01:00 UTC"
        " (daily at 01:00 UTC) [job dq_returns]\n" in body
    )
    assert body.index("Missing loads") < body.index("Late loads")
    assert "sales.customers" not in body

    assert check(SATURDAY.replace(hour=3, minute=45))["sent"] == 0  # the same news twice: one email
    assert emails(cloud) == []

    arrived_at = SATURDAY.replace(hour=4, minute=40)
    log_rows(setup, "sales.orders", "dq_sales", [arrived_at])
    report = check(SATURDAY.replace(hour=5))
    assert report["sent"] == 1 and report["late"] == []
    (closing,) = emails(cloud)
    assert closing["Subject"] == "dqad sales_dq: 1 late load arrived"
    assert "sales.orders: the load due 02:15 arrived at 04:40, 2 h 25 min late" in closing["Message"]
    assert check(SATURDAY.replace(hour=5, minute=15))["sent"] == 0


def test_a_load_logged_with_zero_rows_is_an_empty_load_at_once(cloud: LocalCloud, setup: psycopg.Connection) -> None:
    payload = {
        "log_id": "77",
        "job_name": "dq_sales",
        "table_name": "sales.orders",
        "loaded_at": SATURDAY.replace(hour=2, minute=16).isoformat(),
        "status": "SUCCESS",
        "row_count": "0",
        "source": "aurora-trigger",
    }
    runs = cloud.invoke(stage("fetcher"), "aurora", payload)["runs"]
    assert len(runs) == 1  # the metric run still starts (its LoadCompleted is on the fetcher's queue)
    assert cloud.depth("fetcher") == 1
    (mail,) = emails(cloud)
    assert mail["Subject"] == "dqad sales_dq: 1 empty load"
    assert "sales.orders: loaded empty at Sat 7 Nov 02:16 UTC: the ETL log says 0 rows (log id 77)" in mail["Message"]
    cloud.invoke(stage("fetcher"), "aurora", payload)  # the same log row again (a re-drive): no second email
    assert emails(cloud) == []


def test_a_load_far_slower_than_usual_is_a_slow_load_once(cloud: LocalCloud, setup: psycopg.Connection) -> None:
    first = SATURDAY - timedelta(days=30)
    log_rows(
        setup, "sales.payments", "dq_pay", days(first, SATURDAY - timedelta(days=2), 1, 0), took=timedelta(minutes=12)
    )
    log_rows(setup, "sales.payments", "dq_pay", [SATURDAY - timedelta(hours=22)], took=timedelta(hours=2, minutes=5))
    report = check(SATURDAY.replace(hour=0, minute=30))
    assert report["slow"] == ["sales.payments"]
    (mail,) = emails(cloud)
    assert "Slow loads (by the ETL log's own duration)\n" in mail["Message"]
    assert (
        "  sales.payments: the load that ended Fri 6 Nov 02:00 UTC took 2 h 5 min instead of about 12 min [job dq_pay]"
        in mail["Message"]
    )
    assert check(SATURDAY.replace(hour=0, minute=45))["sent"] == 0  # once per load


def test_bad_check_time_is_refused_naming_it(setup: psycopg.Connection) -> None:
    with pytest.raises(ValueError, match="checked_at: not an ISO timestamp: 'tomorrow'"):
        handler.freshness_check({"checked_at": "tomorrow"})
