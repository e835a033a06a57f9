"""Series shapes a single weekday median and an IQR misjudge (docs/architecture.md §6).

Each test builds one benign structure, checks that its ordinary loads raise no alarm once the
history shows them, and that an incident of the same series still does, so that none of the
rules below can pass by simply going quiet.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from dqad.detect import DetectorConfig, LabelerConfig, label_history
from dqad.detect.calendar_effects import CATEGORIES, calendar_categories
from dqad.detect.features import SUB_DAILY_SCALE_POINTS, build_features, scale_points
from dqad.detect.holiday_calendar import holiday_dates
from dqad.detect.vectorised import rhythm_scale, robust_scale

from .robust_scoring import score_after

START, CUT, END = "2024-01-01", "2025-09-01", "2026-02-28"


def _days() -> pd.DatetimeIndex:
    return pd.date_range(START, END, freq="D") + pd.Timedelta(hours=2)


def _score(frame: pd.DataFrame, cfg: DetectorConfig) -> pd.DataFrame:
    """The robust detector (the default without enough labels) on the loads after ``CUT``."""
    return score_after(frame, cfg, CUT)


def _frame(name: str, values: np.ndarray, days: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"series": f"{name}/row_count", "group": name, "timestamp": days, "value": values})


def _fortnightly(days: pd.DatetimeIndex, seed: int, parity: int) -> tuple[np.ndarray, np.ndarray]:
    """Payroll every other Friday (2.2x the level), 3 % noise: which days are payroll, and the values."""
    rng = np.random.default_rng(seed)
    week = (days.normalize() - pd.Timestamp("2024-01-05")).days // 7
    payroll = np.asarray((days.day_of_week == 4) & (week % 2 == parity))
    return payroll, 50_000 * np.where(payroll, 2.2, 1.0) * np.exp(rng.normal(0, 0.03, len(days)))


def test_the_tail_range_sees_what_an_iqr_of_zero_cannot() -> None:
    q25, q75, level = np.array([0.0]), np.array([0.0]), np.array([0.0])
    assert robust_scale(q25, q75, level, 0.01)[0] <= 1e-9  # the IQR alone: no spread at all
    tails = (np.array([0.0]), np.array([32.9]))
    assert robust_scale(q25, q75, level, 0.01, tails=tails)[0] == 10.0
    # a Gaussian's two estimates agree, so ordinary series keep their scale
    x = np.random.default_rng(0).normal(100, 5, 100_000)
    q = np.quantile(x, [0.25, 0.75, 0.05, 0.95])
    iqr = robust_scale(q[:1], q[1:2], np.array([100.0]), 0.0)[0]
    both = robust_scale(q[:1], q[1:2], np.array([100.0]), 0.0, tails=(q[2:3], q[3:4]))[0]
    assert abs(both - iqr) / iqr < 0.03


def test_a_zero_inflated_count_alarms_on_an_extreme_burst_only() -> None:
    days = _days()
    rng = np.random.default_rng(7)
    values = np.where(rng.random(len(days)) < 0.75, 0.0, rng.poisson(15, len(days)).astype(float))
    df = _frame("ops.refunds", values, days)
    out = _score(df, DetectorConfig())
    assert out["is_anomaly"].sum() <= 1  # bursts of the usual size are the series' ordinary life
    burst = int(np.flatnonzero((days >= CUT) & (values > 0))[-5])
    df.loc[burst, "value"] = 400.0
    out = _score(df, DetectorConfig())
    flagged = out.set_index("timestamp")["is_anomaly"]
    assert flagged[days[burst]]


def _receipts(days: pd.DatetimeIndex, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A table loaded every day but with receipts on about one day in twelve (row, distinct, sum)."""
    rng = np.random.default_rng(seed)
    burst = rng.random(len(days)) < 0.08
    rows = np.where(burst, 1.0 + rng.poisson(20, len(days)), 0.0)
    metrics = {
        "row_count": rows,
        "distinct_count": np.round(rows * 0.8),
        "sum_amount": np.round(rows * 45.0 * np.exp(rng.normal(0, 0.3, len(days))), 2),
    }
    frame = pd.concat(
        [pd.DataFrame({"series": f"ops.receipts/{m}", "group": "ops.receipts", "timestamp": days, "value": v})
         for m, v in metrics.items()],
        ignore_index=True,
    )
    return frame, burst


