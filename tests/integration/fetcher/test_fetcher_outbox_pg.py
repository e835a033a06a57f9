"""Acceptance of the Aurora entry point and the outbox sweeper against the real PostgreSQL.

* 100 INSERTs → 100 recorded ``aws_lambda.invoke`` calls → (the ``dqad listen`` bridge) → the
  fetcher's aurora entry point → 100 LoadCompleted events delivered by the bus to the fetcher queue.
* With the stand-in failing: 100 INSERTs commit, the outbox holds 100 rows, one sweep delivers 100
  LoadCompleted events, a second sweep delivers none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dqad.topology import stage
from dqad_dev import listen, sqlinstall
from dqad_dev.local import load_entry_point
from dqad_fetcher import domain
from dqad_fetcher.handler import OUTBOX_DSN_ENV, sweeper_handler

pytestmark = pytest.mark.postgres

N = 100
T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)


def insert_logs(dsn: str, n: int = N, *, status: str = "SUCCESS") -> list[int]:
    """n log rows as the ETL writes them: one committed INSERT each; returns their log ids."""
    ids = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            row = conn.execute(
                "INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status, loaded_at)"
                " VALUES ('dq_metrics_daily', 'dq.metrics_daily', %s, %s) RETURNING log_id",
                [status, T0 + timedelta(minutes=i)],
            ).fetchone()
            assert row is not None
            ids.append(int(row[0]))
    return ids


def load_completed_log_ids(messages: list[dict]) -> list[str]:
    assert all(m["detail-type"] == "LoadCompleted" and m["source"] == "dqad.fetcher" for m in messages)
    return [m["detail"]["log_id"] for m in messages]


@pytest.fixture
def catalog(put_catalog, make_catalog, storage):
    # The source is never read here: only the aurora entry point (catalog matching) runs.
    return put_catalog(make_catalog(f'kind = "file"\npath = "{storage.uri("sources/unused.parquet")}"'))


def test_hundred_inserts_reach_the_fetcher_queue_through_the_bridge(dqad_pg_dsn, cloud, catalog, drain_queue):
    log_ids = insert_logs(dqad_pg_dsn)
    with psycopg.connect(dqad_pg_dsn) as conn:
        calls = sqlinstall.pending_invocations(conn)
    assert len(calls) == N and {c.invocation_type for c in calls} == {"Event"}

    aurora = load_entry_point(stage("fetcher").extra_entry_points["aurora"])

    def forward(inv: Any) -> listen.Forwarded:
        runs = aurora(inv.payload, None)["runs"]
        return listen.Forwarded(inv.id, inv.payload, [listen.RunOutcome(r, "incomplete") for r in runs])

    result = listen.serve(dqad_pg_dsn, forward, max_events=N, timeout=60, after_id=0, out=lambda _: None)

    assert len(result.forwarded) == N and not result.timed_out
    assert sum(len(f.runs) for f in result.forwarded) == N
    messages = drain_queue("fetcher", N)
    assert sorted(load_completed_log_ids(messages)) == sorted(str(i) for i in log_ids)
    assert len({m["detail"]["run_id"] for m in messages}) == N
    assert drain_queue("fetcher", 1, deadline_s=0.5) == []  # exactly N, no duplicates


def outbox_counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL) FROM edo_dms.dqad_outbox"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def set_failing(dsn: str, failing: bool) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT aws_lambda.set_failing(%s)", [failing])


def test_failing_invoke_outbox_then_one_sweep_delivers_each_row_once(
    dqad_pg_dsn, cloud, catalog, drain_queue, monkeypatch
):
    set_failing(dqad_pg_dsn, True)
    log_ids = insert_logs(dqad_pg_dsn)  # every INSERT commits although every invoke raised
    with psycopg.connect(dqad_pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM edo_dms.qe_query_logs").fetchone() == (N,)
        assert sqlinstall.pending_invocations(conn) == []
    assert outbox_counts(dqad_pg_dsn) == (N, N)
    monkeypatch.setenv(OUTBOX_DSN_ENV, dqad_pg_dsn)

    first = sweeper_handler({}, None)

    assert first == {"claimed": N, "delivered": N, "failed": 0, "runs": N}
    assert outbox_counts(dqad_pg_dsn) == (N, 0)
    messages = drain_queue("fetcher", N)
    assert sorted(load_completed_log_ids(messages)) == sorted(str(i) for i in log_ids)

    second = sweeper_handler({}, None)

    assert second == {"claimed": 0, "delivered": 0, "failed": 0, "runs": 0}
    assert drain_queue("fetcher", 1, deadline_s=0.5) == []


def test_sweep_releases_a_failed_row_and_the_next_sweep_delivers_it(
    dqad_pg_dsn, cloud, catalog, drain_queue, monkeypatch
):
    set_failing(dqad_pg_dsn, True)
    insert_logs(dqad_pg_dsn, 3)
    monkeypatch.setenv(OUTBOX_DSN_ENV, dqad_pg_dsn)
    real = domain.accept_log_row
    calls = []

    def flaky(rt: Any, payload: Any) -> list[str]:
        calls.append(payload["log_id"])
        if len(calls) == 2:
            raise RuntimeError("EventBridge throttled")
        return real(rt, payload)

    monkeypatch.setattr(domain, "accept_log_row", flaky)

    first = sweeper_handler({}, None)

    assert first == {"claimed": 3, "delivered": 1, "failed": 1, "runs": 1}
    with psycopg.connect(dqad_pg_dsn) as conn:
        rows = conn.execute(
            "SELECT log_id, delivered_at IS NOT NULL, claimed_at IS NULL, last_error"
            " FROM edo_dms.dqad_outbox ORDER BY id"
        ).fetchall()
    assert rows[0][1] and not rows[1][1] and not rows[2][1]
    assert rows[1][2] and "EventBridge throttled" in rows[1][3]  # released at once, with the error
    assert rows[2][2] and "not attempted" in rows[2][3]

    second = sweeper_handler({}, None)

    assert second == {"claimed": 2, "delivered": 2, "failed": 0, "runs": 2}
    assert outbox_counts(dqad_pg_dsn) == (3, 0)
    assert len(drain_queue("fetcher", 3)) == 3


def test_sweeper_needs_a_dsn(cloud, monkeypatch):
    monkeypatch.delenv(OUTBOX_DSN_ENV, raising=False)
    with pytest.raises(Exception, match="DQAD_OUTBOX_DSN_SECRET_ARN"):
        sweeper_handler({}, None)
