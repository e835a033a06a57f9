"""Alarm rules: per-series calibration on the history, sub-daily margin, one alert per incident."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig
from dqad.detect.alarm import (
    SeriesCalibration,
    budget_threshold,
    calibrate_series,
    count_incidents,
    decide,
    explicit_feedback,
    odds_scale,
    suppress_continuing,
)
from dqad.detect.model import ModelBundle, RobustDetector

CFG = DetectorConfig()


def _hist(n: int, step: str, series: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History frame and the mature-point features calibration reads."""
    ts = pd.date_range("2024-01-01", periods=n, freq=step)
    frame = pd.DataFrame({"series": series, "timestamp": ts})
    feats = pd.DataFrame({"seas_n": np.full(n, 8.0), "n_hist": np.arange(n, dtype=float) + CFG.scale_window,
                          "is_daily": float(step == "D")})
    return frame, feats


def test_count_incidents_merges_alarms_closer_than_the_gap() -> None:
    t = np.array([0.0, 10.0, 20.0, 1000.0, 5000.0])
    assert count_incidents(t, 100.0) == 3
    # an alarm every 60 s for 10 minutes re-alerts every 300 s: 0, 300, 600
    assert count_incidents(np.arange(11) * 60.0, 300.0) == 3
    assert count_incidents(t, 1.0) == 5
    assert count_incidents(np.array([]), 1.0) == 0


def test_budget_threshold_allows_at_most_the_budgeted_incidents() -> None:
    t = np.arange(10) * 86400.0  # ten days, one point a day
    s = np.array([0.1, 0.9, 0.1, 0.8, 0.1, 0.7, 0.1, 0.6, 0.1, 0.55])
    assert budget_threshold(s, t, 0.5, allowed=2, gap_s=3600) == 0.8  # 0.9 and 0.8 only
    assert budget_threshold(s, t, 0.5, allowed=10, gap_s=3600) == 0.5  # budget never binds
    # with a 3-day re-alert gap the alarms of days 1 and 3 are one alert, days 5 and 7 another
    assert budget_threshold(s, t, 0.5, allowed=2, gap_s=3 * 86400) == 0.6
    assert budget_threshold(s, t, 0.5, allowed=1, gap_s=3 * 86400) == 0.8


def test_noisy_subdaily_series_gets_a_higher_threshold_than_a_quiet_one() -> None:
    rng = np.random.default_rng(0)
    f1, x1 = _hist(2000, "5min", "noisy")
    f2, x2 = _hist(2000, "5min", "quiet")
    s1 = np.clip(rng.uniform(0.0, 0.8, 2000), 0, 1)  # many points well above the global 0.5
    s2 = np.clip(rng.uniform(0.0, 0.3, 2000), 0, 1)
    cal = calibrate_series(np.r_[s1, s2], pd.concat([f1, f2], ignore_index=True),
                           pd.concat([x1, x2], ignore_index=True), 0.5, CFG)
    assert cal.thresholds["noisy"] > odds_scale(0.79, 1.0)  # above (almost) all of its history
    assert cal.thresholds["quiet"] == 0.5  # a quiet history keeps the global threshold
    assert cal.step_s["noisy"] == 300.0
    # the rule in numbers: the history itself would now alarm at most once (budget 1/7 a day, 7 days)
    assert (s1 >= cal.thresholds["noisy"]).sum() <= 1


def test_warm_up_and_human_anomalies_do_not_raise_the_threshold() -> None:
    frame, feats = _hist(600, "h", "s")
    s = np.full(600, 0.2)
    s[:10] = 0.95  # warm-up: baselines not mature yet
    feats.loc[:9, "seas_n"] = 0
    s[300:310] = 0.9  # an incident a human labelled
    frame["label"] = 0
    frame["label_source"] = "none"
    frame.loc[300:309, ["label", "label_source"]] = [1, "human"]
    cal = calibrate_series(s, frame, feats, 0.5, CFG)
    # the human-labelled incident is not noise, and it shows where this series' incidents lie
    assert cal.thresholds["s"] <= 0.9
    assert cal.thresholds["s"] >= 0.5


def test_human_labelled_incident_above_the_noise_lowers_the_threshold() -> None:
    frame, feats = _hist(2000, "5min", "s")
    rng = np.random.default_rng(1)
    s = rng.uniform(0.0, 0.7, 2000)
    s[1000:1010] = 0.75  # just above the noise: the margin alone would mute it
    base = calibrate_series(s, frame, feats, 0.5, CFG).thresholds["s"]
    frame["label"] = 0
    frame["label_source"] = "human"
    frame.loc[1000:1009, "label"] = 1
    taught = calibrate_series(s, frame, feats, 0.5, CFG).thresholds["s"]
    assert 0.7 < taught < 0.75 < base


