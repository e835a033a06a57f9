"""Causality of features and scores, champion/challenger, robust fallback, the scorer's output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, build_features, label_history, score_new, train_candidates
from dqad.detect.model import is_better

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
    labeled = label_history(df, None, LabelerConfig())
    return df, labeled, train_candidates(labeled, FAST)


def test_trainer_picks_a_candidate_with_metrics(trained) -> None:
    _, labeled, res = trained
    assert labeled["label"].sum() >= 20
    assert {"logistic", "random_forest", "gradient_boosting", "robust"} <= set(res.candidates)
    for m in res.candidates.values():
        assert {"precision", "recall", "f1", "pr_auc", "threshold"} <= set(m)
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


def test_bundle_pickles(trained, tmp_path) -> None:
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