def test_bursts_of_a_mostly_zero_table_are_judged_against_the_earlier_bursts() -> None:
    # far fewer than 5 % of a window's loads are non-zero, so every quantile of the window is 0:
    # without the intermittent model each ordinary burst alarmed, its three metrics "together"
    days = _days()
    frame, burst = _receipts(days, seed=11)
    out = _score(frame, DetectorConfig())
    assert out["is_anomaly"].sum() == 0
    # a burst four times the usual size is an incident, and its range says why
    late = days[np.flatnonzero(burst & (days >= CUT))[-3]]
    big = frame["timestamp"].eq(late) & frame["series"].eq("ops.receipts/row_count")
    frame.loc[big, "value"] = 84.0
    out = _score(frame, DetectorConfig()).set_index(["series", "timestamp"])
    row = out.loc[("ops.receipts/row_count", late)]
    assert row["is_anomaly"] and row["expected_low"] <= 21.0 <= row["expected_high"] < 84.0  # the usual burst
    assert out["is_anomaly"].sum() == 1


def test_a_fortnightly_run_is_learnt_and_an_empty_one_still_alarms() -> None:
    days = _days()
    payroll, values = _fortnightly(days, seed=8, parity=0)
    df = _frame("hr.payments", values, days)
    out = _score(df, DetectorConfig())
    scored_payroll = payroll[days >= CUT]
    assert scored_payroll.sum() >= 10
    assert not out["is_anomaly"].any()
    # and the range shown on a payroll Friday is the payroll level's
    v, lo, hi = (out[c].to_numpy()[scored_payroll] for c in ("value", "expected_low", "expected_high"))
    assert ((v >= lo) & (v <= hi)).mean() >= 0.9
    empty = int(np.flatnonzero((days >= CUT) & payroll)[-2])
    df.loc[empty, "value"] = values[empty] * 0.05
    out = _score(df, DetectorConfig())
    assert out.set_index("timestamp")["is_anomaly"][days[empty]]


def test_the_labeler_does_not_call_a_fortnightly_run_an_incident() -> None:
    days = _days()
    payroll, values = _fortnightly(days, seed=9, parity=1)
    labeled = label_history(_frame("hr.payments", values, days), None, LabelerConfig())
    # a weekday median alone labelled 27 of the 56 payroll Fridays (and 31 other Fridays, whose
    # median it pulled up); what is left are month-end Fridays, judged by their calendar effect
    assert labeled["label"].to_numpy()[payroll].sum() <= 6
    assert labeled["label"].to_numpy()[~payroll].sum() <= 3


def test_a_holiday_of_another_calendar_is_an_ordinary_day_for_a_table_that_closes_on_its_own() -> None:
    start, end = dt.date(2024, 1, 1), dt.date(2026, 2, 28)
    us, de = holiday_dates("US", start, end), holiday_dates("DE", start, end)
    declared = tuple(sorted(set(us) | set(de)))  # one dataset, tables of two countries
    days = _days()
    rng = np.random.default_rng(10)
    closed = np.isin(days.normalize().date, list(us))
    values = 20_000 * np.where(closed, 0.25, 1.0) * np.exp(rng.normal(0, 0.03, len(days)))
    df = _frame("us.orders", values, days)
    cfg = DetectorConfig(holidays=declared)
    out = _score(df, cfg)
    new = days >= CUT
    on_other = np.isin(days.normalize().date, list(set(de) - set(us)))[new]
    assert closed[new].sum() >= 5 and on_other.sum() >= 2
    assert not out["is_anomaly"].to_numpy()[closed[new] | on_other].any()
    # an empty load on one of its own holidays is still an incident
    own = int(np.flatnonzero(new & closed)[-1])
    df.loc[own, "value"] = 0.0
    out = _score(df, cfg)
    assert out.set_index("timestamp")["is_anomaly"][days[own]]