def test_one_alert_per_incident_on_subdaily_data_but_every_bad_daily_load() -> None:
    ts5 = pd.date_range("2024-01-01", periods=6, freq="5min")
    tsd = pd.date_range("2024-01-01", periods=3, freq="D")
    series = np.array(["fast"] * 6 + ["daily"] * 3)
    t = np.r_[ts5.to_numpy().astype("datetime64[s]"), tsd.to_numpy().astype("datetime64[s]")].astype(float)
    alarm = np.array([True, True, False, True, False, False, True, True, True])
    out = suppress_continuing(alarm, series, t, 24 * 3600.0)
    assert out.tolist() == [True, False, False, False, False, False, True, True, True]
    # causal: the decision on a point does not change when later points are added
    assert suppress_continuing(alarm[:2], series[:2], t[:2], 24 * 3600.0).tolist() == [True, False]


def test_decide_uses_series_thresholds_and_subdaily_margin() -> None:
    cal = SeriesCalibration(thresholds={"noisy": 0.8}, step_s={"noisy": 300.0, "new": 300.0, "day": 86400.0})
    frame = pd.DataFrame({"series": ["noisy", "noisy", "new", "day"],
                          "timestamp": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-01", "2024-01-01"])})
    score = np.array([0.7, 0.85, 0.55, 0.55])
    got = decide(score, 0.5, CFG, cal, frame=frame)
    # 0.7 < noisy's 0.8; 0.55 < the margin-raised global threshold of an uncalibrated 5-minute series
    assert got.tolist() == [False, True, False, True]
    # without the frame: global threshold, sub-daily margin from the is_daily feature
    feats = pd.DataFrame({"is_daily": [0.0, 0.0, 0.0, 1.0]})
    assert decide(score, 0.5, CFG, None, features=feats).tolist() == [True, True, False, True]


def test_bundle_decide_and_old_bundles_without_calibration() -> None:
    b = ModelBundle(estimator=RobustDetector(CFG), feature_names=[], threshold=0.5, cfg=CFG, trained_at="",
                    metrics={}, kind="robust")
    assert b.decide(np.array([0.4, 0.6]), None).tolist() == [False, True]
    del b.__dict__["calibration"]  # a bundle pickled before the field existed
    assert b.decide(np.array([0.6]), None, frame=pd.DataFrame({"series": ["x"], "timestamp": [pd.Timestamp(0)]}))[0]


def test_config_validates_margins() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(calibration_margin=0.5)


def test_short_history_allows_no_incident_within_the_budget() -> None:
    # 2 days of 5-minute history with one spike: a budget of one a week allows 2/7 incidents, so none
    frame, feats = _hist(576, "5min", "spiky")
    score = np.full(576, 0.2)
    score[300] = 0.9
    cal = calibrate_series(score, frame, feats, 0.5, CFG)
    assert cal.thresholds["spiky"] > 0.9


def test_a_point_confirmed_normal_mutes_its_twin_in_its_direction_only() -> None:
    frame, feats = _hist(120, "D", "crm.customers/null_pct")
    rng = np.random.default_rng(3)
    score = rng.uniform(0.05, 0.3, 120)
    z = rng.normal(0, 1, 120)
    score[100], z[100] = 0.89, 40.0  # a spike up that a human called normal (a planned migration)
    frame["label"] = 0
    frame["label_source"] = np.where(np.arange(120) == 100, "human", "seasonal_rule")
    feats["seas_z"] = z
    cal = calibrate_series(score, frame, feats, 0.5, CFG)
    assert cal.confirmed_up == {"crm.customers/null_pct": pytest.approx(odds_scale(0.89, 1.1))}
    assert cal.confirmed_down == {}
    new = pd.DataFrame({"series": "crm.customers/null_pct", "timestamp": pd.date_range("2024-06-01", periods=2)})
    twin_up = pd.DataFrame({"seas_z": [38.0, -38.0], "is_daily": 1.0})
    alarms = decide(np.array([0.88, 0.88]), 0.5, CFG, cal, features=twin_up, frame=new)
    assert alarms.tolist() == [False, True]  # the same spike again is expected; a drop as large is not
    # without features, the direction comes from the range the point was shown
    shown = new.assign(value=[9.0, 0.0], expected_low=[1.0, 1.0], expected_high=[3.0, 3.0])
    assert decide(np.array([0.88, 0.88]), 0.5, CFG, cal, frame=shown).tolist() == [False, True]


def test_a_complete_labels_file_does_not_mute_a_series() -> None:
    """A complete labels file calls all of a history normal, its noisiest point too: no rule 3 there."""
    frame, feats = _hist(120, "D", "s")
    score = np.random.default_rng(4).uniform(0.05, 0.3, 120)
    score[60] = 0.9
    frame["label"], frame["label_source"] = 0, "human"
    feats["seas_z"] = 1.0
    cal = calibrate_series(score, frame, feats, 0.5, CFG)
    assert cal.confirmed_up == {} and cal.confirmed_down == {}
    # explicit feedback on that one point does mute its twin
    frame["label_source"] = np.where(np.arange(120) == 60, "human", "seasonal_rule")
    assert calibrate_series(score, frame, feats, 0.5, CFG).confirmed_up == {"s": pytest.approx(odds_scale(0.9, 1.1))}


def test_a_labels_file_of_the_early_history_stays_a_labels_file_as_the_history_grows() -> None:
    """Its share is read over the span it labels: as a share of the whole history it fell below one
    half after a few retrains, and its "normal" then raised the series' threshold."""
    for n in (120, 400, 2000):  # the same 60 labelled loads, an ever longer history
        series = np.array(["file"] * n + ["feedback"] * n)
        t = np.tile(np.arange(n, dtype=float), 2)
        human = np.zeros(2 * n, dtype=bool)
        human[:60] = True  # the first 60 loads of "file", every one labelled
        human[[n + 10, n + 50, n + 90]] = True  # three alerts of "feedback" someone looked at
        explicit = explicit_feedback(series, human, t)
        assert not explicit[:n].any(), n
        assert explicit[n:].all(), n


def test_sparse_or_few_human_labels_are_explicit_feedback_in_any_row_order() -> None:
    rng = np.random.default_rng(0)
    n = 300
    t = np.arange(n, dtype=float)
    sparse = np.zeros(n, dtype=bool)
    sparse[::10] = True  # 30 verdicts spread over the whole history: under half their span
    few = np.zeros(n, dtype=bool)
    few[100:110] = True  # ten consecutive verdicts: fewer than a labels file has
    dense = np.zeros(n, dtype=bool)
    dense[100:200:2] = True  # every other load of a stretch: a labels file
    series = np.repeat(np.array(["sparse", "few", "dense"]), n)
    human = np.concatenate([sparse, few, dense])
    order = rng.permutation(3 * n)
    explicit = explicit_feedback(series[order], human[order], np.tile(t, 3)[order])
    by_series = pd.Series(explicit).groupby(series[order]).all()
    assert by_series.to_dict() == {"dense": False, "few": True, "sparse": True}
    assert explicit_feedback(series, np.zeros(3 * n, dtype=bool), np.tile(t, 3)).all()


def test_a_labelled_incident_keeps_its_share_of_the_alert_budget() -> None:
    """Taking a labelled incident out of the budget left its alert to the ordinary points: the
    threshold fell below the one the same history gives without labels, and labels added alarms."""
    n = 14 * 288  # two weeks of 5-minute loads: a budget of two alerts
    frame, feats = _hist(n, "5min", "s")
    s = np.random.default_rng(2).uniform(0.0, 0.5, n)
    s[500], s[3500] = 0.9, 0.8  # two ordinary spikes
    s[2000:2005] = 0.85  # an incident between them
    unlabelled = calibrate_series(s, frame, feats, 0.5, CFG).thresholds["s"]
    frame["label"] = 0
    frame["label_source"] = "none"
    frame.loc[2000:2004, ["label", "label_source"]] = [1, "human"]
    labelled = calibrate_series(s, frame, feats, 0.5, CFG).thresholds["s"]
    assert labelled == pytest.approx(unlabelled)
    assert labelled > 0.85 > 0.8  # the ordinary spike below the incident does not alert


def test_a_daily_load_that_ran_earlier_than_the_night_before_is_still_its_own_alert() -> None:
    # nightly loads at 01:05, then 01:01, then 01:04: the second is 23 h 56 min after the first
    ts = pd.to_datetime(["2024-03-29 01:05", "2024-03-30 01:01", "2024-03-31 01:04", "2024-04-01 01:02"])
    frame = pd.DataFrame({"series": "t/row_count", "timestamp": ts})
    cal = SeriesCalibration(thresholds={"t/row_count": 0.5}, step_s={"t/row_count": 86400.0})
    out = decide(np.array([0.9, 0.9, 0.9, 0.1]), 0.5, CFG, cal, frame=frame)
    assert out.tolist() == [True, True, True, False]


def test_the_budget_threshold_rises_continuously_as_a_history_nears_its_budget() -> None:
    """One history point crossing the global threshold by 0.004 moves the threshold a little, not by the margin."""
    frame, feats = _hist(24 * 15, "h", "s")  # just over two weeks: a budget of two incidents
    rng = np.random.default_rng(3)
    base_scores = rng.uniform(0.0, 0.3, len(frame))
    # two separate incidents' worth already near the top, a third point sits at the threshold
    base_scores[[30, 150]] = [0.62, 0.6]
    thresholds = []
    for third in (0.497, 0.501):
        s = base_scores.copy()
        s[280] = third
        thresholds.append(calibrate_series(s, frame, feats, 0.5, CFG).thresholds["s"])
    low, high = thresholds
    assert low >= 0.5 and high >= low
    # before, 0.501 made the budget bind at the global threshold and the margin lifted it to 0.6
    assert high - low < 0.01
    # and the margin still applies where the budget binds: above the third incident's score
    assert high > odds_scale(0.501, 1.0)
