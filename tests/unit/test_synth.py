"""Tests of the synthetic data-quality metrics generator (``dqad_dev.synth``).

Most signature checks compare a run with incidents to its exact counterfactual: the same seed with
``incident_rate=0`` (the generator draws normal data and incidents from independent streams), so each
incident kind can be checked against the value the load would have had.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import numpy as np
import pandas as pd
import pytest

from dqad.detect.holiday_calendar import holiday_dates
from dqad_dev import synth
from dqad_dev.synth import INCIDENT_KINDS, INCIDENT_METRICS, METRICS, SynthData, generate

TABLES, DAYS, SEED, RATE = 60, 200, 3, 0.05


@pytest.fixture(scope="module")
def data() -> SynthData:
    return generate(tables=TABLES, days=DAYS, seed=SEED, incident_rate=RATE)


@pytest.fixture(scope="module")
def clean() -> SynthData:
    return generate(tables=TABLES, days=DAYS, seed=SEED, incident_rate=0.0)


def cube(d: SynthData) -> np.ndarray:
    """metric_value as (tables, metrics, loads); the frame's documented order makes this a reshape."""
    n_tab = d.metrics["table_name"].nunique()
    n_met = d.metrics["metric_name"].nunique()
    return d.metrics["metric_value"].to_numpy().reshape(n_tab, n_met, -1)


def load_times(d: SynthData) -> np.ndarray:
    n_tab = d.metrics["table_name"].nunique()
    n_met = d.metrics["metric_name"].nunique()
    return d.metrics["load_ts"].to_numpy().reshape(n_tab, n_met, -1)[:, 0, :]


def table_order(d: SynthData) -> list[str]:
    return list(pd.unique(d.metrics["table_name"]))


def incident_index(d: SynthData) -> pd.DataFrame:
    """Incidents with integer table / metric / load positions added."""
    tables = {name: i for i, name in enumerate(table_order(d))}
    metrics = {name: i for i, name in enumerate(pd.unique(d.metrics["metric_name"]))}
    ts = load_times(d)
    inc = d.incidents.copy()
    inc["t"] = inc["table_name"].map(tables).astype(int)
    inc["m"] = inc["metric_name"].map(metrics).astype(int)
    inc["d"] = [int(np.searchsorted(ts[t], np.datetime64(x))) for t, x in zip(inc["t"], inc["load_ts"], strict=True)]
    assert (ts[inc["t"], inc["d"]] == inc["load_ts"].to_numpy()).all()
    return inc


def same_weekday_median(rows: np.ndarray, d: int, usable: np.ndarray) -> float:
    """Median of the same-weekday loads within ±4 weeks of load ``d`` (excluding ``d``), among ``usable``."""
    idx = [d + 7 * k for k in (-4, -3, -2, -1, 1, 2, 3, 4) if 0 <= d + 7 * k < len(rows) and usable[d + 7 * k]]
    assert len(idx) >= 3
    return float(np.median(rows[idx]))


def calendar(d: SynthData, days: int, end: dt.date = dt.date(2026, 11, 2)) -> tuple[list[dt.date], np.ndarray]:
    dates = [end - dt.timedelta(days=days - 1 - i) for i in range(days)]
    is_hol = np.array([x in set(d.holidays) for x in dates])
    return dates, is_hol


def month_end_days(dates: list[dt.date], holidays: set[dt.date]) -> dict[int, int]:
    """load index -> rank (1 = last business day of its month, 2 = the one before), for whole months."""
    out: dict[int, int] = {}
    by_month: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(dates):
        if x.weekday() < 5 and x not in holidays:
            by_month.setdefault((x.year, x.month), []).append(i)
    for (year, month), idx in by_month.items():
        last_day = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
        if dates[idx[-1]] + dt.timedelta(days=1) > dates[-1] and dates[-1] < last_day:
            continue  # month cut by the end of the series
        out[idx[-1]] = 1
        if len(idx) > 1:
            out[idx[-2]] = 2
    return out


# --- shape, order, dtypes, determinism -----------------------------------------------------------


