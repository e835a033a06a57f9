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

    fb = pd.DataFrame({"series": ["sales.t0/row_count"], "timestamp": df.loc[spike, "timestamp"].tolist(),
                       "label": ["normal"]})
    out2 = label_history(df, fb, LabelerConfig())
    assert out2.loc[spike, "label"].tolist() == [0]
    assert out2.loc[spike, "label_source"].tolist() == ["human"]
    assert out2["label"].dtype == "int8"


def test_human_anomaly_label_wins_on_quiet_point(loads_factory) -> None:
    df = loads_factory()
    p = _at(df, "sales.t1/sum_amount", "2024-03-05")
    fb = pd.DataFrame({"series": ["sales.t1/sum_amount"], "timestamp": df.loc[p, "timestamp"].tolist(),
                       "label": ["anomaly"]})
    out = label_history(df, fb, LabelerConfig())
    assert out.loc[p, ["label", "label_source"]].values.tolist() == [[1, "human"]]


def test_holiday_dip_and_month_end_surge_are_not_labelled(loads_factory) -> None:
    df = loads_factory()
    holiday = dt.date(2024, 2, 19)  # a Monday
    hol_rows = df.index[df["timestamp"].dt.date == holiday]
    df.loc[hol_rows, "value"] *= 0.2
    # month-end surge on the last business days of January and February
    me_rows = df.index[df["timestamp"].dt.date.isin([dt.date(2024, 1, 31), dt.date(2024, 2, 29)])]
    df.loc[me_rows, "value"] *= 1.8
    out = label_history(df, None, LabelerConfig(holidays=(holiday,)))
    assert out.loc[hol_rows, "label"].sum() == 0
    assert out.loc[me_rows, "label"].sum() == 0
    # without the calendar, the dip is an incident
    out2 = label_history(df, None, LabelerConfig())
    assert out2.loc[hol_rows, "label"].sum() == len(hol_rows)
    # an empty load on a holiday is still an incident
    empty = _at(df, "sales.t0/row_count", "2024-02-19")
    df.loc[empty, "value"] = 0.0
    out3 = label_history(df, None, LabelerConfig(holidays=(holiday,)))
    assert out3.loc[empty, "label"].tolist() == [1]


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


def test_a_holiday_value_an_ordinary_day_would_accept_is_not_an_anomaly() -> None:
    """A null percentage ignores the calendar: its holiday value is judged by its ordinary spread too.

    Noisy around 2 %, a holiday at 4.2 % is 2.1x the baseline, far beyond the holiday range's 1.5x
    (the range alone would call it an anomaly), but inside what ordinary days show: it is not
    labelled. A jump to 20 % on the holiday still is.
    """
    import numpy as np

    from dqad.detect.features import special_day_deviation, special_range_excess

    rng = np.random.default_rng(0)
    days = pd.date_range("2024-01-01 02:00", periods=120, freq="D")
    value = np.clip(2.0 + rng.normal(0, 0.6, len(days)), 0, None)
    holiday = dt.date(2024, 3, 18)
    at = int(np.flatnonzero(days.date == holiday)[0])
    df = pd.DataFrame({"series": "crm.users/null_pct", "group": "crm.users", "timestamp": days, "value": value})
    df.loc[at, "value"] = 4.2
    cfg = LabelerConfig(holidays=(holiday,))
    by_range_alone = special_range_excess(np.array([4.2]), np.array([2.0]), np.array([True]), np.array([False]),
                                          cfg.holiday_range, cfg.month_end_range) / 0.05
    assert by_range_alone[0] > cfg.mad_threshold
    out = label_history(df, None, cfg)
    assert out.loc[at, "label"] == 0
    df.loc[at, "value"] = 20.0
    out = label_history(df, None, LabelerConfig(holidays=(holiday,)))
    assert out.loc[at, "label"] == 1

    # the rule itself: the more tolerant judgement wins, NaN (no ordinary baseline) leaves it to the range
    one = np.array([True])
    z, _ = special_day_deviation(np.array([1.2]), np.array([0.6]), np.array([3.2]), np.array([2.0]), one, ~one,
                                 (0.05, 1.5), (0.6, 3.0))
    assert z[0] == pytest.approx(1.2)
    z, _ = special_day_deviation(np.array([np.nan]), np.array([np.nan]), np.array([3.2]), np.array([2.0]), one,
                                 ~one, (0.05, 1.5), (0.6, 3.0))
    assert z[0] > 0 and np.isfinite(z[0])