def test_a_declared_holiday_the_series_has_not_shown_yet_is_judged_with_a_wider_range() -> None:
    days = _days()
    first_new = days[days >= CUT][10].date()
    cfg = DetectorConfig(holidays=(first_new,))
    rng = np.random.default_rng(11)
    values = 20_000 * np.exp(rng.normal(0, 0.03, len(days)))
    df = _frame("fin.entries", values, days)
    out = _score(df, cfg).set_index("timestamp")
    width = out["expected_high"] - out["expected_low"]
    at = days[days >= CUT][10]
    ordinary = width.drop(index=at)
    assert width[at] >= 2.5 * ordinary.median()
    assert not out["is_anomaly"].any()


def test_the_last_three_days_of_a_quarter_are_candidates() -> None:
    t = pd.DatetimeIndex(["2025-03-29", "2025-03-30", "2025-03-31", "2025-04-28", "2025-06-28"])
    cats = calendar_categories(t)
    q3 = cats[:, CATEGORIES.index("quarter_third_last_day")]
    q2 = cats[:, CATEGORIES.index("quarter_second_last_day")]
    assert q3.tolist() == [True, False, False, False, True]
    assert q2.tolist() == [False, True, False, False, False]


def test_a_holiday_deeper_than_the_last_is_a_holiday_and_an_empty_one_is_an_incident() -> None:
    """One closure says a holiday drops, not by how much: judged by ratios, a drop stays a drop."""
    days = _days()
    declared = tuple(holiday_dates("US", dt.date(2024, 1, 1), dt.date(2026, 2, 28)))
    on_holiday = np.isin(days.normalize().date, list(declared))
    rng = np.random.default_rng(12)
    depth = rng.uniform(0.1, 0.4, len(days))  # each holiday closes the table to its own share
    values = 30_000 * np.where(on_holiday, depth, 1.0) * np.exp(rng.normal(0, 0.02, len(days)))
    df = _frame("pos.sales", values, days)
    cfg = DetectorConfig(holidays=declared)
    out = _score(df, cfg)
    new = np.asarray(days >= CUT)
    assert on_holiday[new].sum() >= 4
    assert not out["is_anomaly"].to_numpy()[on_holiday[new]].any()
    own = int(np.flatnonzero(new & on_holiday)[-1])
    df.loc[own, "value"] = 0.0
    assert _score(df, cfg).set_index("timestamp")["is_anomaly"][days[own]]


def test_an_effect_seen_once_does_not_make_an_ordinary_day_an_incident() -> None:
    """A quarter's closing surge, seen once, may belong to the quarter rather than the month end."""
    days = pd.date_range("2025-01-01", "2025-06-10", freq="D") + pd.Timedelta(hours=2)
    rng = np.random.default_rng(13)
    quarter_end = np.asarray((days.month == 3) & (days.day >= 29))
    values = 40_000 * np.where(quarter_end, 3.0, 1.0) * np.exp(rng.normal(0, 0.02, len(days)))
    df = _frame("gl.entries", values, days)
    out = score_after(df, DetectorConfig(), "2025-04-01").set_index("timestamp")
    april_end = days[(days.month == 4) & (days.day == 30)][0]
    assert not out["is_anomaly"][april_end]
    assert not out["is_anomaly"].any()


