"""Bad data through the real chain: each case ends in its documented outcome (docs/operations.md, "Bad data").

Each case rewrites the dataset's source (the baseline's, with its trained champion, so no training
is needed) in one way an upstream metrics job can go wrong, inserts the latest load's log row and
runs the chain. The outcome is one of: ``notified`` (scored, possibly with anomalies), ``failed``
(one StageFailed naming the problem, the record in the DLQ) or ``no run`` (nothing new to score:
a warning in the log, no event after LoadCompleted).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from dqad_dev.loadtest import outcomes, run_results, start_loads

pytestmark = pytest.mark.slow

SOURCE = "sources/ds000/metrics.parquet"


def _last(frame: pd.DataFrame) -> pd.Series:
    return frame["load_ts"].dt.date == frame["load_ts"].max().date()


def empty(f: pd.DataFrame) -> pd.DataFrame:
    return f.iloc[0:0]


def all_nan(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(metric_value=np.nan)


def missing_column(f: pd.DataFrame) -> pd.DataFrame:
    return f.drop(columns=["metric_value"])


def non_numeric(f: pd.DataFrame) -> pd.DataFrame:
    text = f["metric_value"].map(repr)
    text.iloc[-1] = "n/a"
    return f.assign(metric_value=text)


def duplicated_key_timestamp(f: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([f, f[_last(f)]], ignore_index=True)


def mixed_time_zones(f: pd.DataFrame) -> pd.DataFrame:
    """The same instants, half written in UTC and half in UTC+02:00 (as text, as a CSV export would)."""
    ts = f["load_ts"].dt.tz_localize("UTC")
    text = [(t.tz_convert("Europe/Paris") if i % 2 else t).isoformat() for i, t in enumerate(ts)]
    return f.assign(load_ts=text)


def one_point_series(f: pd.DataFrame) -> pd.DataFrame:
    """A series born with this load: its only point is the new one."""
    extra = f[_last(f)].head(1).assign(metric_name="brand_new_metric")
    return pd.concat([f, extra], ignore_index=True)


def constant_series(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(metric_value=42.0)


# case -> (transform, outcome, what the run's scores must show: None = not checked)
CASES = {
    "empty": (empty, "no data", None),
    "all_nan": (all_nan, "notified", "every new point flagged"),
    "missing_column": (missing_column, "failed", "metric_value"),
    "non_numeric": (non_numeric, "failed", "not numeric: 'n/a'"),
    "duplicated_key_timestamp": (duplicated_key_timestamp, "notified", "baseline anomalies"),
    "mixed_time_zones": (mixed_time_zones, "notified", "baseline anomalies"),
    "one_point_series": (one_point_series, "notified", "baseline anomalies"),
    "constant_series": (constant_series, "notified", "no anomaly"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_has_its_documented_outcome(chain, baseline, case: str) -> None:
    cloud, storage = chain
    transform, expected, shows = CASES[case]
    metrics = pd.read_parquet(io.BytesIO(storage.get_bytes(storage.uri(SOURCE))))
    buf = io.BytesIO()
    transform(metrics).to_parquet(buf, index=False)
    storage.put_bytes(storage.uri(SOURCE), buf.getvalue())
    (run_id,) = start_loads(cloud, baseline.loads[1:])
    cloud.pump(deadline_s=120)
    got = outcomes(storage, [run_id])[run_id]

    if expected == "no data":  # no run downstream, but the operator is told (never a silent end)
        assert got.failures == ["StageFailed-fetcher.json"] and cloud.dead_letters("fetcher") == []
        (operator,) = cloud.inbox()
        assert operator["MessageAttributes"]["kind"]["Value"] == "operator" and "NoNewData" in operator["Message"]
        return
    if expected == "failed":
        assert got.failures == ["StageFailed-fetcher.json"]
        (parked,) = cloud.dead_letters("fetcher", expect=1)
        assert shows in parked["MessageAttributes"]["error"]["StringValue"]
        (operator,) = cloud.inbox()
        assert operator["MessageAttributes"]["kind"]["Value"] == "operator"
        return
    assert got.kind == "notified"
    result = run_results(cloud, storage, [run_id])[run_id]
    want = baseline.runs[run_id]
    if shows == "baseline anomalies":
        assert result.anomalies == want.anomalies and result.emails == 1
    elif shows == "no anomaly":
        assert result.anomalies == set() and result.emails == 0
    else:
        scores = storage.read_parquet(storage.uri(f"runs/ds000/{run_id}/scores.parquet"))
        assert len(result.anomalies) == len(scores) > 0 and result.emails == 1
