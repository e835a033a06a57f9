"""A development corpus that cannot be memorised: many benign structures, many incident kinds.

The older generator (``dqad_dev.synth``) draws every table from one or two structures, so a detector
tuned on it learns those structures (one month-end convention, one weekly shape) rather than data
quality. This generator draws each *table* (a load group: its metrics share one load timestamp) from
one of many benign **families**, and reports detection per family, so that a detector that only
handles one convention shows a bad worst family instead of a good average (docs/architecture.md §6:
"judged on data it was not tuned on").

Benign families (nothing in them is labelled except the first loads after a planned level shift):

* cadences: ``daily_trend`` (one load a day, a trend, no weekly cycle), ``hourly`` (hour-of-day and
  weekday x hour pattern), ``multi_daily`` (four loads a day, each slot with its own level),
  ``irregular`` (load times jitter by hours, about 10 % of loads skipped without catch-up);
* weekly: ``weekly`` (one of four shapes: weekend drop, Monday catch-up, mid-week hump, Sunday off);
* month-end conventions: ``month_end_calendar`` (surge on the calendar last day, weekend or not),
  ``month_end_business`` (the last one or two business days), ``month_start_business`` (the first
  business day), ``quarter_end`` (the last three calendar days of a quarter), ``payroll_friday``
  (every other Friday);
* holidays: ``holidays_<country>`` for each of two countries, with the dates of the ``holidays``
  package (through :func:`dqad.detect.holiday_calendar.holiday_dates`);
* ``level_shift``: a planned, lasting change of volume (x0.4-0.7 or x1.6-3) that should alert once
  (its first three loads are one labelled window) and then be learnt;
* value shapes: ``counts_near_zero`` (Poisson counts, mean 1-6), ``zero_inflated`` (60-85 % zeros),
  ``heavy_tailed`` (sums with log-normal noise of sigma 0.5-0.9), ``bounded_pct`` (a percentage that
  lives between 10 and 70 % with wide noise).

Every table except the cadence and weekly families also draws a background weekly shape (or none), so
no family is one fixed curve. Tables have neutral names (``db007.orders``): the name says nothing
about the family.

Incidents (:data:`INCIDENT_KINDS`) start after the first 15 % of each series (the history a backtest
learns from), never on a holiday of the table's own calendar nor near a level shift, with at least
two clean loads between two incidents of a table: ``empty``, ``partial``, ``duplicated``,
``null_spike``, ``distinct_collapse``, ``stuck`` (every metric repeats the previous load's values for
1-3 loads), ``gradual_drift`` (the null percentage creeps up over 4-8 loads), ``slow_load`` (duration
x4-10) and ``missing_load`` (a load that never ran: its point is absent and the next load carries its
rows as a catch-up; the window spans both timestamps). Families whose values make a kind invisible
(an empty load of a zero-inflated count) do not draw it. Each incident labels the series it changes;
windows are ``series,start,end`` with both ends inclusive.

Determinism: every table draws from its own child of ``numpy.random.SeedSequence(seed)``, so the
same arguments always give the same corpus, and asking for fewer families leaves the others' tables
unchanged.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from dqad.detect.holiday_calendar import holiday_dates

__all__ = [
    "FAMILIES",
    "HISTORY_FRACTION",
    "INCIDENT_KINDS",
    "METRICS",
    "Corpus",
    "generate_corpus",
]

METRICS: tuple[str, ...] = ("row_count", "null_pct", "distinct_count", "sum_amount", "load_duration_s")

INCIDENT_KINDS: tuple[str, ...] = (
    "empty",
    "partial",
    "duplicated",
    "null_spike",
    "distinct_collapse",
    "stuck",
    "gradual_drift",
    "slow_load",
    "missing_load",
)

#: The metrics each incident kind changes, and therefore labels.
INCIDENT_METRICS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "empty": ("row_count", "null_pct", "distinct_count", "sum_amount"),
        "partial": ("row_count", "distinct_count", "sum_amount"),
        "duplicated": ("row_count", "sum_amount"),
        "null_spike": ("null_pct",),
        "distinct_collapse": ("distinct_count",),
        "stuck": METRICS,
        "gradual_drift": ("null_pct",),
        "slow_load": ("load_duration_s",),
        "missing_load": ("row_count", "distinct_count", "sum_amount"),
        "level_shift": ("row_count", "distinct_count", "sum_amount"),
    }
)

FAMILIES: tuple[str, ...] = (
    "daily_trend",
    "weekly",
    "hourly",
    "multi_daily",
    "irregular",
    "month_end_calendar",
    "month_end_business",
    "month_start_business",
    "quarter_end",
    "payroll_friday",
    "holidays_us",
    "holidays_de",
    "level_shift",
    "counts_near_zero",
    "zero_inflated",
    "heavy_tailed",
    "bounded_pct",
)

#: The two countries whose ``holidays`` calendars the holiday families follow.
HOLIDAY_COUNTRIES: MappingProxyType[str, str] = MappingProxyType({"holidays_us": "US", "holidays_de": "DE"})

#: Leading fraction of every series kept free of incidents (the history a backtest trains on).
HISTORY_FRACTION = 0.15

# Kinds a family's values would hide: a zero-inflated or near-zero count is often 0, 1 or doubled
# anyway, so empty, partial, duplicated, collapsed or caught-up loads of it are not incidents one can see.
_HIDDEN: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "counts_near_zero": frozenset({"empty", "partial", "duplicated", "distinct_collapse", "missing_load"}),
        "zero_inflated": frozenset({"empty", "partial", "duplicated", "distinct_collapse", "missing_load"}),
    }
)
# Metrics a stuck run does not label in a family (small counts repeat by chance).
_STUCK_UNLABELLED: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "counts_near_zero": frozenset({"row_count", "distinct_count"}),
        "zero_inflated": frozenset({"row_count", "distinct_count", "sum_amount"}),
    }
)
_WEEKLY_SHAPES: tuple[str, ...] = ("none", "weekend_drop", "monday_peak", "midweek_hump", "sunday_off")
_NOUNS: tuple[str, ...] = (
    "orders", "customers", "gl_entries", "page_views", "invoices", "shipments", "events", "receipts",
    "timesheets", "sends", "transactions", "tickets", "sessions", "returns", "payments", "picks",
    "alerts", "readings", "quotes", "movements",
)
_HOURLY_DAYS = 42  # hourly tables cover the last six weeks only (24 loads a day)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A generated corpus: the long frame, its labelled windows, each series' family, the holidays.

    ``frame``: ``series,timestamp,value`` (``series = "<table>/<metric>"``, so ``--group-by-prefix``
    groups a table's metrics). ``windows``: ``series,start,end,kind`` (both ends inclusive).
    ``families``: ``series,table,family``. ``holidays``: every holiday date of both countries inside
    the corpus (what a user would pass with ``--holidays``); ``holidays_by_country`` splits them.
    """

    frame: pd.DataFrame
    windows: pd.DataFrame
    families: pd.DataFrame
    holidays: tuple[dt.date, ...]
    holidays_by_country: MappingProxyType[str, tuple[dt.date, ...]]

    def family_of(self) -> dict[str, str]:
        """Series name -> its benign family."""
        return dict(zip(self.families["series"], self.families["family"], strict=True))