def test_a_quarter_end_surge_learnt_on_a_sunday_explains_the_same_day_on_a_monday() -> None:
    """Weekend and business-day occurrences of a category pool while either alone is too few."""
    days = pd.date_range("2026-01-01", "2026-10-20", freq="D") + pd.Timedelta(hours=2)
    rng = np.random.default_rng(14)
    q_end = np.asarray(np.isin(days.month, (3, 6, 9)) & (days.day > days.days_in_month - 3))
    values = 60_000 * np.where(q_end, 3.0, 1.0) * np.exp(rng.normal(0, 0.02, len(days)))
    df = _frame("crm.events", values, days)
    out = score_after(df, DetectorConfig(), "2026-04-15").set_index("timestamp")
    assert pd.Timestamp("2026-03-29").day_name() == "Sunday"
    assert pd.Timestamp("2026-09-28").day_name() == "Monday"  # the third-last day, on a business day
    assert not out["is_anomaly"][out.index.normalize() == pd.Timestamp("2026-09-28")].any()
    assert not out["is_anomaly"][np.isin(out.index.month, (6, 9))].any()


def test_a_fortnightly_run_the_first_round_labelled_is_still_learnt_by_the_labeler() -> None:
    """The rule's own labels must not erase the rhythm that explains them (holidays on paydays)."""
    days = _days()
    payroll, values = _fortnightly(days, seed=15, parity=0)
    declared = tuple(d.date() for d in days[payroll][::5])  # some paydays are also declared holidays
    df = _frame("hr.pay", values, days)
    labeled = label_history(df, None, LabelerConfig(holidays=declared))
    # a declared holiday leaves a gap in the payday rhythm; when a round's labels joined it, each
    # labelled payday widened the next one's gap (28 % of paydays labelled); now 16 %
    assert labeled["label"].to_numpy()[payroll].mean() <= 0.2


def test_zeros_repeating_do_not_make_a_load_stale_but_a_frozen_load_is() -> None:
    """A table that is mostly empty repeats its zeros daily: only metrics that rarely repeat count."""
    days = _days()
    rng = np.random.default_rng(16)
    n = len(days)
    rows = np.where(rng.random(n) < 0.25, 1.0 + rng.poisson(10, n), 0.0)
    duration = np.round(60 * np.exp(rng.normal(0, 0.1, n)), 1)
    nulls = np.round(2.0 * np.exp(rng.normal(0, 0.2, n)), 3)
    new = np.flatnonzero(np.asarray(days >= CUT))
    repeat = int(new[20])
    while rows[repeat] or rows[repeat - 1]:
        repeat += 1
    duration[repeat] = duration[repeat - 1]  # a coincidence: one metric repeats, the zeros as always
    frozen = int(new[60])
    rows[frozen - 1 : frozen + 1] = 0.0
    duration[frozen], nulls[frozen] = duration[frozen - 1], nulls[frozen - 1]  # the whole load repeats
    frames = [
        pd.DataFrame({"series": f"ops.receipts/{m}", "group": "ops.receipts", "timestamp": days, "value": v})
        for m, v in (("row_count", rows), ("load_duration_s", duration), ("null_pct", nulls))
    ]
    out = _score(pd.concat(frames, ignore_index=True), DetectorConfig()).set_index(["series", "timestamp"])
    flagged = out["is_anomaly"]
    assert not flagged[("ops.receipts/load_duration_s", days[repeat])]
    assert flagged[("ops.receipts/load_duration_s", days[frozen])] or flagged[("ops.receipts/null_pct", days[frozen])]


