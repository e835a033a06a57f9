"""Each labeling source: human overrides the rule; the seasonal rule catches a spike but not a holiday
or a month-end surge; consensus across the metrics of one load."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from dqad.detect import LabelerConfig, label_history


def _at(df: pd.DataFrame, series: str, day: str) -> pd.Index:
    return df.index[(df["series"] == series) & (df["timestamp"].dt.normalize() == pd.Timestamp(day))]


def test_seasonal_rule_catches_spike_and_human_overrides(loads_factory) -> None:
    df = loads_factory()
    spike = _at(df, "sales.t0/row_count", "2024-02-14")
    df.loc[spike, "value"] *= 3
    out = label_history(df, None, LabelerConfig())
    assert out.loc[spike, "label"].tolist() == [1]
    assert out.loc[spike, "label_source"].tolist() == ["seasonal_rule"]
    # the quiet rest of that series is not labelled
    rest = (df["series"] == "sales.t0/row_count") & ~df.index.isin(spike)
    assert out.loc[rest, "label"].sum() == 0

    fb = pd.DataFrame(
        {"series": ["sales.t0/row_count"], "timestamp": df.loc[spike, "timestamp"].tolist(), "label": ["normal"]}
    )
    out2 = label_history(df, fb, LabelerConfig())
    assert out2.loc[spike, "label"].tolist() == [0]
    assert out2.loc[spike, "label_source"].tolist() == ["human"]
    assert out2["label"].dtype == "int8"


def test_a_labels_files_normal_does_not_put_the_rules_outlier_back(loads_factory) -> None:
    """A complete labels file says "no incident here" of its normal points, not "expected": the spike
    the rule found stays labelled (out of the baselines), as without the file; its window's
    anomaly is the human's."""
    df = loads_factory()
    series = df["series"] == "sales.t0/row_count"
    spike = _at(df, "sales.t0/row_count", "2024-02-14")
    df.loc[spike, "value"] *= 3
    window = _at(df, "sales.t0/row_count", "2024-03-05")
    fb = pd.DataFrame({"series": df.loc[series, "series"], "timestamp": df.loc[series, "timestamp"]})
    fb["label"] = "normal"
    fb.loc[window, "label"] = "anomaly"
    out = label_history(df, fb, LabelerConfig())
    assert out.loc[spike, ["label", "label_source"]].values.tolist() == [[1, "seasonal_rule"]]
    assert out.loc[window, ["label", "label_source"]].values.tolist() == [[1, "human"]]
    rest = series & ~df.index.isin(spike) & ~df.index.isin(window)
    assert (out.loc[rest, "label_source"] == "human").all() and out.loc[rest, "label"].sum() == 0


def test_a_labels_files_normal_wins_on_a_calendar_day(loads_factory) -> None:
    """On a candidate calendar day the file's "normal" is the evidence of the day's effect: it wins."""
    df = loads_factory(days=240)
    series = df["series"] == "sales.t0/row_count"
    month_end = _at(df, "sales.t0/row_count", "2024-07-31")  # a Wednesday: every month-end category
    df.loc[month_end, "value"] *= 3
    assert label_history(df, None, LabelerConfig()).loc[month_end, "label"].tolist() == [1]
    fb = pd.DataFrame({"series": df.loc[series, "series"], "timestamp": df.loc[series, "timestamp"]})
    fb["label"] = "normal"
    out = label_history(df, fb, LabelerConfig())
    assert out.loc[month_end, ["label", "label_source"]].values.tolist() == [[0, "human"]]


def test_human_anomaly_label_wins_on_quiet_point(loads_factory) -> None:
    df = loads_factory()
    p = _at(df, "sales.t1/sum_amount", "2024-03-05")
    fb = pd.DataFrame(
        {"series": ["sales.t1/sum_amount"], "timestamp": df.loc[p, "timestamp"].tolist(), "label": ["anomaly"]}
    )
    out = label_history(df, fb, LabelerConfig())
    assert out.loc[p, ["label", "label_source"]].values.tolist() == [[1, "human"]]


def test_consensus_across_metrics_of_one_load(loads_factory) -> None:
    df = loads_factory()
    day = "2024-03-12"
    rows = df.index[(df["group"] == "sales.t0") & (df["timestamp"].dt.normalize() == pd.Timestamp(day))]
    # a partial load: every metric at ~85% - too small for the per-series rule on its own
    df.loc[rows, "value"] *= 0.86
    strict = LabelerConfig(mad_threshold=50.0, consensus_threshold=3.0, consensus_min_metrics=3)
    out = label_history(df, None, strict)
    assert set(out.loc[rows, "label_source"]) == {"consensus"}
    assert out.loc[rows, "label"].tolist() == [1, 1, 1]
    # the same dip on one metric alone is no consensus
    df2 = loads_factory()
    one = _at(df2, "sales.t0/row_count", day)
    df2.loc[one, "value"] *= 0.86
    out2 = label_history(df2, None, strict)
    assert out2.loc[one, "label"].tolist() == [0]


def test_stale_load_is_labelled_by_consensus(loads_factory) -> None:
    df = loads_factory()
    prev = df[df["timestamp"].dt.normalize() == pd.Timestamp("2024-03-20")].set_index("series")["value"]
    rows = df.index[(df["group"] == "sales.t1") & (df["timestamp"].dt.normalize() == pd.Timestamp("2024-03-21"))]
    df.loc[rows, "value"] = df.loc[rows, "series"].map(prev).to_numpy()
    out = label_history(df, None, LabelerConfig())
    assert out.loc[rows, "label"].tolist() == [1, 1, 1]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="mad_treshold"):
        LabelerConfig.from_dict({"mad_treshold": 3})
    cfg = LabelerConfig.from_dict({"holidays": ["2024-12-25"], "slots": ["dow"]})
    assert cfg.holidays == (dt.date(2024, 12, 25),)