@dataclass(frozen=True)
class _Table:
    """One table's generated loads: timestamps (ns), values per metric, windows, the family."""

    name: str
    family: str
    ts: np.ndarray
    values: dict[str, np.ndarray]
    windows: list[tuple[str, int, int, str]]  # (metric, first ts ns, last ts ns, kind)


def _load_times(rng: np.random.Generator, family: str, start: dt.date, days: int) -> np.ndarray:
    """Load start times in int64 ns for the family's cadence (whole seconds)."""
    day0 = np.datetime64(start, "D").astype("datetime64[ns]").astype(np.int64)
    minute = 60 * 1_000_000_000
    if family == "hourly":
        n = min(days, _HOURLY_DAYS) * 24
        first = day0 + (days - n // 24) * 24 * 60 * minute
        offset = int(rng.integers(0, 20))
        return first + (np.arange(n) * 60 + offset + rng.integers(0, 3, n)) * minute
    day_starts = day0 + np.arange(days) * 24 * 60 * minute
    if family == "multi_daily":
        slots = np.array([1, 7, 13, 19]) * 60 + int(rng.integers(0, 30))
        t = (day_starts[:, None] + slots[None, :] * minute).ravel()
        return t + rng.integers(0, 5, len(t)) * minute
    base = int(rng.integers(60, 420))
    if family == "irregular":
        jitter = np.clip(rng.normal(0.0, 90.0, days), -180, 180).round().astype(np.int64)
        t = day_starts + (base + 180 + jitter) * minute
        keep = rng.random(days) >= 0.1
        keep[: max(3, days // 10)] = True  # a history to learn from
        return t[keep]
    jitter = np.clip(rng.normal(0.0, 4.0, days), -15, 15).round().astype(np.int64)
    return day_starts + (base + jitter) * minute + rng.integers(0, 60, days) * 1_000_000_000


def _business_rank(dates: pd.DatetimeIndex, from_end: bool) -> np.ndarray:
    """1 for the last (or first) Monday-Friday of each month, 2 for the one before (after), 0 otherwise.

    Ranked over the full calendar month, whether or not the series covers it."""
    out = np.zeros(len(dates), dtype=np.int64)
    days = dates.normalize()
    for period in days.to_period("M").unique():
        month = pd.date_range(period.start_time, period.end_time.normalize(), freq="D")
        business = month[month.day_of_week < 5]
        ordered = business[::-1] if from_end else business
        for rank, day in enumerate(ordered[:2], start=1):
            out[days == day] = rank
    return out


def _weekly(shape: str, weekday: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative weekly profile of the given shape, with table-specific amplitudes."""
    w = np.ones(7)
    if shape == "weekend_drop":
        w[5:] = rng.uniform(0.3, 0.6, 2)
    elif shape == "monday_peak":
        w[0] = rng.uniform(1.3, 1.8)
        w[6] = rng.uniform(0.5, 0.8)
    elif shape == "midweek_hump":
        w = 1.0 + rng.uniform(0.15, 0.4) * np.sin(np.pi * np.arange(7) / 6.0)
    elif shape == "sunday_off":
        w[6] = rng.uniform(0.05, 0.15)
    w[:5] *= 1.0 + rng.normal(0.0, 0.03, 5)
    return w[weekday]


def _level(rng: np.random.Generator, family: str, t: pd.DatetimeIndex, holidays: frozenset[dt.date]) -> tuple[
    np.ndarray, int | None
]:
    """The volume level of each load (before noise) and the index of a planned level shift, if any."""
    n = len(t)
    years = (t - t[0]).total_seconds().to_numpy() / (365.0 * 86400)
    log_scale = rng.uniform(math.log(2e3), math.log(5e6))
    growth = rng.uniform(-0.3, 0.9) if family in ("daily_trend", "level_shift") else rng.uniform(-0.1, 0.3)
    level = np.exp(log_scale + growth * years)
    weekday = t.day_of_week.to_numpy()
    if family in ("hourly", "multi_daily", "irregular", "weekly"):
        shape = str(rng.choice(_WEEKLY_SHAPES[1:])) if family == "weekly" else str(rng.choice(_WEEKLY_SHAPES))
    else:
        shape = str(rng.choice(_WEEKLY_SHAPES))
    level = level * _weekly(shape, weekday, rng)
    hour = t.hour.to_numpy()
    if family == "hourly":
        peak = rng.uniform(10, 16)
        level = level * (1.0 + rng.uniform(0.5, 1.5) * np.exp(-((hour - peak) ** 2) / (2 * 3.0**2)))
        level = level * np.where(weekday >= 5, 1.0, 1.0 + rng.uniform(0.1, 0.4) * (np.abs(hour - peak) < 4))
    elif family == "multi_daily":
        slot_level = rng.uniform(0.3, 1.7, 4)
        level = level * slot_level[np.clip(hour // 6, 0, 3)]
    day = t.day.to_numpy()
    days_in_month = t.days_in_month.to_numpy()
    surge = rng.uniform(1.5, 2.5)
    if family == "month_end_calendar":
        level = level * np.where(day == days_in_month, surge, 1.0)
    elif family == "month_end_business":
        rank = _business_rank(t, from_end=True)
        second = rng.uniform(1.2, surge) if rng.random() < 0.5 else 1.0
        level = level * np.where(rank == 1, surge, np.where(rank == 2, second, 1.0))
    elif family == "month_start_business":
        level = level * np.where(_business_rank(t, from_end=False) == 1, surge, 1.0)
    elif family == "quarter_end":
        q_end = np.isin(t.month.to_numpy(), (3, 6, 9, 12)) & (day > days_in_month - 3)
        level = level * np.where(q_end, rng.uniform(2.0, 4.0), 1.0)
    elif family == "payroll_friday":
        week = (t.normalize() - pd.Timestamp("2020-01-03")).days.to_numpy() // 7
        level = level * np.where((weekday == 4) & (week % 2 == int(rng.integers(0, 2))), surge, 1.0)
    elif family in HOLIDAY_COUNTRIES:
        on_holiday = np.array([d in holidays for d in t.date], dtype=bool)
        level = level * np.where(on_holiday, rng.uniform(0.1, 0.4, n), 1.0)
    shift_at = None
    if family == "level_shift":
        shift_at = int(rng.integers(int(0.35 * n), int(0.6 * n)))
        factor = rng.uniform(0.4, 0.7) if rng.random() < 0.5 else rng.uniform(1.6, 3.0)
        level[shift_at:] *= factor
    return level, shift_at


def _values(rng: np.random.Generator, family: str, level: np.ndarray) -> dict[str, np.ndarray]:
    """The clean metrics of each load from its volume level; a load's metrics move together."""
    n = len(level)
    sigma = rng.uniform(0.01, 0.05)
    if family == "counts_near_zero":
        rows = rng.poisson(rng.uniform(1.0, 6.0) * level / level.mean()).astype(np.float64)
    elif family == "zero_inflated":
        nonzero = rng.random(n) >= rng.uniform(0.6, 0.85)
        rows = np.where(nonzero, 1.0 + rng.poisson(rng.uniform(2.0, 30.0), n), 0.0)
    else:
        rows = np.maximum(1.0, np.round(level * np.exp(sigma * rng.standard_normal(n))))
    distinct = np.clip(np.round(rows * rng.uniform(0.2, 1.0) * np.exp(0.005 * rng.standard_normal(n))), 0, rows)
    amount_sigma = rng.uniform(0.5, 0.9) if family == "heavy_tailed" else rng.uniform(0.01, 0.03)
    avg = math.exp(rng.uniform(math.log(5.0), math.log(2000.0)))
    if family == "zero_inflated":
        amount_sigma = 0.3
    amount = np.round(rows * avg * np.exp(amount_sigma * rng.standard_normal(n)), 2)
    if family == "bounded_pct":
        centre = rng.uniform(-2.0, 0.5)  # logit of 12-62 %
        null_pct = 100.0 / (1.0 + np.exp(-(centre + rng.uniform(0.2, 0.4) * rng.standard_normal(n))))
    else:
        null_pct = rng.uniform(0.5, 3.0) * np.exp(rng.uniform(0.1, 0.3) * rng.standard_normal(n))
    null_pct = np.round(np.clip(null_pct, 0.0, 100.0), 3).astype(np.float64)
    overhead = rng.uniform(15.0, 120.0)
    throughput = math.exp(rng.uniform(math.log(1e4), math.log(1e5)))
    duration = np.round((overhead + rows / throughput) * np.exp(rng.uniform(0.05, 0.15) * rng.standard_normal(n)), 1)
    return {
        "row_count": rows,
        "null_pct": null_pct,
        "distinct_count": distinct.astype(np.float64),
        "sum_amount": amount,
        "load_duration_s": duration,
    }


def _apply(
    rng: np.random.Generator, kind: str, family: str, v: dict[str, np.ndarray], lo: int, hi: int
) -> None:
    """Write one incident's signature on loads ``lo..hi-1`` in place (missing loads are removed later)."""
    sl = slice(lo, hi)
    if kind == "empty":
        for m in ("row_count", "distinct_count", "sum_amount", "null_pct"):
            v[m][sl] = 0.0
    elif kind == "partial":
        ratio = rng.uniform(0.2, 0.6)
        for m in ("row_count", "distinct_count", "sum_amount"):
            v[m][sl] = np.round(v[m][sl] * ratio, 2)
    elif kind == "duplicated":
        v["row_count"][sl] *= 2.0
        v["sum_amount"][sl] *= 2.0
    elif kind == "null_spike":
        base = v["null_pct"][sl]
        v["null_pct"][sl] = np.round(np.minimum(100.0, np.maximum(base + rng.uniform(25.0, 45.0),
                                                                  rng.uniform(15.0, 80.0))), 3)
    elif kind == "distinct_collapse":
        v["distinct_count"][sl] = np.maximum(1.0, np.round(v["distinct_count"][sl] * rng.uniform(0.01, 0.2)))
    elif kind == "stuck":
        for arr in v.values():
            arr[sl] = arr[lo - 1]
    elif kind == "gradual_drift":
        ramp = 1.0 + (rng.uniform(3.0, 6.0) - 1.0) * np.arange(1, hi - lo + 1) / (hi - lo)
        v["null_pct"][sl] = np.round(np.minimum(100.0, v["null_pct"][sl] * ramp), 3)
    elif kind == "slow_load":
        v["load_duration_s"][sl] = np.round(v["load_duration_s"][sl] * rng.uniform(4.0, 10.0), 1)
    elif kind == "missing_load":  # the next load catches up the missing one's rows
        for m in ("row_count", "distinct_count", "sum_amount"):
            v[m][hi] += v[m][lo]
    else:  # pragma: no cover - kinds are fixed above
        raise AssertionError(kind)


def _table(
    seq: np.random.SeedSequence, name: str, family: str, start: dt.date, days: int,
    holidays: frozenset[dt.date], incidents_per_table: tuple[int, int],
) -> _Table:
    rng = np.random.default_rng(seq)
    ts = _load_times(rng, family, start, days)
    t = pd.DatetimeIndex(ts.view("datetime64[ns]"))
    level, shift_at = _level(rng, family, t, holidays)
    values = _values(rng, family, level)
    n = len(ts)
    on_holiday = np.array([d in holidays for d in t.date], dtype=bool) if family in HOLIDAY_COUNTRIES else np.zeros(
        n, dtype=bool)
    taken = np.zeros(n, dtype=bool)
    windows: list[tuple[str, int, int, str]] = []
    if shift_at is not None:
        taken[max(0, shift_at - 3): shift_at + 6] = True
        for m in INCIDENT_METRICS["level_shift"]:
            windows.append((m, int(ts[shift_at]), int(ts[min(shift_at + 2, n - 1)]), "level_shift"))
    kinds = tuple(k for k in INCIDENT_KINDS if k not in _HIDDEN.get(family, frozenset()))
    first = math.ceil(HISTORY_FRACTION * n) + 1
    removed: list[int] = []
    for _ in range(int(rng.integers(incidents_per_table[0], incidents_per_table[1] + 1))):
        kind = str(rng.choice(kinds))
        length = int(rng.integers(4, 9)) if kind == "gradual_drift" else (
            int(rng.integers(1, 4)) if kind == "stuck" else 1)
        for _attempt in range(20):
            lo = int(rng.integers(first, n - length - 1))
            hi = lo + length
            span = slice(lo - 2, hi + 3)  # two clean loads around (and the catch-up load of a missing one)
            if not taken[span].any() and not on_holiday[lo: hi + 1].any():
                break
        else:
            continue
        taken[span] = True
        _apply(rng, kind, family, values, lo, hi)
        last = hi if kind == "missing_load" else hi - 1
        labelled = set(INCIDENT_METRICS[kind]) - (_STUCK_UNLABELLED.get(family, frozenset()) if kind == "stuck"
                                                  else frozenset())
        for m in METRICS:
            if m in labelled:
                windows.append((m, int(ts[lo]), int(ts[last]), kind))
        if kind == "missing_load":
            removed.append(lo)
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    return _Table(name=name, family=family, ts=ts[keep], values={m: a[keep] for m, a in values.items()},
                  windows=windows)


def generate_corpus(
    *,
    seed: int = 0,
    tables_per_family: int = 2,
    days: int = 270,
    end: dt.date | str = "2026-11-02",
    families: Sequence[str] = FAMILIES,
    incidents_per_table: tuple[int, int] = (2, 4),
) -> Corpus:
    """Generate ``tables_per_family`` tables of each family, ``days`` days ending on ``end``.

    Hourly tables cover only the last six weeks of the span (24 loads a day), multi-daily ones four
    loads a day. Each table draws ``incidents_per_table`` (inclusive bounds) incidents of the kinds its
    family can show; a draw that finds no free spot is dropped. See the module docstring for the model.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown scenario families {unknown}; known: {', '.join(FAMILIES)}")
    if tables_per_family < 1 or days < 30:
        raise ValueError(f"tables_per_family must be >= 1 and days >= 30, got {tables_per_family}, {days}")
    end_date = end if isinstance(end, dt.date) else dt.date.fromisoformat(str(end))
    start = end_date - dt.timedelta(days=days - 1)
    by_country = {c: holiday_dates(c, start, end_date) for c in HOLIDAY_COUNTRIES.values()}
    # One child seed per (family, table) of the full family list, so a subset keeps its tables.
    children = np.random.SeedSequence(seed).spawn(len(FAMILIES) * tables_per_family + 1)
    order_rng = np.random.default_rng(children[-1])
    ids = order_rng.permutation(len(FAMILIES) * tables_per_family)
    tables: list[_Table] = []
    for fi, family in enumerate(FAMILIES):
        if family not in families:
            continue
        country = HOLIDAY_COUNTRIES.get(family)
        hol = frozenset(by_country[country]) if country else frozenset()
        for k in range(tables_per_family):
            idx = fi * tables_per_family + k
            name = f"db{int(ids[idx]):03d}.{_NOUNS[int(ids[idx]) % len(_NOUNS)]}"
            tables.append(_table(children[idx], name, family, start, days, hol, incidents_per_table))
    frames: list[pd.DataFrame] = []
    wins: list[tuple[str, int, int, str]] = []
    fams: list[tuple[str, str, str]] = []
    for tb in tables:
        for m in METRICS:
            s = f"{tb.name}/{m}"
            frames.append(pd.DataFrame({"series": s, "timestamp": tb.ts.view("datetime64[ns]"),
                                        "value": tb.values[m].astype(np.float64)}))
            fams.append((s, tb.name, tb.family))
        wins.extend((f"{tb.name}/{m}", lo, hi, kind) for m, lo, hi, kind in tb.windows)
    frame = pd.concat(frames, ignore_index=True)
    windows = pd.DataFrame(wins, columns=["series", "start", "end", "kind"])
    for c in ("start", "end"):
        windows[c] = windows[c].to_numpy(dtype=np.int64).view("datetime64[ns]")
    windows = windows.sort_values(["series", "start"], kind="stable").reset_index(drop=True)
    all_holidays = tuple(sorted(set().union(*by_country.values())))
    return Corpus(
        frame=frame,
        windows=windows,
        families=pd.DataFrame(fams, columns=["series", "table", "family"]),
        holidays=all_holidays,
        holidays_by_country=MappingProxyType(dict(by_country)),
    )