def test_same_seed_gives_identical_frames_and_another_seed_does_not() -> None:
    a = generate(tables=9, days=90, seed=11, incident_rate=0.05)
    b = generate(tables=9, days=90, seed=11, incident_rate=0.05)
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    pd.testing.assert_frame_equal(a.incidents, b.incidents)
    assert a.holidays == b.holidays
    c = generate(tables=9, days=90, seed=12, incident_rate=0.05)
    assert not np.array_equal(a.metrics["metric_value"].to_numpy(), c.metrics["metric_value"].to_numpy())
    assert not a.incidents.equals(c.incidents)


def test_shape_dtypes_and_order() -> None:
    d = generate(tables=7, days=60, seed=1, metrics=("sum_amount", "row_count", "null_pct"))
    m = d.metrics
    assert len(m) == 7 * 60 * 3
    assert list(m.columns) == [
        "table_name",
        "metric_name",
        "load_ts",
        "metric_value",
        "job_name",
        "is_rerun",
        "loaded_at",
    ]
    str_dtype = pd.Series(["x"]).dtype
    assert m["table_name"].dtype == str_dtype
    assert m["metric_name"].dtype == str_dtype
    assert m["job_name"].dtype == str_dtype
    assert m["load_ts"].dtype == np.dtype("datetime64[ns]")
    assert m["loaded_at"].dtype == np.dtype("datetime64[ns]")
    assert m["metric_value"].dtype == np.dtype("float64")
    assert m["is_rerun"].dtype == np.dtype("bool")
    assert list(d.incidents.columns) == ["table_name", "metric_name", "load_ts", "kind"]
    assert d.incidents["load_ts"].dtype == np.dtype("datetime64[ns]")
    assert m["metric_value"].notna().all()
    # Order: table (generation order), metric (as asked), load time.
    assert list(pd.unique(m["metric_name"])) == ["sum_amount", "row_count", "null_pct"]
    assert table_order(d)[:3] == ["sales.orders", "crm.customers", "finance.gl_entries"]
    for (_, _), g in m.groupby(["table_name", "metric_name"], sort=False):
        ts = g["load_ts"]
        assert len(g) == 60 and ts.is_monotonic_increasing
        assert ts.dt.normalize().diff().dropna().eq(pd.Timedelta(days=1)).all()  # one load a day
    assert m.index.equals(pd.RangeIndex(len(m)))
    assert m["load_ts"].max().date() == dt.date(2026, 11, 2)
    assert m["load_ts"].min().date() == dt.date(2026, 11, 2) - dt.timedelta(days=59)


def test_table_names_are_unique_realistic_and_named_jobs() -> None:
    d = generate(tables=90, days=5, seed=0)
    names = table_order(d)
    assert len(names) == len(set(names)) == 90
    assert all(n.count(".") == 1 and n == n.lower() and " " not in n for n in names)
    assert {"sales.orders", "crm.customers", "finance.gl_entries"} <= set(names)
    jobs = d.metrics.drop_duplicates("table_name")
    assert (jobs["job_name"] == "tln_load_" + jobs["table_name"].str.replace(".", "_")).all()


def test_load_times_reruns_and_completion() -> None:
    d = generate(tables=200, days=120, seed=5, incident_rate=0.0, metrics=("row_count", "load_duration_s"))
    m = d.metrics[d.metrics["metric_name"] == "load_duration_s"]
    minutes = (m["load_ts"] - m["load_ts"].dt.normalize()).dt.total_seconds() / 60
    usual = minutes[~m["is_rerun"]]
    assert usual.min() >= 120 - 15 and usual.max() <= 420 + 15  # 02:00–07:00 plus jitter
    typical = usual.groupby(m["table_name"]).median()
    assert (usual - m.loc[usual.index, "table_name"].map(typical)).abs().max() <= 30  # minutes of jitter
    rate = m["is_rerun"].mean()
    assert 0.01 <= rate <= 0.03
    reruns = m[m["is_rerun"]]
    late = minutes[reruns.index] - reruns["table_name"].map(typical)
    assert (late >= 15).all()  # a rerun comes 30–180 minutes after the usual time
    took = (m["loaded_at"] - m["load_ts"]).dt.total_seconds()
    assert np.allclose(took, m["metric_value"], atol=0.51)
    assert (m["load_ts"] == m["load_ts"].dt.floor("s")).all()


