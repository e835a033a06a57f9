"""``dqad listen --datasets FILE``: an INSERT into the ETL log of a real PostgreSQL (stand-in installed)
runs the user's catalog on the embedded runtime, and the state is saved for ``dqad serve`` and the
next ``dqad run``."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_an_insert_runs_the_users_catalog(dqad_pg_dsn: str, example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(dqad_pg_dsn) as conn:
        conn.execute(
            "INSERT INTO edo_dms.qe_query_logs (job_name, table_name, status, row_count, started_at, ended_at,"
            " loaded_at, query_text, run_host) VALUES ('crm_daily', 'crm.customers', 'SUCCESS', 8400,"
            " '2026-11-30T03:00:00Z', '2026-11-30T03:01:40Z', '2026-11-30T03:01:40Z', 'INSERT ...', 'talend')"
        )
    done = dqad("listen", "--dsn", dqad_pg_dsn, "--datasets", "datasets.toml", "--state", "st", "--once",
                "--timeout", "120")
    assert done.code == 0, done.out + done.err
    assert "datasets shop_dq from datasets.toml" in done.out
    assert "notified (alert): 1 anomalies" in done.out
    runs = list((example / "st" / "runs" / "shop_dq").iterdir())
    assert len(runs) == 1 and (runs[0] / "report.html").is_file()
