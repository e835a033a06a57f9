"""Evaluation metrics on hand-made cases, and the backtest CLI end to end on a small file."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from dqad_dev.backtest import add_parser, read_series_file
from dqad_dev.evaluate import event_metrics, point_metrics, points_to_windows


def test_point_metrics() -> None:
    m = point_metrics(np.array([1, 1, 0, 0, 1]), np.array([1, 0, 1, 0, 1]))
    assert (m["precision"], m["recall"]) == (2 / 3, 2 / 3)
    assert abs(m["f1"] - 2 / 3) < 1e-12
    assert point_metrics(np.zeros(3), np.zeros(3))["f1"] == 0.0


def test_event_metrics_runs_and_windows() -> None:
    ts = pd.date_range("2024-01-01", periods=20, freq="h")
    alarms = np.zeros(20, dtype=bool)
    alarms[[2, 3, 4]] = True   # one run inside window A -> 1 true run
    alarms[[10]] = True        # a false run
    alarms[[15, 16]] = True    # a run touching window B at its end -> true
    scored = pd.DataFrame({"series": "s", "timestamp": ts, "is_anomaly": alarms})
    windows = pd.DataFrame({
        "series": ["s", "s", "s", "other"],
        "start": [ts[1], ts[14], ts[18], ts[0]],
        "end": [ts[3], ts[15], ts[19], ts[5]],
    })
    m = event_metrics(scored, windows)
    assert m["alarm_runs"] == 3 and m["true_runs"] == 2
    assert abs(m["precision"] - 2 / 3) < 1e-12
    # windows of series "other" are not in the scored data: not counted; 2 of 3 found
    assert m["windows"] == 3 and m["found"] == 2
    assert abs(m["recall"] - 2 / 3) < 1e-12


def test_points_to_windows() -> None:
    ts = pd.date_range("2024-01-01", periods=6, freq="D")
    pts = pd.DataFrame({"series": "s", "timestamp": ts, "is_anomaly": [0, 1, 1, 0, 1, 0]})
    w = points_to_windows(pts)
    assert list(w["start"]) == [ts[1], ts[4]]
    assert list(w["end"]) == [ts[2], ts[4]]


def test_backtest_cli_end_to_end(tmp_path, loads_factory, capsys) -> None:
    df = loads_factory(days=100, tables=2)
    # one incident per series, on different days, all after the history part
    bad = [df.index[(df["series"] == s) & (df["timestamp"].dt.normalize() == pd.Timestamp("2024-02-01")
                                           + pd.Timedelta(days=9 * i))][0]
           for i, s in enumerate(sorted(df["series"].unique()))]
    df.loc[bad, "value"] *= 0.05
    data = tmp_path / "data.csv.gz"
    df[["series", "timestamp", "value"]].to_csv(data, index=False)
    labels = tmp_path / "labels.csv"
    df.loc[bad, ["series", "timestamp"]].assign(is_anomaly=1).to_csv(labels, index=False)

    parser = argparse.ArgumentParser(prog="dqad")
    add_parser(parser.add_subparsers(dest="cmd"))
    out = tmp_path / "out"
    args = parser.parse_args(["backtest", "--data", str(data), "--labels", str(labels), "--out", str(out),
                              "--group-by-prefix", "--chunks", "2",
                              "--detector-config", '{"n_estimators": 10, "cv_folds": 2}'])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "dqad" in printed and "3-sigma" in printed and "iforest" in printed
    scores = read_series_file(out / "scores.csv")
    assert list(scores.columns) == ["series", "timestamp", "value", "score", "is_anomaly",
                                    "expected_low", "expected_high"]
    assert len(scores) == len(df) - int((df.groupby("series").size() * 0.15).apply(np.ceil).sum())
    metrics = json.loads((out / "metrics.json").read_text())
    ev = metrics["dqad"]["event"]
    assert ev["windows"] == 6 and ev["recall"] >= 5 / 6
    assert ev["precision"] >= 0.5
    # parquet input reads the same
    pq = tmp_path / "data.parquet"
    df[["series", "timestamp", "value"]].to_parquet(pq)
    assert len(read_series_file(pq)) == len(df)


def test_backtest_holidays_country_joins_the_given_dates() -> None:
    import datetime as dt

    import pytest

    from dqad_dev.backtest import holidays_from_args

    data = pd.DataFrame({"series": "a", "timestamp": pd.to_datetime(["2026-01-01", "2026-12-31"]), "value": 1.0})
    ns = argparse.Namespace(holidays="2026-12-24", holidays_country="US", holidays_subdivision="NY")
    hol = holidays_from_args(ns, data)
    assert "2026-12-24" in hol and "2026-11-26" in hol and "2026-02-12" in hol  # NY: Lincoln's Birthday
    assert hol == sorted(hol) and all(dt.date.fromisoformat(h) for h in hol)
    plain = argparse.Namespace(holidays="2026-12-24", holidays_country=None, holidays_subdivision=None)
    assert holidays_from_args(plain, data) == ["2026-12-24"]
    with pytest.raises(ValueError, match="needs --holidays-country"):
        holidays_from_args(argparse.Namespace(holidays=None, holidays_country=None, holidays_subdivision="NY"), data)
