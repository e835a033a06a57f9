"""The example's metrics in a real PostgreSQL (scratch database): ``dqad validate`` runs the query
with the window bound and LIMIT 0 (columns and types), ``dqad run`` runs the chain on it through
the DSN in an environment variable, and a wrong column, a text value, an unset variable or an
unreachable server are each one line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import psycopg
import pytest

pytestmark = pytest.mark.postgres
QUERY = (
    "SELECT table_name, metric_name, load_ts, metric_value FROM dq.metrics "
    "WHERE load_ts >= %(history_start)s AND load_ts < %(new_end)s"
)


def sql_catalog(folder: Path, query: str = QUERY) -> Path:
    text = (folder / "datasets.toml").read_text()
    source = text.index("[datasets.shop_dq.source]")
    path = folder / "pg.toml"
    path.write_text(
        text[:source]
        + f'[datasets.shop_dq.source]\nkind = "sql"\ndsn_env = "SHOP_DQ_DSN"\nquery = """{query}"""\n'
    )
    return path


@pytest.fixture
def loaded(pg_dsn: str, example: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    frame = pd.read_csv(example / "dq_metrics.csv")
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE SCHEMA dq")
        conn.execute("CREATE TABLE dq.metrics (table_name text, metric_name text, load_ts timestamptz,"
                     " metric_value double precision, note text)")
        with conn.cursor().copy("COPY dq.metrics (table_name, metric_name, load_ts, metric_value) FROM STDIN") as cp:
            for row in frame.itertuples(index=False):
                cp.write_row(row)
    monkeypatch.setenv("SHOP_DQ_DSN", pg_dsn)
    return pg_dsn


def test_validate_and_run_on_postgres(loaded: str, example: Path, dqad) -> None:  # type: ignore[no-untyped-def]
    catalog = sql_catalog(example)
    checked = dqad("validate", str(catalog))
    assert checked.code == 0, checked.out
    assert checked.out == (
        "shop_dq: ok (sql source: query ok (table_name text, metric_name text, load_ts timestamptz, "
        "metric_value float8); latest load 2026-11-30 03:01 UTC)\n"
    )
    ran = dqad("run", "--datasets", str(catalog))
    assert ran.code == 0, ran.err
    assert "1 anomaly in shop_dq" in ran.out and "crm.customers          null_pct" in ran.out


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (QUERY.replace("metric_value FROM", "metric_value AS value FROM"),
         "the query returns no column 'metric_value' (it returns: value)"),
        (QUERY.replace("metric_value FROM", "true AS metric_value FROM"), "value column 'metric_value' is bool"),
        (QUERY.replace("dq.metrics", "dq.metricz"), 'the query fails: relation "dq.metricz" does not exist'),
    ],
)
def test_validate_names_a_bad_query(loaded: str, example: Path, dqad, query: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    checked = dqad("validate", str(sql_catalog(example, query)))
    assert checked.code == 2
    assert expected in checked.out and checked.out.count("\n") == 1, checked.out


def test_validate_without_the_dsn_or_the_server(example: Path, dqad, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    catalog = sql_catalog(example)
    monkeypatch.delenv("SHOP_DQ_DSN", raising=False)
    unset = dqad("validate", str(catalog))
    assert unset.code == 2 and "environment variable SHOP_DQ_DSN is not set" in unset.out
    monkeypatch.setenv("SHOP_DQ_DSN", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    down = dqad("validate", str(catalog))
    assert down.code == 2 and "cannot connect to the SQL source" in down.out and "Traceback" not in down.out