def test_generates_one_million_rows_well_under_ten_seconds() -> None:
    start = time.perf_counter()
    d = generate(tables=1112, days=180, seed=0)
    elapsed = time.perf_counter() - start
    assert len(d.metrics) == 1112 * 180 * 5 >= 1_000_000
    assert elapsed < 10.0, f"took {elapsed:.1f} s"


# --- normal behaviour -----------------------------------------------------------------------------


def test_metrics_are_plausible_and_move_together(clean: SynthData) -> None:
    c = cube(clean)
    rows, nulls, distinct, amount, duration = (c[:, i, :] for i in range(5))
    assert list(pd.unique(clean.metrics["metric_name"])) == list(METRICS)
    assert (rows >= 1).all() and (rows == np.round(rows)).all()
    assert (distinct >= 1).all() and (distinct <= rows).all() and (distinct == np.round(distinct)).all()
    assert ((nulls >= 0) & (nulls <= 100)).all()
    assert 0.4 <= np.median(nulls) <= 3.5
    assert (amount > 0).all() and (duration > 0).all()
    # Scale spans orders of magnitude, log-uniform within ~1e3..1e7.
    medians = np.median(rows, axis=1)
    assert medians.min() < 2e4 and medians.max() > 1e6 and medians.max() < 3e7 and medians.min() > 2e2
    # Within a table, distinct and sum follow the row count from load to load.
    for t in range(len(rows)):
        if np.std(np.log(rows[t])) > 0.1:  # a table with a visible weekly cycle
            assert np.corrcoef(rows[t], amount[t])[0, 1] > 0.9
            assert np.corrcoef(rows[t], distinct[t])[0, 1] > 0.9
    # Bigger tables take longer to load.
    assert pd.Series(medians).corr(pd.Series(np.median(duration, axis=1)), method="spearman") > 0.5


def test_normal_loads_never_repeat_the_previous_load_exactly(clean: SynthData) -> None:
    c = cube(clean)
    same = (c[:, :, 1:] == c[:, :, :-1]).all(axis=1)
    assert not same.any()


def test_weekly_cycle_for_business_tables_only(clean: SynthData) -> None:
    rows = cube(clean)[:, 0, :]
    dates, is_hol = calendar(clean, DAYS)
    weekday = np.array([x.weekday() for x in dates])
    ends = month_end_days(dates, set(clean.holidays))
    plain = ~is_hol & ~np.isin(np.arange(DAYS), list(ends))
    profiles = dict(synth._BASE_TABLES)
    for t, name in enumerate(table_order(clean)):
        ratio = np.median(rows[t, plain & (weekday >= 5)]) / np.median(rows[t, plain & (weekday < 5)])
        if profiles[name.split("_0")[0]] == "business":
            assert 0.25 <= ratio <= 0.65, name
        else:
            assert 0.9 <= ratio <= 1.1, name


def test_month_end_surge_on_business_tables_and_not_labelled(clean: SynthData) -> None:
    rows = cube(clean)[:, 0, :]
    dates, is_hol = calendar(clean, DAYS)
    ends = month_end_days(dates, set(clean.holidays))
    assert len([i for i, r in ends.items() if r == 1]) >= 5
    usable = ~is_hol & ~np.isin(np.arange(DAYS), list(ends))
    profiles = dict(synth._BASE_TABLES)
    surges, flats = [], []
    for t, name in enumerate(table_order(clean)):
        for i, rank in ends.items():
            if rank != 1:
                continue
            ratio = rows[t, i] / same_weekday_median(rows[t], i, usable)
            (surges if profiles[name.split("_0")[0]] == "business" else flats).append(ratio)
    assert min(surges) > 1.15
    assert 1.3 <= float(np.mean(surges)) <= 2.0
    assert min(flats) >= 0.85 and max(flats) <= 1.15
    assert clean.incidents.empty  # surges are normal behaviour, never labelled


