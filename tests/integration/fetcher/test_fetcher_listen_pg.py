"""``dqad listen``: an INSERT into the local ``edo_dms.qe_query_logs`` runs the whole chain.

The real PostgreSQL with sql/local + sql/install.sql, the bridge, the fetcher's aurora entry point
and every stage on the embedded runtime (moto), down to the NotificationSent.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from dqad_dev import listen, sqlinstall
from dqad_dev.cli import main as dqad_main

pytestmark = pytest.mark.postgres


def apply_sample_insert(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        sqlinstall.apply_sql_file(conn, sqlinstall.sql_dir() / "local" / "sample_insert.sql")


@pytest.mark.slow
def test_sample_insert_runs_the_chain_to_a_notification(dqad_pg_dsn, aws_env):
    apply_sample_insert(dqad_pg_dsn)  # before the bridge starts: it is found by the catch-up
    lines: list[str] = []

    result = listen.listen_local(dqad_pg_dsn, max_events=1, timeout=60, out=lines.append)

    assert len(result.forwarded) == 1, lines
    (forwarded,) = result.forwarded
    assert forwarded.payload is not None and forwarded.payload["table_name"] == "dq.metrics_daily"
    (run,) = forwarded.runs
    assert run.status == "notified", run
    assert run.detail["kind"] == "alert" and run.detail["anomaly_count"] >= 1
    assert any(f"run {run.run_id}: notified" in line for line in lines)


def test_bridge_follows_notify_skips_dry_run_and_forwards_each_call_once(dqad_pg_dsn):
    seen: list[int] = []

    def forward(inv: Any) -> listen.Forwarded:
        seen.append(inv.id)
        return listen.Forwarded(inv.id, inv.payload)

    with psycopg.connect(dqad_pg_dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT aws_lambda.invoke(aws_commons.create_lambda_function_arn('f', 'eu-west-1'),"
            " '{\"log_id\": \"dry\"}'::json, 'DryRun')"
        )
    result: dict[str, listen.ListenResult] = {}
    bridge_thread = threading.Thread(
        target=lambda: result.setdefault(
            "r", listen.serve(dqad_pg_dsn, forward, max_events=2, timeout=30, after_id=0, out=lambda _: None)
        )
    )
    bridge_thread.start()
    try:
        with psycopg.connect(dqad_pg_dsn, autocommit=True) as conn:
            for _ in range(2):
                conn.execute(
                    "INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status) VALUES ('j', 'dq.x', 'SUCCESS')"
                )
    finally:
        bridge_thread.join(timeout=40)
    assert not bridge_thread.is_alive()
    res = result["r"]
    assert len(res.forwarded) == 2 and len(seen) == len(set(seen)) == 2
    assert [s.skipped for s in res.skipped] == ["DryRun"]


def test_cli_times_out_without_calls(dqad_pg_dsn, aws_env, capsys):
    code = dqad_main(["listen", "--dsn", dqad_pg_dsn, "--once", "--timeout", "1"])
    assert code == 1
    assert "timed out" in capsys.readouterr().out
