"""Causality of features and scores, champion/challenger, robust fallback, the scorer's output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, build_features, label_history, score_new, train_candidates
from dqad.detect.model import (
    MIN_HUMAN_EVENTS,
    _human_events,
    _human_f1,
    _oof_rows,
    _time_folds,
    is_better,
    label_decision,
)

FAST = DetectorConfig(n_estimators=10, cv_folds=2, min_positive=5)


def test_features_are_causal(loads_factory) -> None:
    df = loads_factory(days=100)
    cut = df["timestamp"] < pd.Timestamp("2024-03-01")
    labels = pd.Series(0, index=df.index)
    full = build_features(df, FAST, labels=labels)
    early = build_features(df[cut], FAST, labels=labels[cut])
    assert list(full.columns) == list(early.columns)
    assert (full.dtypes == np.float32).all()
    assert not full.isna().any().any()
    pd.testing.assert_frame_equal(full.loc[early.index], early)
    # a future change cannot move an earlier feature
    df2 = df.copy()
    df2.loc[~cut, "value"] *= 5
    pd.testing.assert_frame_equal(build_features(df2, FAST, labels=labels).loc[early.index], early)


def test_labelled_anomalies_leave_baselines(loads_factory) -> None:
    df = loads_factory(days=90)
    s = df.index[df["series"] == "sales.t0/row_count"]
    df.loc[s[30:60], "value"] = 0.0  # a month-long incident
    lab = pd.Series(0, index=df.index)
    lab[s[30:60]] = 1
    with_l = build_features(df, FAST, labels=lab)
    without = build_features(df, FAST)
    after = s[60]
    # with the incident blanked out, the next normal point looks normal; without, it looks high
    assert abs(with_l.loc[after, "seas_z"]) < 3
    assert abs(with_l.loc[after, "z_w28"]) < 3
    assert without.loc[after, "z_w28"] > 10


@pytest.fixture
def trained(loads_factory):
    df = loads_factory(days=120, tables=3)
    rng = np.random.default_rng(1)
    idx = rng.choice(df.index[df["timestamp"] > pd.Timestamp("2024-01-20")], 30, replace=False)
    df.loc[idx, "value"] *= rng.choice([0.1, 3.0], 30)
    # a person confirmed the injected incidents: supervised candidates compete only with human labels
    feedback = df.loc[idx, ["series", "timestamp"]].assign(label="anomaly")
    labeled = label_history(df, feedback, LabelerConfig())
    return df, labeled, train_candidates(labeled, FAST)


def test_trainer_picks_a_candidate_with_metrics(trained) -> None:
    _, labeled, res = trained
    assert labeled["label"].sum() >= 20
    assert {"logistic", "random_forest", "gradient_boosting", "robust"} <= set(res.candidates)
    for m in res.candidates.values():
        assert {"precision", "recall", "f1", "pr_auc", "threshold", "human_f1", "eligible"} <= set(m)
    # the robust detector is always eligible; a fitted model only if it beat it on human labels
    assert res.candidates["robust"]["eligible"] == 1.0
    assert res.candidates[res.bundle.kind]["eligible"] == 1.0
    for name, m in res.candidates.items():
        if name != "robust" and m["eligible"]:
            assert m["human_f1"] >= res.candidates["robust"]["human_f1"] + res.label_decision["margin"]
    assert res.label_decision["decision"] in ("robust", "supervised") and "reason" in res.label_decision
    assert res.metrics["f1"] > 0.5
    assert res.promote  # no champion yet
    assert res.bundle.kind in {"logistic", "random_forest", "gradient_boosting", "robust"}


def test_score_new_is_causal_and_complete(trained) -> None:
    df, labeled, res = trained
    hist = labeled[labeled["timestamp"] < pd.Timestamp("2024-03-15")]
    fut = df[df["timestamp"] >= pd.Timestamp("2024-03-15")]
    near = fut[fut["timestamp"] < pd.Timestamp("2024-03-25")].copy()
    near.loc[near.index[near["series"] == "sales.t1/row_count"][3], "value"] = 0.0
    a = score_new(res.bundle, hist, near)
    more = pd.concat([near, fut[fut["timestamp"] >= pd.Timestamp("2024-03-25")]])
    b = score_new(res.bundle, hist, more)
    pd.testing.assert_series_equal(a["score"], b.loc[a.index, "score"])
    assert list(a.index) == list(near.index)
    for c in ("series", "group", "timestamp", "value", "table_name", "metric_name", "score", "is_anomaly",
              "severity", "expected_low", "expected_high", "reasons"):
        assert c in a.columns
    zero = a[a["value"] == 0.0].iloc[0]
    assert zero["is_anomaly"] and zero["severity"] in {"high", "medium", "low"}
    assert "below" in zero["reasons"]
    assert zero["expected_low"] > 0
    quiet = a[~a["is_anomaly"]]
    assert (quiet["severity"] == "").all()
    inside = (quiet["value"] >= quiet["expected_low"]) & (quiet["value"] <= quiet["expected_high"])
    assert inside.mean() > 0.9


def test_champion_challenger_rule() -> None:
    champ = {"f1": 0.80, "pr_auc": 0.70}
    assert is_better({"f1": 0.82, "pr_auc": 0.5}, champ, 0.01)[0]
    assert not is_better({"f1": 0.805, "pr_auc": 0.70}, champ, 0.01)[0]
    assert is_better({"f1": 0.805, "pr_auc": 0.75}, champ, 0.01)[0]
    assert not is_better({"f1": 0.70, "pr_auc": 0.99}, champ, 0.01)[0]
    assert is_better({"f1": 0.1}, None, 0.01) == (True, "no champion yet")


def test_trainer_does_not_promote_a_worse_challenger(trained) -> None:
    _, labeled, _ = trained
    res = train_candidates(labeled, FAST, champion_metrics={"f1": 1.0, "pr_auc": 1.0})
    assert not res.promote and "not better" in res.reason


def test_without_human_labels_every_candidate_is_evaluated_but_only_the_robust_detector_can_be_chosen(
    loads_factory,
) -> None:
    df = loads_factory(days=90, tables=2)
    rng = np.random.default_rng(2)
    idx = rng.choice(df.index[df["timestamp"] > pd.Timestamp("2024-01-20")], 25, replace=False)
    df.loc[idx, "value"] *= 3.0
    labeled = label_history(df, None, LabelerConfig())
    assert labeled["label"].sum() >= FAST.min_positive
    res = train_candidates(labeled, FAST)
    assert set(res.candidates) == {*FAST.candidates, "robust"}
    for name, m in res.candidates.items():
        assert np.isfinite(m["f1"]) and np.isfinite(m["pr_auc"]), name  # cross-validated and reported
        assert m["eligible"] == float(name == "robust")
    assert res.bundle.kind == "robust"


def test_out_of_fold_rows_cover_every_history_row_of_each_validation_block() -> None:
    ts_all = np.repeat(np.arange(12), 3)  # 12 timestamps x 3 series
    keep = np.arange(0, 36, 2)  # a subsample, as _subsample makes on a big history
    folds = _time_folds(ts_all[keep], 2)
    rows = _oof_rows(ts_all, ts_all[keep], folds)
    for (_, va), r in zip(folds, rows, strict=True):
        lo, hi = ts_all[keep][va].min(), ts_all[keep][va].max()
        assert set(r) == set(np.flatnonzero((ts_all >= lo) & (ts_all <= hi)))
    # validation blocks only: the first training block is never scored out of fold
    assert ts_all[np.concatenate(rows)].min() > 0


def test_human_f1_counts_human_labelled_points_only() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.1, 0.9])
    w = np.ones(4)
    human = np.array([True, True, False, False])
    m = _human_f1(y, s, w, human, 0.5)
    assert m["human_positives"] == 1.0 and m["human_f1"] == pytest.approx(2 / 3)
    assert _human_f1(y, s, w, np.zeros(4, bool), 0.5) == {"human_f1": 0.0, "human_positives": 0.0}


def test_robust_fallback_without_positives(loads_factory) -> None:
    df = loads_factory(days=60)
    labeled = df.assign(label=np.int8(0), label_source="none")
    res = train_candidates(labeled, FAST)
    assert res.bundle.kind == "robust"
    assert "robust fallback" in res.reason
    new = df[df["timestamp"] >= pd.Timestamp("2024-02-20")].copy()
    new.loc[new.index[0], "value"] *= 10
    out = score_new(res.bundle, labeled[labeled["timestamp"] < pd.Timestamp("2024-02-20")], new)
    assert out.loc[new.index[0], "is_anomaly"]
    assert out["is_anomaly"].sum() <= 3


def test_bundle_still_pickles_for_the_model_format_benchmark(trained, tmp_path) -> None:
    """bench.model_format (``make bench``) measures ``model.dqad`` against joblib, the pickle format
    it replaced, by dumping the trainer's bundles with joblib: a bundle that stopped pickling would
    break that comparison. Nothing in the product pickles a bundle (dqad.detect.model_format)."""
    import joblib

    _, labeled, res = trained
    joblib.dump(res.bundle, tmp_path / "m.joblib")
    b = joblib.load(tmp_path / "m.joblib")
    x = build_features(labeled, FAST)
    np.testing.assert_allclose(b.predict_score(x), res.bundle.predict_score(x))


def test_detector_config_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="windowz"):
        DetectorConfig.from_dict({"windowz": [3]})
    with pytest.raises(ValueError, match="candidates"):
        DetectorConfig(candidates=("svm",))


def test_weekly_rhythm_of_subdaily_data_is_not_an_anomaly() -> None:
    # 30-minute series, weekends at a third of weekday volume: against the time-of-day slot (mostly
    # weekdays) a weekend looks anomalous; against the same weekday and time (week_z) it does not
    ts = pd.date_range("2024-01-01", periods=48 * 35, freq="30min")
    rng = np.random.default_rng(0)
    level = np.where(ts.day_of_week >= 5, 100.0, 300.0)
    df = pd.DataFrame({"series": "trips", "timestamp": ts, "value": level + rng.normal(0, 3, len(ts))})
    feats = build_features(df, FAST)
    last_sat = (ts >= pd.Timestamp("2024-02-03")) & (ts < pd.Timestamp("2024-02-03 06:00"))  # before r_med adapts
    assert np.abs(feats.loc[last_sat, "seas_z"]).median() > 10
    assert np.abs(feats.loc[last_sat, "week_z"]).median() < 3
    # daily data: the second rhythm is the fortnight; before two earlier fortnights it is seas_z
    # itself, and on a series without a fortnightly rhythm the two say the same thing
    daily = pd.DataFrame({"series": "d", "timestamp": pd.date_range("2024-01-01", periods=60, freq="D"),
                          "value": rng.normal(100, 3, 60)})
    fd = build_features(daily, FAST)
    np.testing.assert_array_equal(fd["week_z"].to_numpy()[:28], fd["seas_z"].to_numpy()[:28])
    later = slice(28, None)
    assert (np.abs(fd["week_z"].to_numpy()[later]) < 4).all() and (np.abs(fd["seas_z"].to_numpy()[later]) < 4).all()


def test_robust_global_threshold_is_capped_at_the_calibration_margin(loads_factory) -> None:
    from dqad.detect.model import _robust_threshold

    df = loads_factory(days=60)
    X = build_features(df, FAST)
    X.iloc[:50, X.columns.get_loc("seas_z")] = 40.0  # normal per a human, yet far out: a noisy series
    y = np.zeros(len(X), dtype=int)
    normal = np.ones(len(X), dtype=bool)
    m = _robust_threshold({"f1": 0.0}, X, y, np.ones(len(X)), normal, est_cfg=FAST, usable=False)
    assert m["threshold"] == pytest.approx(0.6)
    m = _robust_threshold({"f1": 0.5, "threshold": 0.95}, X, y, np.ones(len(X)), normal, est_cfg=FAST, usable=True)
    assert m["threshold"] == pytest.approx(0.6)


def test_a_complete_labels_file_does_not_raise_the_global_threshold_but_explicit_feedback_does(loads_factory) -> None:
    """ "Normal" in a file labelling a whole history means "no incident here", not "expected"."""
    df = loads_factory(days=120)
    odd = (df["series"] == "sales.t0/row_count") & (df["timestamp"].dt.day == 15) & (df["timestamp"].dt.month == 3)
    df.loc[odd, "value"] *= 1.6  # a far-out point (z well above the robust threshold)
    when = df.loc[odd, "timestamp"].iloc[0]
    complete = df[["series", "timestamp"]].assign(label="normal")
    explicit = pd.DataFrame({"series": ["sales.t0/row_count"], "timestamp": [when], "label": ["normal"]})
    thresholds = {}
    for name, feedback in (("complete", complete), ("explicit", explicit)):
        labeled = label_history(df, feedback, LabelerConfig())
        thresholds[name] = train_candidates(labeled, FAST, None).candidates["robust"]["threshold"]
    assert thresholds["complete"] == pytest.approx(0.5)
    assert thresholds["explicit"] > 0.5


def test_the_labelers_labels_do_not_move_the_robust_threshold_without_validation_folds(loads_factory) -> None:
    """One rule label in a short history leaves no time folds; the threshold is still the documented 0.5."""
    df = loads_factory(days=120)
    odd = (df["series"] == "sales.t0/row_count") & (df["timestamp"] == pd.Timestamp("2024-03-15 03:00"))
    df.loc[odd, "value"] *= 1.6
    labeled = label_history(df, None, LabelerConfig())
    assert labeled["label"].sum() == 1
    robust = train_candidates(labeled, FAST, None).candidates["robust"]
    assert robust["threshold"] == pytest.approx(0.5)
    assert robust["recall"] == 1.0 and 0 < robust["precision"] < 1  # measured at the threshold kept


def test_label_decision_needs_enough_events_and_a_win_worth_more_than_one_event() -> None:
    cands = {"robust": {"human_f1": 0.50}, "random_forest": {"human_f1": 0.80}, "logistic": {"human_f1": 0.53}}
    few = label_decision(cands, MIN_HUMAN_EVENTS - 1, 0.01)
    assert few["decision"] == "robust" and "too few" in few["reason"] and few["qualified"] == []
    many = label_decision(cands, 20, 0.01)
    assert many["margin"] == pytest.approx(0.05)  # one event in twenty
    assert many["decision"] == "supervised" and many["qualified"] == ["random_forest"]
    close = label_decision({"robust": {"human_f1": 0.5}, "logistic": {"human_f1": 0.54}}, 20, 0.01)
    assert close["decision"] == "robust" and "does not beat" in close["reason"]
    assert label_decision({"robust": {}}, 0, 0.01)["decision"] == "robust"


def test_human_events_are_runs_of_labelled_anomalies_per_series() -> None:
    series = np.array(["a", "a", "a", "a", "b", "b", "b"])
    ts = np.array([1, 2, 3, 4, 1, 2, 3])
    y = np.array([1, 1, 0, 1, 1, 0, 1])
    human = np.array([True, True, True, True, True, True, False])
    assert _human_events(series, ts, y, human) == 3  # a: [1,2], [4]; b: [1]; b@3 is not human
    assert _human_events(series, ts, y, np.zeros(7, bool)) == 0


def test_a_robust_challenger_with_new_feedback_replaces_a_robust_champion() -> None:
    from dqad.detect.model import is_better

    robust_old = {"f1": 0.6, "pr_auc": 0.5, "fitted": 0.0, "n_human": 0.0}
    robust_new = {"f1": 0.4, "pr_auc": 0.3, "fitted": 0.0, "n_human": 1.0}
    assert is_better(robust_new, robust_old, 0.01)[0]
    # a fitted model is compared on its merits, and so is a champion of before the flag
    assert not is_better({**robust_new, "fitted": 1.0}, robust_old, 0.01)[0]
    assert not is_better(robust_new, {"f1": 0.6, "pr_auc": 0.5}, 0.01)[0]


def test_a_retrained_robust_detector_always_replaces_the_robust_champion() -> None:
    """Its thresholds are calibrated on the longer history; F1s on different labels do not compare."""
    champion = {"fitted": 0.0, "n_human": 0.0, "f1": 0.6, "pr_auc": 0.5}
    challenger = {"fitted": 0.0, "n_human": 0.0, "f1": 0.1, "pr_auc": 0.2}
    promote, reason = is_better(challenger, champion, 0.01)
    assert promote and "longer history" in reason


def test_a_champion_whose_f1_could_not_be_measured_is_replaced() -> None:
    champion = {"fitted": 1.0, "f1": float("nan"), "pr_auc": float("nan")}
    challenger = {"fitted": 1.0, "f1": 0.3, "pr_auc": 0.4}
    promote, reason = is_better(challenger, champion, 0.01)
    assert promote and "could not be measured" in reason
    # a measured champion still needs beating
    assert not is_better(challenger, {**champion, "f1": 0.5, "pr_auc": 0.6}, 0.01)[0]