def test_holidays_have_low_volume_and_are_never_labelled(data: SynthData) -> None:
    assert data.holidays == (
        dt.date(2026, 5, 25),
        dt.date(2026, 6, 19),
        dt.date(2026, 7, 3),  # observed Independence Day
        dt.date(2026, 7, 4),  # the day itself, a Saturday: the holidays package lists both
        dt.date(2026, 9, 7),
        dt.date(2026, 10, 12),
    )
    rows = cube(data)[:, 0, :]
    dates, is_hol = calendar(data, DAYS)
    ends = month_end_days(dates, set(data.holidays))
    inc = incident_index(data)
    hit = np.zeros_like(rows, dtype=bool)
    hit[inc["t"], inc["d"]] = True
    usable_base = ~is_hol & ~np.isin(np.arange(DAYS), list(ends))
    ratios = []
    for t in range(len(rows)):
        usable = usable_base & ~hit[t]
        ratios += [rows[t, i] / same_weekday_median(rows[t], i, usable) for i in np.flatnonzero(is_hol)]
    assert min(ratios) >= 0.08 and max(ratios) <= 0.45
    assert not set(data.incidents["load_ts"].dt.date) & set(data.holidays)


def test_custom_holiday_calendar_replaces_the_default() -> None:
    custom = generate(tables=10, days=120, seed=2, incident_rate=0.0, holidays=[dt.date(2026, 8, 12)])
    default = generate(tables=10, days=120, seed=2, incident_rate=0.0)
    assert custom.holidays == (dt.date(2026, 8, 12),)
    dates, _ = calendar(custom, 120)
    for d, other in ((custom, default), (default, custom)):
        rows, ref = cube(d)[:, 0, :], cube(other)[:, 0, :]
        for h in d.holidays:
            i = dates.index(h)
            assert (rows[:, i] / ref[:, i] < 0.45).all()  # low only under the calendar that has it
    assert generate(tables=3, days=30, seed=2, holidays=()).holidays == ()


def test_default_holidays_are_the_us_calendar_of_the_holidays_package() -> None:
    d = generate(tables=2, days=365, seed=0, end="2026-12-31", incident_rate=0.0)
    assert d.holidays == holiday_dates("US", dt.date(2026, 1, 1), dt.date(2026, 12, 31))
    assert dt.date(2026, 7, 3) in d.holidays  # July 4th is a Saturday: the observed Friday closes
    assert dt.date(2026, 11, 26) in d.holidays  # Thanksgiving


# --- incidents ------------------------------------------------------------------------------------


def test_incidents_avoid_history_and_holidays_and_cover_every_kind(data: SynthData) -> None:
    inc = incident_index(data)
    assert set(inc["kind"]) == set(INCIDENT_KINDS)
    assert inc["d"].min() >= math.ceil(0.15 * DAYS)
    assert not set(inc["load_ts"].dt.date) & set(data.holidays)
    assert not inc.duplicated(["table_name", "metric_name", "load_ts"]).any()
    # Every metric an incident kind names is labelled on each of its loads, and nothing else.
    per_load = inc.groupby(["t", "d"]).agg(kind=("kind", "first"), n_kinds=("kind", "nunique"), m=("m", set))
    assert (per_load["n_kinds"] == 1).all()
    for kind, ms in zip(per_load["kind"], per_load["m"], strict=True):
        assert ms == {METRICS.index(x) for x in INCIDENT_METRICS[kind]}


def test_incident_rate_is_the_share_of_eligible_loads_that_start_one() -> None:
    d = generate(tables=400, days=180, seed=9, metrics=("row_count", "null_pct"))
    inc = incident_index(d).drop_duplicates(["t", "d"]).sort_values(["t", "d"])
    starts = inc[(inc["t"] != inc["t"].shift()) | (inc["d"] != inc["d"].shift() + 1)]
    eligible = 400 * (180 - math.ceil(0.15 * 180) - len(d.holidays))
    assert 0.010 <= len(starts) / eligible <= 0.016  # 1.5 % minus the spacing rule's rejections