def test_a_business_day_month_end_surge_does_not_expect_one_on_a_saturday_month_end() -> None:
    """Weekday occurrences pooled for a weekend day are a guess: an ordinary Saturday is no incident."""
    days = pd.date_range("2026-03-01", "2026-11-05", freq="D") + pd.Timedelta(hours=2)
    rng = np.random.default_rng(17)
    last_business = np.asarray(days.normalize() == (days.normalize() + pd.offsets.BMonthEnd(0)))
    values = 25_000 * np.where(last_business, 1.8, 1.0) * np.exp(rng.normal(0, 0.02, len(days)))
    df = _frame("ap.invoices", values, days)
    # only May 31 falls on a weekend: too few for the weekend split, so Oct 31 (a Saturday)
    # borrows the business days' surge (five of its six last occurrences)
    out = score_after(df, DetectorConfig(), "2026-05-01").set_index("timestamp")
    assert pd.Timestamp("2026-10-31").day_name() == "Saturday"
    assert not out["is_anomaly"].any()
    # a missing surge on a last business day is still an incident, once the surge is learnt
    own = int(np.flatnonzero(np.asarray(days >= "2026-05-01") & last_business)[-1])
    df.loc[own, "value"] = 25_000 * 0.4
    assert score_after(df, DetectorConfig(), "2026-05-01").set_index("timestamp")["is_anomaly"][days[own]]


def test_a_doubled_load_on_a_holiday_the_series_has_not_shown_is_still_an_incident() -> None:
    """An unproven holiday is tolerated a drop (the table may close), not a surge."""
    days = _days()
    new = days[days >= CUT]
    dropped, doubled = new[10], new[40]
    cfg = DetectorConfig(holidays=(dropped.date(), doubled.date()))
    rng = np.random.default_rng(18)
    values = 20_000 * np.exp(rng.normal(0, 0.02, len(days)))
    values[days.get_loc(dropped)] *= 0.3
    values[days.get_loc(doubled)] *= 2.0
    out = _score(_frame("fx.rates", values, days), cfg).set_index("timestamp")["is_anomaly"]
    assert not out[dropped]
    assert out[doubled]


def test_a_rhythm_s_scale_is_carried_to_its_level_for_daily_loads_only() -> None:
    scale, ordinary = np.full(4, 10.0), np.full(4, 100.0)
    rhythm = np.array([220.0, 50.0, 5_000.0, np.nan])
    daily = np.array([True, True, True, True])
    # twice the level, twice the noise; a low level keeps the ordinary scale; at most 4x; no rhythm: as is
    assert rhythm_scale(scale, ordinary, rhythm, daily).tolist() == [22.0, 10.0, 40.0, 10.0]
    # a sub-daily feed's noise does not grow with its weekly slot's level
    assert rhythm_scale(scale, ordinary, rhythm, ~daily).tolist() == [10.0] * 4




def test_the_labeler_leaves_a_quarter_end_to_its_own_effect_not_the_month_end_s() -> None:
    # flat month ends, the last three days of a quarter at 3x: that month ends are flat (an effect
    # the history supports) does not tell what a quarter end does, so the labeler must not call the
    # first quarter ends incidents (blanking the very days the detector learns their effect from)
    days = _days()
    rng = np.random.default_rng(5)
    quarter = np.asarray((days.day > days.days_in_month - 3) & np.isin(days.month, (3, 6, 9, 12)))
    values = 40_000 * np.where(quarter, 3.0, 1.0) * np.exp(rng.normal(0, 0.03, len(days)))
    labeled = label_history(_frame("fin.ledger", values, days), None, LabelerConfig())
    assert labeled["label"].to_numpy()[quarter].sum() == 0


def test_sub_daily_noise_is_measured_over_three_days_of_loads_and_daily_noise_over_eight_weeks() -> None:
    cfg = DetectorConfig()
    steps = np.array([300.0, 1800.0, 3600.0, 6 * 3600.0, 86_400.0, 7 * 86_400.0, np.nan])
    assert scale_points(steps, cfg.scale_window).tolist() == [SUB_DAILY_SCALE_POINTS, 144, 72] + [cfg.scale_window] * 4
    assert scale_points(steps[:1], 1000).tolist() == [1000]  # a wider configured window is kept


