"""The fetcher's file and Redshift Data API sources, end to end on the embedded deployment (moto).

moto's Redshift Data API statements never finish by themselves: the poller's ``sleep`` is injected
and drives the statement in moto's backend (FINISHED after writing the Parquet part UNLOAD would
have written, FAILED with an error, or never, for the timeout).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable

import pandas as pd
import pytest
from moto.redshiftdata.models import redshiftdata_backends

from dqad.contract import DatasetFetched
from dqad.stage import PermanentError
from dqad_dev.local import ACCOUNT, REGION
from dqad_fetcher import domain
from dqad_fetcher.handler import lambda_handler

ROLE = "arn:aws:iam::123456789012:role/dqad-unload"


def _check_split(storage, event: DatasetFetched, frame: pd.DataFrame, new_window_hours: int = 24) -> None:
    """history + new hold exactly the frame's rows in the window, split at new_start, values intact."""
    history = storage.read_parquet(event.history)
    new = storage.read_parquet(event.new)
    cut = event.window.new_start.replace(tzinfo=None)
    start = event.window.history_start.replace(tzinfo=None)
    end = event.window.new_end.replace(tzinfo=None)
    in_window = frame[(frame["load_ts"] >= start) & (frame["load_ts"] < end)]
    assert len(history) + len(new) == len(in_window)
    assert (history["timestamp"] < cut).all() and (new["timestamp"] >= cut).all()
    assert len(new) == (in_window["load_ts"] >= cut).sum() > 0
    both = pd.concat([history, new])
    assert set(both["series"]) == set(in_window["table_name"] + "/" + in_window["metric_name"])
    assert both["value"].sum() == pytest.approx(in_window["metric_value"].sum())
    assert set(both.columns) >= {"series", "group", "timestamp", "value", "table_name", "metric_name"}


@pytest.mark.parametrize("fmt", ["parquet", "csv", "csv.gz"])
def test_file_source_formats(fmt, cloud, storage, put_catalog, load_completed, make_catalog, make_metrics):
    frame = make_metrics(days=40)
    uri = storage.uri(f"sources/fx/metrics.{fmt}")
    if fmt == "parquet":
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        storage.put_bytes(uri, buf.getvalue())
    else:
        text = frame.to_csv(index=False).encode()
        storage.put_bytes(uri, gzip.compress(text) if fmt.endswith("gz") else text)
    rt = put_catalog(make_catalog(f'kind = "file"\npath = "{uri}"'))

    event = domain.fetch(rt, load_completed())

    assert event is not None
    _check_split(storage, event, frame)
    # 30 history days + the 1-day new window of 40 generated: the rest was outside the window
    assert event.history.rows == 3 * 2 * 30 and event.new.rows == 3 * 2


def test_file_source_series_timestamp_value_form(cloud, storage, put_catalog, load_completed, tmp_path):
    """The simplest file form, `series,timestamp,value`, from a local path."""
    ts = pd.date_range(end="2026-11-02 06:00", periods=10, freq="D")
    frame = pd.DataFrame({"series": ["a"] * 10 + ["b"] * 10, "timestamp": list(ts) * 2, "value": range(20)})
    path = tmp_path / "nab.csv"
    frame.to_csv(path, index=False)
    rt = put_catalog(
        f"""
[datasets.fx_dq]
keys = ["series"]
timestamp = "timestamp"
value = "value"
[datasets.fx_dq.trigger]
table_names = ["dq.metrics_daily"]
[datasets.fx_dq.source]
kind = "file"
path = "{path}"
"""
    )
    event = domain.fetch(rt, load_completed())
    assert event is not None and event.new.rows == 2 and event.history.rows == 18
    new = storage.read_parquet(event.new)
    assert sorted(new["series"]) == ["a", "b"] and sorted(new["value"]) == [9.0, 19.0]