def test_only_incident_points_differ_from_the_counterfactual(data: SynthData, clean: SynthData) -> None:
    for col in ("table_name", "metric_name", "load_ts", "job_name", "is_rerun"):
        assert data.metrics[col].equals(clean.metrics[col])
    differs = data.metrics["metric_value"].to_numpy() != clean.metrics["metric_value"].to_numpy()
    changed = set(
        zip(
            data.metrics.loc[differs, "table_name"],
            data.metrics.loc[differs, "metric_name"],
            data.metrics.loc[differs, "load_ts"],
            strict=True,
        )
    )
    labelled = set(
        zip(data.incidents["table_name"], data.incidents["metric_name"], data.incidents["load_ts"], strict=True)
    )
    assert changed <= labelled
    assert len(changed) >= 0.95 * len(labelled)  # a stuck row count can equal the clean one by chance


def _signature_frame(data: SynthData, clean: SynthData) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    return incident_index(data), cube(data), cube(clean)


def test_partial_empty_duplicated_signatures(data: SynthData, clean: SynthData) -> None:
    inc, obs, ref = _signature_frame(data, clean)
    loads = inc.drop_duplicates(["t", "d"])
    row, nul, dis, amt, dur = range(5)
    for kind in ("partial", "empty", "duplicated"):
        sel = loads[loads["kind"] == kind]
        assert len(sel) >= 3, kind
        for t, d in zip(sel["t"], sel["d"], strict=True):
            o, r = obs[t, :, d], ref[t, :, d]
            assert o[dur] == r[dur]
            if kind == "partial":
                ratio = o[row] / r[row]
                assert 0.2 - 0.01 <= ratio <= 0.6 + 0.01
                assert o[amt] / r[amt] == pytest.approx(ratio, rel=1e-6, abs=1e-6)
                assert o[dis] / r[dis] == pytest.approx(ratio, abs=0.02)
                assert o[nul] == r[nul]
            elif kind == "empty":
                assert o[row] == o[dis] == o[amt] == o[nul] == 0.0
            else:
                assert o[row] == 2 * r[row] and o[amt] == pytest.approx(2 * r[amt])
                assert o[dis] == r[dis] and o[nul] == r[nul]


def test_duplicated_load_doubles_the_same_weekday_typical_volume(data: SynthData) -> None:
    inc = incident_index(data)
    rows = cube(data)[:, 0, :]
    dates, is_hol = calendar(data, DAYS)
    ends = month_end_days(dates, set(data.holidays))
    hit = np.zeros_like(rows, dtype=bool)
    hit[inc["t"], inc["d"]] = True
    dup = inc[(inc["kind"] == "duplicated") & (inc["metric_name"] == "row_count")]
    checked = 0
    for t, d in zip(dup["t"], dup["d"], strict=True):
        if d in ends:
            continue  # doubled on top of a month-end surge
        usable = ~is_hol & ~hit[t] & ~np.isin(np.arange(DAYS), list(ends))
        assert 1.6 <= rows[t, d] / same_weekday_median(rows[t], d, usable) <= 2.4
        checked += 1
    assert checked >= 3


def test_single_metric_signatures(data: SynthData, clean: SynthData) -> None:
    inc, obs, ref = _signature_frame(data, clean)
    loads = inc.drop_duplicates(["t", "d"])
    nul, dis, dur = METRICS.index("null_pct"), METRICS.index("distinct_count"), METRICS.index("load_duration_s")
    touched = {"null_spike": nul, "distinct_collapse": dis, "slow": dur}
    for kind, m in touched.items():
        sel = loads[loads["kind"] == kind]
        assert len(sel) >= 3, kind
        for t, d in zip(sel["t"], sel["d"], strict=True):
            o, r = obs[t, :, d], ref[t, :, d]
            others = [i for i in range(5) if i != m]
            assert (o[others] == r[others]).all(), kind
            if kind == "null_spike":
                assert 14.5 <= o[nul] <= 80.5 and r[nul] < 10
            elif kind == "distinct_collapse":
                assert 0.0 < o[dis] / r[dis] <= 0.21
            else:
                assert 4.0 - 0.05 <= o[dur] / r[dur] <= 10.0 + 0.05


