"""Calendar effects are learnt per series from its own history, never assumed (docs/architecture.md §6)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, label_history
from dqad.detect.calendar_effects import CATEGORIES, calendar_categories
from dqad.detect.features import compute
from dqad.detect.holiday_calendar import holiday_dates

from .robust_scoring import score_after

START, CUT, END = "2024-01-01", "2025-09-01", "2026-02-28"


def _series(name: str, effect: np.ndarray, days: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    level = 10_000 * np.where(days.day_of_week >= 5, 0.6, 1.0) * np.exp(rng.normal(0, 0.03, len(days)))
    return pd.DataFrame({"series": f"{name}/row_count", "group": name, "timestamp": days, "value": level * effect})


def _days() -> pd.DatetimeIndex:
    return pd.date_range(START, END, freq="D") + pd.Timedelta(hours=2)


def _flag(days: pd.DatetimeIndex, category: str, holidays: tuple[dt.date, ...] = ()) -> np.ndarray:
    return calendar_categories(days, holidays)[:, CATEGORIES.index(category)]


def _score(frame: pd.DataFrame, cfg: DetectorConfig) -> pd.DataFrame:
    """The robust detector (the default without enough labels) on the loads after ``CUT``."""
    return score_after(frame, cfg, CUT)


@pytest.mark.parametrize(
    "category",
    ["month_last_day", "month_last_business_day", "month_first_business_day", "month_first_day"],
)
def test_a_month_end_surge_of_any_convention_is_learnt(category: str) -> None:
    days = _days()
    on = _flag(days, category)
    df = _series("fin.ledger", np.where(on, 2.5, 1.0), days, seed=1)
    labels = label_history(df[df["timestamp"] < CUT], None, LabelerConfig())
    assert labels["label"].sum() <= 2  # the history's surges are no incidents
    out = _score(df, DetectorConfig())
    surge = on[days >= CUT]
    assert surge.sum() >= 5
    assert not out["is_anomaly"].to_numpy()[surge].any()
    # the surge lies inside the range shown on those days
    v, lo, hi = (out[c].to_numpy()[surge] for c in ("value", "expected_low", "expected_high"))
    assert ((v >= lo) & (v <= hi)).all()


def test_weekend_calendar_month_end_surge_raises_no_alarm_and_an_empty_one_does() -> None:
    days = _days()
    on = _flag(days, "month_last_day")
    weekend_ends = on & (days.day_of_week >= 5) & (days >= CUT)
    assert weekend_ends.sum() >= 2  # 2025-11-30 (Sunday), 2026-01-31 (Saturday)
    df = _series("fin.close", np.where(on, 3.0, 1.0), days, seed=2)
    out = _score(df, DetectorConfig())
    assert not out["is_anomaly"].to_numpy()[weekend_ends[days >= CUT]].any()
    # the same weekend month end without its surge is now an incident (the series always surges)
    flat_end = np.flatnonzero(weekend_ends)[-1]
    df.loc[flat_end, "value"] /= 3.0
    out = _score(df, DetectorConfig())
    assert out["is_anomaly"].to_numpy()[weekend_ends[days >= CUT]].tolist()[-1]


def test_no_month_end_effect_no_widening() -> None:
    days = _days()
    df = _series("crm.users", np.ones(len(days)), days, seed=3)
    out = _score(df, DetectorConfig())
    new_days = days[days >= CUT]
    width = (out["expected_high"] - out["expected_low"]).to_numpy()
    month_end = calendar_categories(new_days)[:, [CATEGORIES.index(c) for c in CATEGORIES if "last" in c]].any(1)
    same_weekday = ~month_end
    for dow in range(7):
        me = month_end & (new_days.day_of_week == dow)
        if me.any():
            ordinary = width[same_weekday & (new_days.day_of_week == dow)]
            assert width[me].max() <= 1.05 * ordinary.max()  # as narrow as the ordinary same weekdays
    assert not out["is_anomaly"].any()
    # and no calendar effect is used anywhere: the month ends are judged as ordinary days
    assert (compute(df, DetectorConfig()).aux["effect"] == -1).all()


def test_holiday_effect_only_where_the_series_shows_it() -> None:
    holidays = holiday_dates("US", dt.date(2024, 1, 1), dt.date(2026, 12, 31))
    days = pd.date_range("2024-01-01", END, freq="D") + pd.Timedelta(hours=2)
    hol = _flag(days, "holiday", holidays)
    closed = _series("shop.orders", np.where(hol, 0.2, 1.0), days, seed=4)
    steady = _series("ops.jobs", np.ones(len(days)), days, seed=5)
    frame = pd.concat([closed, steady], ignore_index=True)
    cfg = DetectorConfig(holidays=holidays)
    out = _score(frame, cfg)
    new_hol = np.r_[hol[days >= CUT], hol[days >= CUT]]
    is_closed = (out["series"] == "shop.orders/row_count").to_numpy()
    assert (new_hol & is_closed).sum() >= 4
    assert not out["is_anomaly"].to_numpy()[new_hol & is_closed].any()
    # the steady series' holidays get no widening: a dip to 20% there is an incident
    width = (out["expected_high"] - out["expected_low"]).to_numpy()
    steady_rows = ~is_closed
    assert width[new_hol & steady_rows].max() <= width[~new_hol & steady_rows].max()
    dip = np.flatnonzero((steady["timestamp"] >= CUT).to_numpy() & hol)[-1]
    frame.loc[len(closed) + dip, "value"] *= 0.2
    out = _score(frame, cfg)
    assert out["is_anomaly"].to_numpy()[steady_rows & new_hol].tolist()[-1]


def test_a_last_business_day_that_is_not_the_month_end_keeps_its_ordinary_range() -> None:
    """A table surging on the calendar last day, whose history held its last business days only on it.

    From February to September 2026 every last business day but one (29 May) was also the last
    day and surged. On Friday 30 October (the 31st is a Saturday) the last business day is an
    ordinary day: no earlier day described like it (a last business day that is not the last day)
    showed the surge, so an ordinary value there is no "missing surge"; the Saturday's surge is none
    either, and an empty load on the Friday still is an incident.
    """
    days = pd.date_range("2026-02-06", "2026-11-05", freq="D") + pd.Timedelta(hours=2)
    on = _flag(days, "month_last_day")
    df = _series("shop.orders", np.where(on, 2.0, 1.0), days, seed=4)
    cut = "2026-10-01"
    out = score_after(df, DetectorConfig(), cut)
    when = days[days >= cut]
    friday, saturday = when.get_loc(pd.Timestamp("2026-10-30 02:00")), when.get_loc(pd.Timestamp("2026-10-31 02:00"))
    flagged = out["is_anomaly"].to_numpy()
    assert not flagged[friday] and not flagged[saturday]
    assert not flagged.any()
    df.loc[np.flatnonzero(days == pd.Timestamp("2026-10-30 02:00"))[0], "value"] = 0.0
    assert score_after(df, DetectorConfig(), cut)["is_anomaly"].to_numpy()[friday]
