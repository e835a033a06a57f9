"""The ``sql`` source against the real PostgreSQL: COPY and server-side cursor methods, bound window, outcomes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest

from dqad.datasets import SqlSource
from dqad_fetcher import domain
from dqad_fetcher.handler import lambda_handler
from dqad_fetcher.sources import choose_method, client_side_query

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


# -- COPY (PostgreSQL) and cursor (Redshift's way) give the same run -------------------------------
TYPED = """
CREATE TABLE dq_typed (
    table_name text, metric_name varchar(40), part int4, load_ts timestamptz, metric_value double precision,
    is_rerun boolean, loaded_at timestamp, job_name text
);
INSERT INTO dq_typed
SELECT (ARRAY['s.t0', 's,comma', 's"quote', E'multi\\nline', 'naïve'])[1 + i % 5],
       CASE WHEN i % 11 = 0 THEN NULL WHEN i % 13 = 0 THEN '' ELSE 'm' || (i % 3) END,
       i % 4,
       TIMESTAMPTZ '2026-11-02 06:00:00+00' - make_interval(hours => i) + make_interval(secs => (i % 7) / 1e6),
       CASE i % 17 WHEN 0 THEN 'NaN' WHEN 1 THEN NULL WHEN 2 THEN 'Infinity' ELSE 0.1 * i + 0.2 END,
       CASE WHEN i % 5 = 0 THEN NULL ELSE i % 2 = 0 END,
       CASE WHEN i = 7 THEN TIMESTAMP 'infinity'
            ELSE TIMESTAMP '2026-11-02 06:00:00' - make_interval(hours => i) + make_interval(mins => 5) END,
       'job ' || (i % 2)
FROM generate_series(0, 999) AS i;
"""


def typed_catalog(method: str, dataset: str, query: str = "SELECT * FROM dq_typed WHERE load_ts < %(new_end)s") -> str:
    return f"""