def test_a_sub_daily_drop_lasting_hours_keeps_its_deviation_to_the_end() -> None:
    """Measured over the last 56 loads (under five hours of 5-minute data), the drop's own residuals
    became the noise after an hour, and a failing machine's temperature falling all afternoon
    stopped deviating."""
    rng = np.random.default_rng(3)
    ts = pd.date_range("2024-03-01", periods=288 * 8, freq="5min")
    values = 80 + rng.normal(0, 1.0, len(ts))
    start, length = 288 * 7 + 100, 36  # three hours, ten sigma down
    values[start:start + length] -= 10
    feats = build_features(pd.DataFrame({"series": "machine/temp", "timestamp": ts, "value": values}), DetectorConfig())
    seas_z = feats["seas_z"].to_numpy()
    assert (seas_z[start + 24:start + length] < -5).all()  # its third hour too
    assert (np.abs(seas_z[start + length + 12:]) < 5).mean() > 0.95  # and the level that returns is normal


def test_a_quiet_slot_is_judged_by_its_own_level_of_noise() -> None:
    """Sundays at a tenth of the weekday level, 3 % noise on every day: a doubled Sunday is far out.

    Pooled in absolute terms, the weekdays' noise (3 % of the weekday level) made a Sunday's range
    about a third of the Sunday level wide on each side, and a Sunday could double unremarked.
    """
    days = _days()
    rng = np.random.default_rng(11)
    level = 50_000 * np.where(days.day_of_week == 6, 0.1, 1.0) * np.exp(rng.normal(0, 0.03, len(days)))
    df = _frame("shop.sessions", level, days)
    out = _score(df, DetectorConfig())
    sunday = (days[days >= CUT].day_of_week == 6)
    v, lo, hi = (out[c].to_numpy() for c in ("value", "expected_low", "expected_high"))
    assert not out["is_anomaly"].any()
    assert np.median((hi - lo)[sunday] / v[sunday]) < 0.5  # pooled, it was over twice the Sunday level
    doubled = df.copy()
    first_sunday = np.flatnonzero((days >= CUT) & (days.day_of_week == 6))[3]
    doubled.loc[first_sunday, "value"] *= 2.0
    assert _score(doubled, DetectorConfig())["is_anomaly"].to_numpy()[first_sunday - np.flatnonzero(days >= CUT)[0]]


def test_a_series_with_zeros_keeps_a_finite_absolute_scale() -> None:
    """Closed Sundays (0): no relative noise can be measured against them, and none is divided by."""
    days = _days()
    rng = np.random.default_rng(12)
    level = np.where(days.day_of_week == 6, 0.0, 2_000 * np.exp(rng.normal(0, 0.03, len(days))))
    feats = build_features(_frame("shop.closed", level, days), DetectorConfig())
    assert np.isfinite(feats.to_numpy()).all()
    out = _score(_frame("shop.closed", level, days), DetectorConfig())
    assert not out["is_anomaly"].any()
    assert (out["expected_high"] >= out["expected_low"]).all()


