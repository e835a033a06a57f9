"""Acceptance: a 1,000,000-row metrics table in PostgreSQL fetched to Parquet on S3 over real HTTP.

S3 (and the bus) are moto's ``ThreadedMotoServer`` on a free local port, reached through
``AWS_ENDPOINT_URL``, so the fetch uploads through botocore's real HTTP stack exactly as on AWS.
The table is loaded with COPY by ``bench/fetch.py``'s loader (the benchmark measures the same path).
Rows and values are checked per series against the table itself.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import boto3
import pandas as pd
import psycopg
import pytest
from moto.server import ThreadedMotoServer

from dqad.contract import LoadCompleted, make_run_id
from dqad.stage import runtime
from dqad.storage import Storage
from dqad_dev.local import provision
from dqad_fetcher import domain

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROWS = 1_000_000


def _bench_module():
    path = Path(__file__).resolve().parents[3] / "bench" / "fetch.py"
    spec = importlib.util.spec_from_file_location("dqad_bench_fetch", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def moto_server(aws_env, monkeypatch):
    bench = _bench_module()
    port = bench.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    try:
        yield bench
    finally:
        server.stop()


def test_fetch_a_million_rows_to_s3_over_http(pg_dsn, moto_server, monkeypatch):
    bench = moto_server
    started = time.perf_counter()
    bench.load_table(pg_dsn, "big_metrics", ROWS)
    loaded = time.perf_counter()
    session = boto3.session.Session(region_name="us-east-1")
    dep = provision(session, "dqad-million")  # a prefix of its own: runtimes are cached per settings
    for key, value in dep.settings().to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DQAD_BENCH_DSN", pg_dsn)
    history_days = ROWS // bench.SERIES // 24 + 2
    session.client("s3").put_object(
        Bucket=dep.bucket,
        Key="config/datasets.toml",
        Body=bench.catalog({"big_dq": "big_metrics"}, history_days).encode(),
    )
    rt = runtime("fetcher")
    assert rt.storage.s3.meta.endpoint_url.startswith("http://127.0.0.1:")
    detail = LoadCompleted(
        run_id=make_run_id("big_dq", "1", bench.LOADED_AT),
        dataset="big_dq",
        log_id="1",
        table_name="big_metrics",
        loaded_at=bench.LOADED_AT,
        status="SUCCESS",
    )

    event = domain.fetch(rt, detail)
    fetched = time.perf_counter()

    assert event is not None
    assert event.history.rows + event.new.rows == ROWS
    assert event.new.rows == bench.SERIES * 24  # the load's 24 hourly points of every series
    storage = Storage(session.client("s3"), dep.bucket)
    assert event.history.uri.startswith(f"s3://{dep.bucket}/runs/big_dq/")
    both = pd.concat([storage.read_parquet(event.history), storage.read_parquet(event.new)])  # sha256 checked
    got = both.groupby("series")["value"].agg(["count", "sum"])
    with psycopg.connect(pg_dsn) as conn:
        expected = pd.DataFrame(
            conn.execute(
                "SELECT table_name || '/' || metric_name, count(*), sum(metric_value) FROM big_metrics GROUP BY 1"
            ).fetchall(),
            columns=["series", "count", "sum"],
        ).set_index("series")
    assert len(got) == len(expected) == bench.SERIES
    assert (got["count"] == expected.loc[got.index, "count"]).all()
    pd.testing.assert_series_equal(got["sum"], expected.loc[got.index, "sum"].astype(float), rtol=1e-12)
    cut = pd.Timestamp(event.window.new_start).tz_convert(None)
    assert (storage.read_parquet(event.new)["timestamp"] >= cut).all()
    print(f"COPY {loaded - started:.1f} s, fetch {fetched - loaded:.1f} s ({ROWS / (fetched - loaded):,.0f} rows/s)")
