"""Controls act in the scorer's decision, and the flag agrees with the range shown (docs/architecture.md §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, label_history, score_new
from dqad.detect.controls import Control
from dqad.detect.features import build_features
from dqad.detect.model import ModelBundle, RobustDetector

CUT = pd.Timestamp("2024-05-01")


def _frame(seed: int = 0, days: int = 180) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=days, freq="D") + pd.Timedelta(hours=3)
    parts = []
    for table in ("sales.orders", "crm.users"):
        rc = 10_000 * np.where(ts.day_of_week >= 5, 0.5, 1.0) * np.exp(rng.normal(0, 0.03, days))
        null = np.clip(2.0 + rng.normal(0, 0.3, days), 0, None)
        for metric, v in (("row_count", rc), ("null_pct", null)):
            parts.append(pd.DataFrame({"series": f"{table}/{metric}", "group": table, "timestamp": ts, "value": v}))
    return pd.concat(parts, ignore_index=True)


def _score(frame: pd.DataFrame, cfg: DetectorConfig) -> pd.DataFrame:
    hist, new = frame[frame["timestamp"] < CUT], frame[frame["timestamp"] >= CUT]
    labeled = label_history(hist, None, LabelerConfig())
    names = list(build_features(labeled.iloc[:50], cfg).columns)
    return score_new(ModelBundle(RobustDetector(cfg), names, 0.5, cfg, "now", {}, "robust"), labeled, new)


def _at(out: pd.DataFrame, series: str, day: str) -> pd.Series:
    return out[(out["series"] == series) & (out["timestamp"].dt.normalize() == pd.Timestamp(day))].iloc[0]


def test_hard_maximum_always_alerts() -> None:
    df = _frame()
    row = df.index[(df["series"] == "crm.users/null_pct") & (df["timestamp"].dt.normalize() == "2024-05-10")]
    df.loc[row, "value"] = 5.5  # high, but within what the series could drift to: test the bound alone
    plain = _score(df, DetectorConfig())
    bounded = _score(df, DetectorConfig(controls=({"metric": "*null_pct", "max": 5},)))
    hit = _at(bounded, "crm.users/null_pct", "2024-05-10")
    assert hit["is_anomaly"] and "hard maximum 5" in hit["reasons"]
    # only values above the bound are forced
    assert bounded["is_anomaly"].sum() - plain["is_anomaly"].sum() <= 1


def test_hard_minimum_and_zero_always_alert() -> None:
    df = _frame()
    day = (df["series"] == "sales.orders/row_count") & (df["timestamp"].dt.normalize() == "2024-05-14")
    df.loc[day, "value"] = 0.0
    cfg = DetectorConfig(controls=(Control("sales.orders/row_count", zero_alerts=True),), robust_threshold=1e6)
    hit = _at(_score(df, cfg), "sales.orders/row_count", "2024-05-14")
    assert hit["is_anomaly"] and "zero" in hit["reasons"]
    df.loc[day, "value"] = 9_000.0  # an ordinary value, below the hard minimum
    cfg = DetectorConfig(controls=(Control("row_count", min=9_500),), robust_threshold=1e6)
    out = _score(df, cfg)
    assert _at(out, "sales.orders/row_count", "2024-05-14")["is_anomaly"]
    assert "hard minimum 9500" in _at(out, "sales.orders/row_count", "2024-05-14")["reasons"]


@pytest.mark.parametrize(
    "direction, factor, alerts",
    [("up", 0.3, False), ("up", 3.0, True), ("down", 3.0, False), ("down", 0.3, True), ("both", 0.3, True)],
)
def test_direction(direction: str, factor: float, alerts: bool) -> None:
    df = _frame()
    day = (df["series"] == "sales.orders/row_count") & (df["timestamp"].dt.normalize() == "2024-05-15")
    df.loc[day, "value"] *= factor
    out = _score(df, DetectorConfig(controls=(Control("sales.orders/*", direction=direction),)))
    row = _at(out, "sales.orders/row_count", "2024-05-15")
    assert bool(row["is_anomaly"]) is alerts
    if not alerts:
        assert "not alerted" in row["reasons"] and "only on" in row["reasons"]


def test_minimum_absolute_and_relative_change() -> None:
    df = _frame()
    day = (df["series"] == "crm.users/null_pct") & (df["timestamp"].dt.normalize() == "2024-05-16")
    df.loc[day, "value"] = 6.0  # +4 points, +200%: an alarm by default
    assert _at(_score(df, DetectorConfig()), "crm.users/null_pct", "2024-05-16")["is_anomaly"]
    for control in (Control("null_pct", min_abs_change=5.0), Control("null_pct", min_rel_change=2.5)):
        row = _at(_score(df, DetectorConfig(controls=(control,))), "crm.users/null_pct", "2024-05-16")
        assert not row["is_anomaly"] and "minimum change" in row["reasons"]


def test_sensitivity_moves_the_threshold() -> None:
    df = _frame()
    day = (df["series"] == "sales.orders/row_count") & (df["timestamp"].dt.normalize() == "2024-05-17")
    df.loc[day, "value"] *= 0.85  # a moderate dip

    def flagged(s: float) -> bool:
        cfg = DetectorConfig(controls=(Control("sales.orders/row_count", sensitivity=s),))
        return bool(_at(_score(df, cfg), "sales.orders/row_count", "2024-05-17")["is_anomaly"])

    assert flagged(10.0) and not flagged(0.1)


def test_controls_reject_unknown_keys_and_directions() -> None:
    with pytest.raises(ValueError, match="maximum"):
        DetectorConfig.from_dict({"controls": [{"metric": "x", "maximum": 5}]})
    with pytest.raises(ValueError, match="direction"):
        DetectorConfig.from_dict({"controls": [{"metric": "x", "direction": "sideways"}]})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_flag_agrees_with_the_range_shown(seed: int) -> None:
    """Property over every scored point: flagged and inside its range says why; outside and quiet says why."""
    rng = np.random.default_rng(seed)
    df = _frame(seed)
    new = np.flatnonzero((df["timestamp"] >= CUT).to_numpy())
    hit = rng.choice(new, 40, replace=False)
    df.loc[hit, "value"] *= rng.choice([0.0, 0.5, 0.8, 1.15, 1.3, 2.0, 4.0], len(hit))
    cfg = DetectorConfig(
        controls=(Control("*null_pct", direction="up", max=3.5), Control("row_count", min_rel_change=0.4))
    )
    out = _score(df, cfg)
    assert len(out) > 200 and out["is_anomaly"].sum() >= 5
    v, lo, hi = (out[c].to_numpy() for c in ("value", "expected_low", "expected_high"))
    inside = (v >= lo) & (v <= hi)
    outside = (v < lo) | (v > hi)
    flag = out["is_anomaly"].to_numpy()
    reasons = out["reasons"].to_numpy()
    for r in np.flatnonzero(flag & inside):
        assert "but flagged" in reasons[r] or "hard" in reasons[r] or "zero" in reasons[r], reasons[r]
    for r in np.flatnonzero(~flag & outside):
        assert reasons[r].startswith("outside its expected range") and "not alerted: " in reasons[r], reasons[r]
    assert (np.array([len(t) for t in reasons])[flag] > 0).all()
    assert (outside & ~flag).sum() + (flag & outside).sum() > 0