def test_four_loads_a_day_with_a_weekend_drop_get_ranges_as_narrow_as_their_noise() -> None:
    """A sub-daily table whose weekends load half: its weekly rhythm is no noise.

    Its residuals are taken against the same weekday's slot (the second rhythm) once the series
    follows it; against the time of day alone, every weekend was a 50 % "residual" and the ranges
    of the weekdays spread over about ±45 %, wide enough to hide a partial load.
    """
    ts = pd.date_range("2026-01-05", "2026-04-30", freq="6h") + pd.Timedelta(minutes=25)
    rng = np.random.default_rng(13)
    slot = np.array([1.0, 1.3, 0.8, 0.6])[(ts.hour // 6).to_numpy()]
    level = 400_000 * slot * np.where(ts.day_of_week >= 5, 0.5, 1.0) * np.exp(rng.normal(0, 0.03, len(ts)))
    df = pd.DataFrame({"series": "erp.tickets/row_count", "group": "erp.tickets", "timestamp": ts, "value": level})
    cut = "2026-04-01"
    out = score_after(df, DetectorConfig(), cut)
    weekday = (ts[ts >= cut].day_of_week < 5)
    v, lo, hi = (out[c].to_numpy() for c in ("value", "expected_low", "expected_high"))
    assert np.median(((hi - lo) / v)[weekday]) < 0.3
    assert np.mean((v >= lo) & (v <= hi)) > 0.95
    # a load at 60 % on a Wednesday morning scores above the global threshold
    partial = df.copy()
    at = np.flatnonzero((ts >= "2026-04-15") & (ts.hour == 6))[0]
    partial.loc[at, "value"] *= 0.6
    scored = score_after(partial, DetectorConfig(), cut)
    assert scored["score"].to_numpy()[at - np.flatnonzero(ts >= cut)[0]] > 0.5


def test_an_hourly_load_that_repeats_every_number_of_the_previous_one_is_stale() -> None:
    """Sub-daily loads too: a whole load repeating the previous numbers, to the cent, was never fresh.

    The previous hour's values are plausible values, so only the repeat says the data is stale; a
    series that repeats by itself (a count of 0 or 1) is left out, as on daily data.
    """
    ts = pd.date_range("2026-09-01", "2026-10-13", freq="h") + pd.Timedelta(minutes=7)
    rng = np.random.default_rng(21)
    n = len(ts)
    hour = ts.hour.to_numpy()
    rows = np.round(5_000 * (1 + np.exp(-((hour - 13) ** 2) / 18)) * np.exp(rng.normal(0, 0.03, n)))
    amount = np.round(rows * 17.3 * np.exp(rng.normal(0, 0.05, n)), 2)
    nulls = np.round(np.clip(rng.normal(2.0, 0.3, n), 0, 100), 3)
    stuck = int(np.flatnonzero(ts >= "2026-10-10 10:00")[0])
    for v in (rows, amount, nulls):
        v[stuck] = v[stuck - 1]
    frames = [
        pd.DataFrame({"series": f"iot.readings/{m}", "group": "iot.readings", "timestamp": ts, "value": v})
        for m, v in (("row_count", rows), ("sum_amount", amount), ("null_pct", nulls))
    ]
    frame = pd.concat(frames, ignore_index=True)
    out = score_after(frame, DetectorConfig(), "2026-10-01").set_index(["series", "timestamp"])
    for m in ("row_count", "sum_amount", "null_pct"):
        assert out.loc[(f"iot.readings/{m}", ts[stuck]), "score"] >= 0.8
    ordinary = out.drop(index=[(f"iot.readings/{m}", ts[stuck]) for m in ("row_count", "sum_amount", "null_pct")])
    assert (ordinary["score"] < 0.8).mean() > 0.99


def test_a_feed_back_from_two_days_of_zeros_is_judged_against_a_finite_noise() -> None:
    """Two days of zeros in an hourly feed: its three-day noise window is then mostly residuals of
    -100 % against slots the earlier weeks keep positive. Their median relative residual (-1) made
    the expected value zero and its relative scale zero: the feed's return to its usual level read
    as an infinite deviation. Where the relative expected value is not positive, the absolute
    spread is the measure, and the return is ordinary."""
    ts = pd.date_range("2026-01-05", "2026-03-20", freq="h") + pd.Timedelta(minutes=5)
    rng = np.random.default_rng(14)
    level = 5_000 * (1.5 + np.sin(ts.hour.to_numpy() / 24 * 2 * np.pi)) * np.exp(rng.normal(0, 0.05, len(ts)))
    level[(ts >= "2026-03-17") & (ts < "2026-03-19")] = 0.0
    df = pd.DataFrame({"series": "iot.feed/row_count", "group": "iot.feed", "timestamp": ts, "value": level})
    feats = build_features(df, DetectorConfig())
    assert np.isfinite(feats.to_numpy()).all()
    back = np.asarray(ts >= "2026-03-19")
    assert np.abs(feats["seas_z"].to_numpy()[back]).max() < DetectorConfig().robust_threshold