def test_empty_new_data_means_no_downstream_run_and_an_operator_alert(
    cloud, storage, put_catalog, load_completed, make_catalog, make_metrics, stored_events, caplog
):
    frame = make_metrics(days=10)
    frame = frame[frame["load_ts"] < frame["load_ts"].max()]  # the load itself never arrived
    uri = storage.uri("sources/fx/metrics.parquet")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    storage.put_bytes(uri, buf.getvalue())
    rt = put_catalog(make_catalog(f'kind = "file"\npath = "{uri}"'))
    detail = load_completed()

    assert domain.fetch(rt, detail) is None

    assert "DatasetFetched.json" not in stored_events(detail.run_id)
    assert not list(storage.list_uris(storage.uri(f"runs/fx_dq/{detail.run_id}/")))  # nothing half-written
    failed = storage.get_json(storage.uri(f"events/{detail.run_id}/StageFailed-fetcher.json"))["detail"]
    assert failed["error_type"] == "NoNewData" and "are missing" in failed["message"]  # told, not silent
    assert any("no new data in the load's window" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("mutate", "column"),
    [
        (lambda f: f.drop(columns=["metric_value"]), "metric_value"),
        (lambda f: f.assign(metric_value=f["metric_value"].astype(str).where(f.index != 3, "twelve")), "metric_value"),
        (lambda f: f.assign(load_ts=f["load_ts"].astype(str).where(f.index != 5, "yesterday")), "load_ts"),
    ],
    ids=["missing-column", "non-numeric-value", "bad-timestamp"],
)
def test_schema_mismatch_is_stage_failed_naming_the_column(
    mutate,
    column,
    cloud,
    storage,
    put_catalog,
    load_completed,
    make_catalog,
    make_metrics,
    stored_events,
    sqs_event_for,
):
    frame = mutate(make_metrics(days=10))
    uri = storage.uri("sources/fx/metrics.csv")
    storage.put_bytes(uri, frame.to_csv(index=False).encode())
    put_catalog(make_catalog(f'kind = "file"\npath = "{uri}"'))
    detail = load_completed()

    result = lambda_handler(sqs_event_for(detail))

    assert result == {"batchItemFailures": []}  # permanent: not retried, parked in the DLQ
    failed = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]
    assert failed["error_type"] == "PermanentError"
    assert f"column {column!r}" in failed["message"]
    assert len(cloud.dead_letters("fetcher", expect=1)) == 1


# -- Redshift Data API ---------------------------------------------------------------------------
def _backend():
    return redshiftdata_backends[ACCOUNT][REGION]


def _redshift_catalog(make_catalog, deadline: float = 60) -> str:
    return make_catalog(
        f"""kind = "redshift_data"
database = "warehouse"
cluster_identifier = "dq-cluster"
db_user = "dqad_reader"
unload_iam_role = "{ROLE}"
poll_deadline_s = {deadline}
poll_initial_s = 0.5
poll_max_interval_s = 4
query = "SELECT * FROM dq.metrics WHERE load_ts >= :history_start AND load_ts < :new_end AND t <> 'x'"
"""
    )


class FakeTime:
    """Clock + sleep for the poller: sleeping advances the clock and lets the test act on the statement."""

    def __init__(self, on_sleep: Callable[[int], None] = lambda n: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep(len(self.sleeps))


def test_redshift_unload_finished(cloud, storage, put_catalog, load_completed, make_catalog, make_metrics):
    frame = make_metrics(days=40)
    rt = put_catalog(_redshift_catalog(make_catalog))
    detail = load_completed()
    unload = storage.uri(f"runs/fx_dq/{detail.run_id}/unload/")
    storage.put_bytes(unload + "stale_part_00.parquet", b"left by an earlier attempt")

    def on_sleep(n: int) -> None:
        (statement,) = _backend().statements.values()
        if n == 1:
            assert statement.status == "STARTED"
            assert not list(storage.list_uris(unload))  # the stale part was removed before the UNLOAD
        if n == 3:  # what Redshift would do: write parts under the prefix, then report FINISHED
            for i, part in enumerate((frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])):
                buf = io.BytesIO()
                part.to_parquet(buf, index=False)
                storage.put_bytes(f"{unload}000{i}_part_00.parquet", buf.getvalue())
            statement.status = "FINISHED"

    fake = FakeTime(on_sleep)
    event = domain.fetch(rt, detail, sleep=fake.sleep, clock=fake.clock)

    assert event is not None
    _check_split(storage, event, frame)
    assert fake.sleeps == [0.5, 1.0, 2.0]  # backoff
    (statement,) = _backend().statements.values()
    assert statement.cluster_identifier == "dq-cluster" and statement.db_user == "dqad_reader"
    assert statement.database == "warehouse" and not statement.secret_arn
    sql = statement.query_string
    assert sql.startswith("UNLOAD ('SELECT * FROM dq.metrics WHERE")
    assert f"TO '{unload}' IAM_ROLE '{ROLE}' FORMAT AS PARQUET" in sql
    hs = event.window.history_start.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert f"load_ts >= TIMESTAMP ''{hs}''" in sql and "t <> ''x''" in sql
    assert ":history_start" not in sql and ":new_end" not in sql
    assert not list(storage.list_uris(unload))  # parts removed once read