def test_sum_drift_runs_shift_the_sum_by_one_factor(data: SynthData, clean: SynthData) -> None:
    inc, obs, ref = _signature_frame(data, clean)
    drift = inc[inc["kind"] == "sum_drift"].sort_values(["t", "d"])
    assert set(drift["metric_name"]) == {"sum_amount"}
    run = ((drift["t"] != drift["t"].shift()) | (drift["d"] != drift["d"].shift() + 1)).cumsum()
    lengths = drift.groupby(run).size()
    assert lengths.between(1, 5).all() and lengths.max() > 1
    for _, g in drift.groupby(run):
        t = int(g["t"].iloc[0])
        ratio = obs[t, 3, g["d"]] / ref[t, 3, g["d"]]
        assert np.allclose(ratio, ratio[0], atol=1e-4)
        assert 0.25 - 1e-3 <= abs(ratio[0] - 1) <= 0.6 + 1e-3
        assert (obs[t, [0, 1, 2, 4]][:, g["d"]] == ref[t, [0, 1, 2, 4]][:, g["d"]]).all()


def test_stuck_loads_repeat_the_previous_clean_load_exactly(data: SynthData) -> None:
    inc = incident_index(data)
    obs = cube(data)
    stuck = inc[inc["kind"] == "stuck"].drop_duplicates(["t", "d"]).sort_values(["t", "d"])
    run = ((stuck["t"] != stuck["t"].shift()) | (stuck["d"] != stuck["d"].shift() + 1)).cumsum()
    lengths = stuck.groupby(run).size()
    assert lengths.between(1, 3).all() and lengths.max() > 1
    labelled = set(zip(inc["t"], inc["d"], strict=True))
    for _, g in stuck.groupby(run):
        t, first = int(g["t"].iloc[0]), int(g["d"].iloc[0])
        assert (t, first - 1) not in labelled  # the copied load is a clean one
        for d in g["d"]:
            assert (obs[t, :, d] == obs[t, :, first - 1]).all()
        assert set(inc.loc[inc["t"].eq(t) & inc["d"].isin(g["d"]), "metric_name"]) == set(METRICS)


def test_incidents_of_a_table_are_separated_by_a_clean_load(data: SynthData) -> None:
    inc = incident_index(data).drop_duplicates(["t", "d"]).sort_values(["t", "d"])
    adjacent = (inc["t"] == inc["t"].shift()) & (inc["d"] == inc["d"].shift() + 1)
    assert (inc.loc[adjacent, "kind"].to_numpy() == inc.shift().loc[adjacent, "kind"].to_numpy()).all()
    assert set(inc.loc[adjacent, "kind"]) <= {"sum_drift", "stuck"}


def test_final_load_incidents_land_on_the_last_load() -> None:
    forced = (("empty", 3), ("duplicated", 7), ("null_spike", 11), ("stuck", 12))
    d = generate(tables=20, days=90, seed=4, incident_rate=0.0, final_load_incidents=forced)
    ref = generate(tables=20, days=90, seed=4, incident_rate=0.0)
    obs, base, ts = cube(d), cube(ref), load_times(d)
    inc = incident_index(d)
    assert set(zip(inc["kind"], inc["t"], strict=True)) == set(forced)
    assert (inc["d"] == 89).all()
    assert (inc["load_ts"].to_numpy() == ts[inc["t"], 89]).all()
    assert (obs[3, [0, 1, 2, 3], 89] == 0).all()
    assert obs[7, 0, 89] == 2 * base[7, 0, 89] and obs[7, 2, 89] == base[7, 2, 89]
    assert obs[11, 1, 89] >= 14.5
    assert (obs[12, :, 89] == obs[12, :, 88]).all()
    untouched = np.ones(20, dtype=bool)
    untouched[[3, 7, 11, 12]] = False
    assert (obs[untouched] == base[untouched]).all()
    # With random incidents too, the forced ones still land and nothing touches them.
    e = generate(tables=20, days=90, seed=4, incident_rate=0.2, final_load_incidents=forced)
    inc = incident_index(e)
    for kind, t in forced:
        assert set(inc.loc[(inc["t"] == t) & (inc["d"] >= 88), "kind"]) == {kind}
        assert not ((inc["t"] == t) & (inc["d"] == 88)).any()


