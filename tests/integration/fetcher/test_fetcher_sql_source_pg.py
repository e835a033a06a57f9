"""The ``sql`` source against the real PostgreSQL: chunked server-side cursor, bound window, outcomes."""

from __future__ import annotations

import io

import pandas as pd
import psycopg
import pytest

from dqad_fetcher import domain
from dqad_fetcher.handler import lambda_handler

pytestmark = pytest.mark.postgres

DSN_ENV = "DQAD_TEST_METRICS_DSN"
COLUMNS = "table_name, metric_name, load_ts, metric_value"
QUERY = f"SELECT {COLUMNS} FROM dq_metrics WHERE load_ts >= %(history_start)s AND load_ts < %(new_end)s"


def load_table(dsn: str, frame: pd.DataFrame) -> None:
    """COPY the frame into dq_metrics (numeric values: the driver hands Decimals to the fetcher)."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE dq_metrics"
            " (table_name text, metric_name text, load_ts timestamptz, metric_value numeric(18,4))"
        )
        buf = io.StringIO()
        frame.assign(load_ts=frame["load_ts"].dt.strftime("%Y-%m-%d %H:%M:%S+00")).to_csv(
            buf, index=False, header=False
        )
        with conn.cursor().copy(f"COPY dq_metrics ({COLUMNS}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(buf.getvalue())


def sql_catalog(make_catalog, query: str = QUERY, extra: str = "") -> str:
    return make_catalog(f'kind = "sql"\ndsn_env = "{DSN_ENV}"\nchunk_rows = 1000\nquery = "{query}"\n{extra}')


def test_sql_source_streams_chunks_and_splits(
    pg_dsn, cloud, storage, put_catalog, load_completed, make_catalog, make_metrics, monkeypatch
):
    frame = make_metrics(tables=10, metrics=5, days=45)  # 2250 rows: three 1000-row chunks
    load_table(pg_dsn, frame)
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    rt = put_catalog(sql_catalog(make_catalog))

    event = domain.fetch(rt, load_completed())

    assert event is not None
    history, new = storage.read_parquet(event.history), storage.read_parquet(event.new)
    assert (event.history.rows, event.new.rows) == (10 * 5 * 30, 10 * 5)  # 30-day history, 24 h new
    assert len(pq_row_groups(storage, event.history.uri)) >= 2  # written chunk by chunk
    both = pd.concat([history, new])
    in_window = frame[frame["load_ts"] > frame["load_ts"].max() - pd.Timedelta(days=31)]
    expected = in_window.groupby(in_window["table_name"] + "/" + in_window["metric_name"])["metric_value"].sum()
    got = both.groupby("series")["value"].sum()
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)
    assert str(both["timestamp"].dtype) == "datetime64[ns]" and both["timestamp"].dt.tz is None


def pq_row_groups(storage, uri: str) -> list[int]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(storage.get_bytes(uri))).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def test_sql_error_is_stage_failed_with_statement_id(
    pg_dsn, cloud, put_catalog, load_completed, make_catalog, make_metrics, stored_events, sqs_event_for, monkeypatch
):
    load_table(pg_dsn, make_metrics())
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    put_catalog(sql_catalog(make_catalog, QUERY.replace("metric_value", "metric_valu")))
    detail = load_completed()

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    message = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["message"]
    assert "[42703]" in message and "metric_valu" in message  # undefined_column, named
    assert "(statement dqad_" in message


def test_sql_statement_timeout_is_stage_failed_with_statement_id(
    pg_dsn, cloud, put_catalog, load_completed, make_catalog, make_metrics, stored_events, sqs_event_for, monkeypatch
):
    load_table(pg_dsn, make_metrics())
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    slow = f"SELECT {COLUMNS} FROM dq_metrics, pg_sleep(30) WHERE load_ts < %(new_end)s"
    put_catalog(sql_catalog(make_catalog, slow, "statement_timeout_s = 0.3"))
    detail = load_completed()

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    message = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["message"]
    assert "timed out after statement_timeout=0.3s" in message and "(statement dqad_" in message


def test_unreachable_database_is_retried_not_failed(
    cloud, put_catalog, load_completed, make_catalog, stored_events, sqs_event_for, monkeypatch
):
    monkeypatch.setenv(DSN_ENV, "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=2")
    put_catalog(sql_catalog(make_catalog))
    detail = load_completed()
    event = sqs_event_for(detail)

    result = lambda_handler(event)

    assert result["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert "StageFailed-fetcher.json" not in stored_events(detail.run_id)  # first attempt: SQS retries


def test_missing_dsn_env_is_stage_failed(
    cloud, put_catalog, load_completed, make_catalog, stored_events, sqs_event_for, monkeypatch
):
    monkeypatch.delenv(DSN_ENV, raising=False)
    put_catalog(sql_catalog(make_catalog))
    detail = load_completed()
    lambda_handler(sqs_event_for(detail))
    assert DSN_ENV in stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["message"]