def test_redshift_statement_failed_is_stage_failed_with_statement_id(
    cloud, storage, put_catalog, load_completed, make_catalog, stored_events, sqs_event_for, monkeypatch
):
    put_catalog(_redshift_catalog(make_catalog))
    detail = load_completed()

    def fail(n: int) -> None:
        (statement,) = _backend().statements.values()
        statement.status = "FAILED"
        # moto's Statement has no error text; Redshift's describe_statement carries one
        monkeypatch.setattr(type(statement), "__iter__", _with_error(type(statement).__iter__), raising=True)

    fake = FakeTime(fail)
    monkeypatch.setattr(domain, "POLL_SLEEP", fake.sleep)  # the SQS handler path uses the module's pacing
    monkeypatch.setattr(domain, "POLL_CLOCK", fake.clock)

    assert lambda_handler(sqs_event_for(detail)) == {"batchItemFailures": []}

    (statement,) = _backend().statements.values()
    failed = stored_events(detail.run_id)["StageFailed-fetcher.json"]["detail"]
    assert "FAILED" in failed["message"] and "relation dq.metrics does not exist" in failed["message"]
    assert f"(statement {statement.id})" in failed["message"]


def _with_error(original):
    def iterate(self):
        yield from original(self)
        yield "Error", "ERROR: relation dq.metrics does not exist"

    return iterate


def test_redshift_timeout_cancels_and_names_the_statement(cloud, put_catalog, load_completed, make_catalog):
    rt = put_catalog(_redshift_catalog(make_catalog, deadline=20))
    fake = FakeTime()  # never finishes

    with pytest.raises(PermanentError) as info:
        domain.fetch(rt, load_completed(), sleep=fake.sleep, clock=fake.clock)

    (statement,) = _backend().statements.values()
    assert statement.status == "ABORTED"  # cancel_statement was called
    assert f"(statement {statement.id})" in str(info.value) and "after 20s" in str(info.value)
    assert sum(fake.sleeps) == pytest.approx(20) and max(fake.sleeps) <= 4


def test_redshift_workgroup_and_secret_credentials(cloud, storage, put_catalog, load_completed, make_catalog):
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dq-reader-AbCdEf"
    rt = put_catalog(
        make_catalog(
            f"""kind = "redshift_data"
database = "warehouse"
workgroup_name = "dq-serverless"
secret_arn = "{secret}"
unload_iam_role = "{ROLE}"
query = "SELECT table_name, metric_name, load_ts, metric_value FROM dq.metrics WHERE load_ts < %(new_end)s"
"""
        )
    )

    def finish_empty(n: int) -> None:
        (statement,) = _backend().statements.values()
        statement.status = "FINISHED"  # an UNLOAD of no rows writes no part

    fake = FakeTime(finish_empty)
    assert domain.fetch(rt, load_completed(), sleep=fake.sleep, clock=fake.clock) is None
    (statement,) = _backend().statements.values()
    assert statement.secret_arn == secret and not statement.db_user
    assert "load_ts < TIMESTAMP ''" in statement.query_string