def test_metric_subset_restricts_incidents_and_rejects_invisible_forced_kinds() -> None:
    d = generate(tables=40, days=120, seed=6, incident_rate=0.08, metrics=("row_count",))
    assert set(d.metrics["metric_name"]) == {"row_count"}
    assert set(d.incidents["metric_name"]) == {"row_count"}
    assert set(d.incidents["kind"]) == {"partial", "empty", "duplicated", "stuck"}
    with pytest.raises(ValueError, match="null_spike"):
        generate(tables=3, days=30, metrics=("row_count",), final_load_incidents=(("null_spike", 0),))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"final_load_incidents": (("exploded", 0),)},
        {"final_load_incidents": (("empty", 20),)},
        {"final_load_incidents": (("empty", 1), ("slow", 1))},
        {"incident_rate": 1.5},
        {"metrics": ("row_count", "row_count")},
        {"metrics": ("rows",)},
        {"tables": 0},
    ],
)
def test_invalid_arguments_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(**({"tables": 20, "days": 30} | kwargs))


# --- derived frames -------------------------------------------------------------------------------


def test_series_and_labels_frames_match_metrics_and_incidents(data: SynthData) -> None:
    s = data.series_frame()
    assert list(s.columns) == ["series", "timestamp", "value"]
    assert len(s) == len(data.metrics)
    assert (s["series"] == data.metrics["table_name"] + "/" + data.metrics["metric_name"]).all()
    assert (s["timestamp"] == data.metrics["load_ts"]).all() and s["timestamp"].dtype == "datetime64[ns]"
    assert (s["value"] == data.metrics["metric_value"]).all()
    assert s["series"].nunique() == TABLES * len(METRICS)

    labels = data.labels_frame()
    assert list(labels.columns) == ["series", "timestamp", "is_anomaly"]
    assert (labels["is_anomaly"] == 1).all() and len(labels) == len(data.incidents)
    expected = set(
        zip(data.incidents["table_name"] + "/" + data.incidents["metric_name"], data.incidents["load_ts"], strict=True)
    )
    assert set(zip(labels["series"], labels["timestamp"], strict=True)) == expected

    full = data.labels_frame(all_points=True)
    assert len(full) == len(s) and full["is_anomaly"].sum() == len(data.incidents)
    assert (full["series"] == s["series"]).all() and (full["timestamp"] == s["timestamp"]).all()
    flagged = set(
        zip(full.loc[full["is_anomaly"] == 1, "series"], full.loc[full["is_anomaly"] == 1, "timestamp"], strict=True)
    )
    assert flagged == expected


def test_windows_are_maximal_runs_of_incident_points(data: SynthData) -> None:
    w = data.windows_frame()
    assert list(w.columns) == ["series", "start", "end"]
    assert (w["start"] <= w["end"]).all()
    s = data.series_frame()
    labelled = set(zip(data.labels_frame()["series"], data.labels_frame()["timestamp"], strict=True))
    covered = 0
    by_series = dict(tuple(s.groupby("series", sort=False)["timestamp"]))
    for series, start, end in w.itertuples(index=False):
        ts = by_series[series].to_numpy()
        i, j = np.searchsorted(ts, np.datetime64(start)), np.searchsorted(ts, np.datetime64(end))
        inside = ts[i : j + 1]
        assert ts[i] == start and ts[j] == end
        assert all((series, pd.Timestamp(x)) in labelled for x in inside)  # no gap
        assert i == 0 or (series, pd.Timestamp(ts[i - 1])) not in labelled  # maximal
        assert j == len(ts) - 1 or (series, pd.Timestamp(ts[j + 1])) not in labelled
        covered += len(inside)
    assert covered == len(labelled)  # windows partition the incident points
    assert len(w) > len(data.incidents.drop_duplicates(["table_name", "load_ts"])) // 2
    assert len(w) < len(labelled)  # multi-load incidents were merged


def test_frames_of_a_run_without_incidents_are_empty_and_typed() -> None:
    d = generate(tables=3, days=20, seed=0, incident_rate=0.0)
    assert d.incidents.empty and d.labels_frame().empty and d.windows_frame().empty
    assert d.windows_frame()["start"].dtype == np.dtype("datetime64[ns]")
    assert d.labels_frame(all_points=True)["is_anomaly"].eq(0).all()
