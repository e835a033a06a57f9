"""The freshness check's memory on S3 (moto): conditional writes that merge instead of erasing, and
the local CSV form of the ETL log, with errors that name the line and the column."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dqad.freshness import LoadIncident
from dqad_dev.local import LocalCloud
from dqad_fetcher.freshness import FreshnessState
from dqad_fetcher.loadlog import FreshnessStore, LoadLogError, LogEntry, read_csv_log, render_csv_log

DUE = datetime(2026, 11, 7, 2, 15, tzinfo=UTC)
SPAN = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def test_a_write_on_a_stale_etag_merges_with_what_another_check_wrote(cloud: LocalCloud) -> None:
    store = FreshnessStore(cloud.client("s3"), cloud.dep.bucket)
    empty, etag = store.load("sales_dq")
    assert empty.open == {} and etag is None
    orders = LoadIncident(kind="late_load", table="sales.orders", due_at=DUE, missed=1).to_json()
    returns = LoadIncident(kind="missing_load", table="sales.returns", due_at=DUE, missed=2).to_json()
    store.save("sales_dq", FreshnessState({"sales.orders": orders}), None)  # the other check, first
    store.save("sales_dq", FreshnessState({"sales.returns": returns}), None)  # ours: If-None-Match fails, merged
    merged, etag = store.load("sales_dq")
    assert merged.open == {"sales.orders": orders, "sales.returns": returns} and etag


def test_csv_log_round_trips_and_bad_rows_are_named() -> None:
    entries = [LogEntry("sales.orders", "dq_sales", "SUCCESS", DUE, 1200), LogEntry("sales.x", "", "FAILED", DUE, None)]
    assert read_csv_log(render_csv_log(entries), *SPAN) == entries
    with pytest.raises(LoadLogError, match=r"load log CSV lacks column\(s\) loaded_at"):
        read_csv_log("table_name,status\nsales.orders,SUCCESS\n", *SPAN)
    with pytest.raises(LoadLogError, match="line 2: loaded_at is not a timestamp: 'yesterday'"):
        read_csv_log("table_name,status,loaded_at\nsales.orders,SUCCESS,yesterday\n", *SPAN)
    with pytest.raises(LoadLogError, match="line 2: row_count is not a number: 'many'"):
        read_csv_log("table_name,status,loaded_at,row_count\nsales.orders,SUCCESS,2026-11-07T02:15:00Z,many\n", *SPAN)