[datasets.{dataset}]
keys = ["table_name", "metric_name", "part"]
timestamp = "load_ts"
value = "metric_value"
group = ["table_name"]
context = ["is_rerun", "loaded_at", "job_name"]
history_days = 60
[datasets.{dataset}.trigger]
table_names = ["dq.metrics_daily"]
[datasets.{dataset}.source]
kind = "sql"
dsn_env = "{DSN_ENV}"
chunk_rows = 1000
fetch_method = "{method}"
query = "{query}"
"""


def test_copy_and_cursor_methods_write_identical_runs(pg_dsn, cloud, storage, put_catalog, load_completed, monkeypatch):
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(TYPED)
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    frames = {}
    for method in ("auto", "copy", "cursor"):
        rt = put_catalog(typed_catalog(method, f"typed_{method}"))
        event = domain.fetch(rt, load_completed(dataset=f"typed_{method}"))
        assert event is not None and event.history.rows + event.new.rows == 1000
        frames[method] = pd.concat([storage.read_parquet(event.history), storage.read_parquet(event.new)])
    pd.testing.assert_frame_equal(frames["copy"], frames["cursor"])
    pd.testing.assert_frame_equal(frames["auto"], frames["copy"])
    both = frames["copy"]
    assert set(both["table_name"]) == {"s.t0", "s,comma", 's"quote', "multi\nline", "naïve"}
    assert both["metric_name"].isna().sum() == 91 and (both["metric_name"] == "").sum() == 70  # NULL ≠ ''
    assert both["value"].isna().sum() == 118 and both["value"].eq(float("inf")).sum() == 59  # NaN → null
    assert both["is_rerun"].dtype == bool and both["load_delay_s"].isna().sum() == 1  # 'infinity' → null
    assert both.loc[both["load_delay_s"].notna(), "load_delay_s"].round(6).isin([300 - s / 1e6 for s in range(7)]).all()
    assert "s.t0/m1/1" in set(both["series"])


def test_numeric_values_and_unused_array_columns_read_the_same_on_both_methods(
    pg_dsn, cloud, storage, put_catalog, load_completed, monkeypatch
):
    """numeric is the usual type of a metric value (parsed correctly rounded on both paths), and a
    ``SELECT *`` may bring columns the dataset never reads (arrays, JSON): they must not fail a run."""
    from decimal import Decimal

    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE dq_typed AS SELECT 's.t' || (i % 5) AS table_name, 'm' AS metric_name, i % 4 AS part,"
            " TIMESTAMPTZ '2026-11-02 06:00+00' - make_interval(hours => i) AS load_ts,"
            " (i * 1234.567891237 / 7)::numeric(20, 9) AS metric_value,"
            " ARRAY[i, NULL] AS tags, ARRAY[now(), NULL] AS seen, jsonb_build_object('i', i) AS extra,"
            " true AS is_rerun, TIMESTAMP '2026-11-02 06:00' AS loaded_at, 'job' AS job_name"
            " FROM generate_series(0, 1999) AS i"
        )
        exact = [float(Decimal(r[0])) for r in conn.execute("SELECT metric_value::text FROM dq_typed ORDER BY load_ts")]
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    frames = {}
    for method in ("copy", "cursor"):
        rt = put_catalog(typed_catalog(method, f"num_{method}"))
        event = domain.fetch(rt, load_completed(dataset=f"num_{method}"))
        assert event is not None
        frames[method] = pd.concat([storage.read_parquet(event.history), storage.read_parquet(event.new)])
    pd.testing.assert_frame_equal(frames["copy"], frames["cursor"], check_exact=True)
    assert set(frames["copy"]["value"]) <= set(exact)  # correctly rounded: float(Decimal(text))


def test_auto_method_is_copy_on_postgresql_and_cursor_on_redshift():
    src = SqlSource(kind="sql", dsn_env="X", query="SELECT 1")
    assert choose_method(src, 150020) == "copy"
    assert choose_method(src, 80002) == "cursor"  # Redshift reports server_version 8.0.2
    assert choose_method(src.model_copy(update={"fetch_method": "cursor"}), 150020) == "cursor"
    assert choose_method(src.model_copy(update={"fetch_method": "copy"}), 80002) == "copy"


def test_copy_query_binds_bounds_client_side_safely(pg_dsn):
    end = datetime(2026, 11, 2, 6, 0, 1, 250, tzinfo=UTC)
    with psycopg.connect(pg_dsn) as conn:
        text = client_side_query(conn, "SELECT 1 WHERE 'a%%' LIKE 'a%%' AND now() < %(new_end)s", {"new_end": end})
        assert text == "SELECT 1 WHERE 'a%' LIKE 'a%' AND now() < '2026-11-02 06:00:01.000250+00:00'::timestamptz"
        with pytest.raises(TypeError):
            client_side_query(conn, "SELECT %(new_end)s", {"new_end": "2026-11-02'; DROP TABLE x; --"})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            client_side_query(conn, "SELECT %(new_end)s", {"new_end": datetime(2026, 11, 2)})  # naive: ambiguous


def test_copy_query_with_percent_and_trailing_comment(
    pg_dsn, cloud, storage, put_catalog, load_completed, make_catalog, make_metrics, monkeypatch
):
    load_table(pg_dsn, make_metrics(tables=3, metrics=2, days=10))
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    query = f"{QUERY} AND table_name LIKE 's.t%%' AND table_name <> 's.t2' -- only two tables"
    rt = put_catalog(sql_catalog(make_catalog, query))

    event = domain.fetch(rt, load_completed())

    assert event is not None and (event.history.rows, event.new.rows) == (2 * 2 * 9, 2 * 2)


@pytest.mark.parametrize(
    ("select", "column"),
    [
        ("table_name, metric_name, load_ts, 'ten'::text AS metric_value", "metric_value"),
        ("table_name, metric_name, 'yesterday'::text AS load_ts, metric_value", "load_ts"),
        ("table_name, load_ts, metric_value", "metric_name"),
    ],
    ids=["non-numeric-value", "bad-timestamp", "missing-column"],
)
@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_sql_schema_mismatch_is_stage_failed_naming_the_column(
    select,
    column,
    method,
    pg_dsn,
    cloud,
    put_catalog,
    load_completed,
    make_catalog,
    make_metrics,
    stored_events,
    sqs_event_for,
    monkeypatch,
):
    load_table(pg_dsn, make_metrics())
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    query = f"SELECT {select} FROM dq_metrics WHERE load_ts < %(new_end)s"
    put_catalog(sql_catalog(make_catalog, query, f'fetch_method = "{method}"'))
    detail = load_completed()

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    failed = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]
    assert f"column {column!r}" in failed["message"]


@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_sql_window_without_new_rows_is_no_new_data(
    method, pg_dsn, cloud, storage, put_catalog, load_completed, make_catalog, make_metrics, stored_events, monkeypatch
):
    frame = make_metrics(days=10)
    load_table(pg_dsn, frame[frame["load_ts"] < frame["load_ts"].max()])  # the load itself never arrived
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    rt = put_catalog(sql_catalog(make_catalog, extra=f'fetch_method = "{method}"'))
    detail = load_completed()

    assert domain.fetch(rt, detail) is None

    assert not list(storage.list_uris(storage.uri(f"runs/fx_dq/{detail.run_id}/")))
    assert stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["error_type"] == "NoNewData"


def test_duplicate_column_names_are_refused_by_name(
    pg_dsn, cloud, put_catalog, load_completed, make_catalog, make_metrics, stored_events, sqs_event_for, monkeypatch
):
    load_table(pg_dsn, make_metrics())
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    put_catalog(sql_catalog(make_catalog, QUERY.replace("SELECT ", "SELECT load_ts, ")))
    detail = load_completed()

    lambda_handler(sqs_event_for(detail))

    assert (
        "column 'load_ts' more than once"
        in stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["message"]
    )


@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_bad_value_in_an_early_chunk_stops_the_stream(
    method, pg_dsn, cloud, storage, put_catalog, load_completed, make_catalog, stored_events, sqs_event_for, monkeypatch
):
    """The canonicalisation fails while the source is still streaming: the COPY (or cursor) is abandoned."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE dq_metrics AS SELECT 's.t' || (i % 50) AS table_name, 'm' AS metric_name,"
            " TIMESTAMPTZ '2026-11-02 06:00+00' - make_interval(mins => i) AS load_ts,"
            " CASE WHEN i = 10 THEN 'ten' ELSE i::text END AS metric_value FROM generate_series(0, 199999) AS i"
        )
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    put_catalog(sql_catalog(make_catalog, extra=f'fetch_method = "{method}"'))
    detail = load_completed()

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    failed = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]
    assert "column 'metric_value'" in failed["message"] and "'ten'" in failed["message"]
    assert not list(storage.list_uris(storage.uri(f"runs/fx_dq/{detail.run_id}/")))


@pytest.mark.parametrize("method", ["copy", "cursor"])
def test_sql_error_after_rows_were_streamed_is_stage_failed(
    method, pg_dsn, cloud, storage, put_catalog, load_completed, make_catalog, stored_events, sqs_event_for, monkeypatch
):
    """The server fails mid-stream (division by zero at row 5,000): the error keeps its SQLSTATE."""
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(
            "CREATE TABLE dq_metrics AS SELECT 's.t' || (i % 50) AS table_name, 'm' AS metric_name,"
            " TIMESTAMPTZ '2026-11-02 06:00+00' - make_interval(mins => i) AS load_ts, i AS n"
            " FROM generate_series(0, 9999) AS i"
        )
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    query = (
        "SELECT table_name, metric_name, load_ts, 1.0 / (n - 5000) AS metric_value FROM dq_metrics"
        " WHERE load_ts < %(new_end)s ORDER BY n"
    )
    put_catalog(sql_catalog(make_catalog, query, f'fetch_method = "{method}"'))
    detail = load_completed()

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    message = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]["message"]
    assert "[22012]" in message and "division by zero" in message and "(statement dqad_" in message
    assert not list(storage.list_uris(storage.uri(f"runs/fx_dq/{detail.run_id}/")))
