"""Realistic synthetic data-quality metrics with labelled incidents.

One generator, shared by ``dqad demo`` and the benchmarks, so that what the demo shows and what the
benchmark measures are the same kind of data. It imitates what a warehouse team sees in its
data-quality table: per table and per daily load, ``row_count``, ``null_pct`` (percentage of nulls in a
key column, 0–100), ``distinct_count`` (of a business key), ``sum_amount`` (a monetary sum) and
``load_duration_s``.

Normal behaviour (none of it is labelled; a good detector must stay quiet on all of it):

* **Scale**: each table has its own size, log-uniform from ~1e3 to ~1e7 rows per load.
* **Growth**: a per-table trend, -15 % to +80 % a year (log-linear).
* **Weekly cycle**: "business" tables load 30–60 % of a weekday's volume on Saturday and Sunday (each
  weekday also has its own ±4 % level); "flat" tables (telemetry, logs, clickstream) have no cycle.
* **Month end**: business tables surge ×1.3–2 on the last one or two business days of each month
  (invoicing, closing). Flat tables do not.
* **Holidays**: every table drops to 10–40 % of its volume on a holiday of the calendar (upstream
  systems are closed or frozen); by default the US calendar of the ``holidays`` package, the same
  library the detector's calendars come from. Calendar effects are keyed on the date of the load timestamp, so a
  labeler using the same calendar on the timestamps sees exactly the same days.
* **Noise**: multiplicative, a few percent, and the metrics of one load move together: distinct count
  and sum are the row count times a per-table ratio/average (with their own smaller noise), the null
  percentage is small and noisy (base 0.5–3 %, ±10–30 %) and is an exact ``100 * nulls / rows``, the
  duration is a fixed overhead plus rows over a per-table throughput, with noise.
* **Load times**: once a day per table, at a per-table time between 02:00 and 07:00 plus a jitter of a
  few minutes. About 2 % of loads are *reruns* (``is_rerun``): the successful second attempt of the job,
  30–180 minutes later than usual, with normal values. ``load_ts`` is the start of the load (UTC,
  tz-naive), ``loaded_at`` its completion (``load_ts + load_duration_s``).

Incidents (see :data:`INCIDENT_METRICS` for which metrics each kind touches and labels; the other
metrics of that load stay exactly as they would have been):

* ``partial``: row count ×0.2–0.6, distinct count and sum scaled by the same ratio — some upstream files
  or partitions did not arrive, the ones that did are ordinary.
* ``empty``: row count, distinct count and sum are 0, and ``null_pct`` is **0.0**, not NaN. That is what
  the usual ``COALESCE(100.0 * nulls / NULLIF(rows, 0), 0)`` data-quality query yields, and it keeps every
  series free of NaN so that every consumer can read it. The 0.0 is labelled too: it is a wrong
  number caused by the incident.
* ``duplicated``: row count and sum ×2 exactly, distinct count unchanged — the same batch was appended
  twice (a retried job without idempotent writes), so every key appears twice.
* ``null_spike``: ``null_pct`` jumps to 15–80 % — a source column renamed or a join that stopped
  matching.
* ``distinct_collapse``: distinct count ×0.01–0.2 while the rows are normal — a key defaulted to a
  constant or truncated by a type change.
* ``sum_drift``: the sum shifted by ±25–60 % (one factor) for 1–5 consecutive loads — a unit or
  currency change that persists until someone fixes the mapping.
* ``slow``: duration ×4–10 — lock contention, a skewed distribution key, a vacuum running.
* ``stuck``: every metric exactly equal to the previous load's numbers for 1–3 loads — the metrics job
  read a stale snapshot. (In normal data no load repeats all of its previous load's numbers.)

Random incidents start on a load with probability ``incident_rate``, only after the first 15 % of the
series (the history a backtest learns from) and never on a holiday (so holidays are cleanly normal);
multi-load incidents are cut short rather than run onto a holiday or past the end. Incidents of one
table never touch and are never adjacent: there is always at least one clean load between two, so the
load before a ``stuck`` run is clean and consecutive incident loads of a series are one incident.
Incidents forced with ``final_load_incidents`` land on the last load whatever its date.

Determinism: the normal data, the load times and the incidents come from three independent random
streams of ``seed``. Hence ``generate(..., incident_rate=0)`` with the same other arguments is the exact
counterfactual of a run with incidents: the same series, without them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa

from dqad.detect.holiday_calendar import holiday_dates

__all__ = [
    "HISTORY_FRACTION",
    "INCIDENT_KINDS",
    "INCIDENT_METRICS",
    "METRICS",
    "SynthData",
    "generate",
]

METRICS: tuple[str, ...] = ("row_count", "null_pct", "distinct_count", "sum_amount", "load_duration_s")

INCIDENT_KINDS: tuple[str, ...] = (
    "partial",
    "empty",
    "duplicated",
    "null_spike",
    "distinct_collapse",
    "sum_drift",
    "slow",
    "stuck",
)

#: The metrics each incident kind changes, and therefore labels (restricted to the generated metrics).
INCIDENT_METRICS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "partial": ("row_count", "distinct_count", "sum_amount"),
        "empty": ("row_count", "null_pct", "distinct_count", "sum_amount"),
        "duplicated": ("row_count", "sum_amount"),
        "null_spike": ("null_pct",),
        "distinct_collapse": ("distinct_count",),
        "sum_drift": ("sum_amount",),
        "slow": ("load_duration_s",),
        "stuck": METRICS,
    }
)

#: Leading fraction of every series kept free of random incidents (the history a backtest trains on).
HISTORY_FRACTION = 0.15

_RERUN_RATE = 0.02
_MAX_RUN = {"sum_drift": 5, "stuck": 3}  # other kinds last one load

# (table, profile). "business" tables have a weekly cycle and month-end surges; "flat" ones do not.
_BASE_TABLES: tuple[tuple[str, str], ...] = (
    ("sales.orders", "business"),
    ("crm.customers", "business"),
    ("finance.gl_entries", "business"),
    ("sales.order_lines", "business"),
    ("web.page_views", "flat"),
    ("finance.ap_invoices", "business"),
    ("inventory.stock_movements", "business"),
    ("iot.sensor_readings", "flat"),
    ("crm.contacts", "business"),
    ("billing.usage_records", "flat"),
    ("sales.invoices", "business"),
    ("logistics.shipments", "business"),
    ("ops.app_events", "flat"),
    ("finance.ar_receipts", "business"),
    ("hr.timesheets", "business"),
    ("marketing.email_sends", "business"),
    ("payments.card_transactions", "flat"),
    ("procurement.purchase_orders", "business"),
    ("support.tickets", "business"),
    ("web.sessions", "flat"),
    ("sales.returns", "business"),
    ("crm.opportunities", "business"),
    ("finance.payments", "business"),
    ("inventory.stock_levels", "flat"),
    ("marketing.campaign_events", "business"),
    ("ops.job_runs", "flat"),
    ("billing.subscriptions", "business"),
    ("logistics.deliveries", "business"),
    ("risk.fraud_alerts", "flat"),
    ("product.price_changes", "business"),
    ("sales.quotes", "business"),
    ("hr.payroll_lines", "business"),
    ("finance.fx_rates", "flat"),
    ("web.clickstream", "flat"),
    ("crm.activities", "business"),
    ("inventory.warehouse_picks", "business"),
)


@dataclass(frozen=True, eq=False)
class SynthData:
    """A generated data set: the metrics, the incidents that are the truth, the holiday calendar.

    ``metrics`` is the long table (one row per table, metric and load), sorted by table (in generation
    order: table index ``i`` of :func:`generate` is the ``i``-th distinct ``table_name``), then metric (in
    the order asked), then ``load_ts``. Columns: ``table_name`` (str, ``schema.table``), ``metric_name``
    (str), ``load_ts`` (datetime64[ns], UTC, tz-naive), ``metric_value`` (float64), ``job_name`` (str,
    ``tln_load_<schema>_<table>``), ``is_rerun`` (bool), ``loaded_at`` (datetime64[ns]).

    ``incidents`` has one row per affected point: ``table_name``, ``metric_name``, ``load_ts``, ``kind``,
    in the same order. ``holidays`` are the calendar's dates that fall inside the series.

    (``eq=False``: comparing or hashing data frames field by field is not meaningful; compare the frames.)
    """

    metrics: pd.DataFrame
    incidents: pd.DataFrame
    holidays: tuple[dt.date, ...]

    def series_frame(self) -> pd.DataFrame:
        """The metrics in the ``series,timestamp,value`` form, ``series = f"{table_name}/{metric_name}"``."""
        m = self.metrics
        return pd.DataFrame(
            {
                "series": _series_names(m),
                "timestamp": m["load_ts"].to_numpy(),
                "value": m["metric_value"].to_numpy(),
            }
        )

    def labels_frame(self, *, all_points: bool = False) -> pd.DataFrame:
        """Point labels in the ``series,timestamp,is_anomaly`` form.

        By default only the incident points, each with ``is_anomaly == 1``: absence means normal, and the
        frame stays small. With ``all_points=True``, every point of :meth:`series_frame` with 1 or 0
        (for a consumer that treats a 0 as "known normal", which is the truth here).
        """
        inc = self.incidents
        positives = pd.DataFrame(
            {
                "series": _series_names(inc),
                "timestamp": inc["load_ts"].to_numpy(),
                "is_anomaly": np.ones(len(inc), dtype=np.int64),
            }
        )
        if not all_points:
            return positives
        frame = self.series_frame()[["series", "timestamp"]]
        flagged = frame.merge(positives, on=["series", "timestamp"], how="left", sort=False)
        flagged["is_anomaly"] = flagged["is_anomaly"].fillna(0).astype(np.int64)
        return flagged

    def windows_frame(self) -> pd.DataFrame:
        """Anomaly windows in the ``series,start,end`` form (both ends inclusive).

        One window per incident per series: consecutive incident loads of a series are merged (they are
        always one incident, since incidents of a table never touch), ``start`` and ``end`` are the
        timestamps of its first and last load (equal for a one-load incident).
        """
        inc = self.incidents
        if inc.empty:
            return pd.DataFrame(
                {
                    "series": pd.Series([], dtype="str"),
                    "start": pd.Series([], dtype="datetime64[ns]"),
                    "end": pd.Series([], dtype="datetime64[ns]"),
                }
            )
        # Position of each load within its table (all metrics of a table share the load times).
        keys = ["table_name", "load_ts"]
        loads = self.metrics[keys].drop_duplicates().sort_values(keys)
        loads["pos"] = loads.groupby("table_name", sort=False).cumcount()
        pts = inc[["table_name", "metric_name", "load_ts"]].merge(loads, on=keys, how="left")
        pts["series"] = _series_names(pts)
        pts = pts.sort_values(["series", "pos"], kind="stable").reset_index(drop=True)
        series = pts["series"].to_numpy()
        pos = pts["pos"].to_numpy()
        new = np.ones(len(pts), dtype=bool)
        new[1:] = (series[1:] != series[:-1]) | (pos[1:] != pos[:-1] + 1)
        pts["window"] = np.cumsum(new)
        out = pts.groupby("window", sort=True).agg(
            series=("series", "first"), start=("load_ts", "min"), end=("load_ts", "max")
        )
        return out.reset_index(drop=True)


def _str_column(labels: Sequence[str], codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``labels[codes]`` as pandas' default ``str`` dtype. Going through an Arrow dictionary is ~10× faster
    than converting a million Python strings, which would otherwise dominate the generation time."""
    dictionary = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(labels), type=pa.large_string())
    )
    return pd.array(dictionary.cast(pa.large_string()), dtype="str")


def _series_names(frame: pd.DataFrame) -> pd.Series:
    names = frame["table_name"].astype("str") + "/" + frame["metric_name"].astype("str")
    return names.reset_index(drop=True)


def _as_date(value: dt.date | str) -> dt.date:
    if isinstance(value, str):
        return dt.date.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"expected a date or an ISO date string, got {type(value).__name__}")


def _table_names(n: int) -> tuple[list[str], np.ndarray]:
    """``n`` unique, realistic table names and their profile; beyond the base list, numbered variants."""
    base = len(_BASE_TABLES)
    names: list[str] = []
    business = np.empty(n, dtype=bool)
    for i in range(n):
        name, profile = _BASE_TABLES[i % base]
        names.append(name if i < base else f"{name}_{i // base + 1:03d}")
        business[i] = profile == "business"
    return names, business


@dataclass(frozen=True)
class _Calendar:
    day_ns: np.ndarray  # midnight of each day, int64 ns
    weekday: np.ndarray  # 0 = Monday
    holiday: np.ndarray  # bool
    month_end_rank: np.ndarray  # 1 = last business day of the month, 2 = the one before, 0 otherwise


def _calendar(start: dt.date, days: int, holidays: frozenset[dt.date]) -> _Calendar:
    dates = [start + dt.timedelta(days=i) for i in range(days)]
    weekday = np.array([d.weekday() for d in dates], dtype=np.int64)
    holiday = np.array([d in holidays for d in dates], dtype=bool)
    rank = np.zeros(days, dtype=np.int64)
    # Rank business days from each month's end; the last month may end after the series does.
    months = sorted({(d.year, d.month) for d in dates})
    index = {d: i for i, d in enumerate(dates)}
    for year, month in months:
        day = dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)
        found = 0
        while found < 2 and day.month == month:
            if day.weekday() < 5 and day not in holidays:
                found += 1
                if day in index:
                    rank[index[day]] = found
            day -= dt.timedelta(days=1)
    day_ns = (np.datetime64(start, "D") + np.arange(days)).astype("datetime64[ns]").astype(np.int64)
    return _Calendar(day_ns=day_ns, weekday=weekday, holiday=holiday, month_end_rank=rank)


def _normal_values(rng: np.random.Generator, business: np.ndarray, cal: _Calendar) -> dict[str, np.ndarray]:
    """The clean metrics, one (tables, days) float64 array per metric. Every draw covers all tables so the
    stream layout does not depend on the profiles."""
    n_tab, n_day = len(business), len(cal.weekday)
    shape = (n_tab, n_day)
    col = business[:, None]

    log_scale = rng.uniform(math.log(1e3), math.log(1e7), n_tab)
    growth = rng.uniform(-0.15, 0.8, n_tab)  # log-growth per year
    weekly = np.concatenate([1.0 + rng.normal(0.0, 0.04, (n_tab, 5)), rng.uniform(0.3, 0.6, (n_tab, 2))], axis=1)
    weekly = np.where(col, weekly, 1.0)
    surge_last = rng.uniform(1.3, 2.0, n_tab)
    surge_prev = rng.uniform(1.3, surge_last)  # the day before the last surges no more than the last
    surge_days = rng.integers(1, 3, n_tab)  # surge on the last 1 or 2 business days
    holiday_level = rng.uniform(0.1, 0.4, shape)
    sigma_rows = rng.uniform(0.01, 0.04, n_tab)

    t_years = np.arange(n_day) / 365.0
    rank = cal.month_end_rank[None, :]
    month_end = np.ones(shape)
    month_end = np.where(rank == 1, surge_last[:, None], month_end)
    month_end = np.where((rank == 2) & (surge_days[:, None] == 2), surge_prev[:, None], month_end)
    month_end = np.where(col, month_end, 1.0)
    level = np.exp(log_scale[:, None] + growth[:, None] * t_years[None, :])
    level = level * weekly[:, cal.weekday] * month_end
    level = np.where(cal.holiday[None, :], level * holiday_level, level)
    rows = np.maximum(1.0, np.round(level * np.exp(sigma_rows[:, None] * rng.standard_normal(shape))))

    key_ratio = rng.uniform(0.2, 1.0, n_tab)
    sigma_key = rng.uniform(0.003, 0.01, n_tab)
    distinct = np.round(rows * key_ratio[:, None] * np.exp(sigma_key[:, None] * rng.standard_normal(shape)))
    distinct = np.clip(distinct, 1.0, rows)

    avg_amount = np.exp(rng.uniform(math.log(5.0), math.log(2000.0), n_tab))
    sigma_amount = rng.uniform(0.01, 0.03, n_tab)
    amount = rows * avg_amount[:, None] * np.exp(sigma_amount[:, None] * rng.standard_normal(shape))
    amount = np.round(amount, 2)

    null_base = rng.uniform(0.5, 3.0, n_tab)
    sigma_null = rng.uniform(0.1, 0.3, n_tab)
    pct = null_base[:, None] * np.exp(sigma_null[:, None] * rng.standard_normal(shape))
    null_pct = 100.0 * np.round(rows * pct / 100.0) / rows

    overhead = rng.uniform(15.0, 120.0, n_tab)
    throughput = np.exp(rng.uniform(math.log(1e4), math.log(1e5), n_tab))  # rows per second
    sigma_dur = rng.uniform(0.05, 0.15, n_tab)
    duration = (overhead[:, None] + rows / throughput[:, None]) * np.exp(
        sigma_dur[:, None] * rng.standard_normal(shape)
    )
    duration = np.round(duration, 1)

    return {
        "row_count": rows,
        "null_pct": null_pct,
        "distinct_count": distinct,
        "sum_amount": amount,
        "load_duration_s": duration,
    }


def _load_times(rng: np.random.Generator, n_tab: int, cal: _Calendar) -> tuple[np.ndarray, np.ndarray]:
    """Load start times (int64 ns, whole seconds) and the rerun flag, both (tables, days)."""
    shape = (n_tab, len(cal.day_ns))
    base_min = rng.integers(120, 421, n_tab).astype(np.float64)  # 02:00–07:00
    jitter_min = np.clip(rng.normal(0.0, 4.0, shape), -15.0, 15.0)
    seconds = rng.integers(0, 60, shape)
    rerun = rng.random(shape) < _RERUN_RATE
    delay_min = np.where(rerun, rng.uniform(30.0, 180.0, shape), 0.0)
    offset_s = np.round((base_min[:, None] + jitter_min + delay_min) * 60.0).astype(np.int64) // 60 * 60
    offset_s = offset_s + seconds
    return cal.day_ns[None, :] + offset_s * 1_000_000_000, rerun


@dataclass(frozen=True)
class _Incident:
    table: int
    start: int
    length: int
    kind: str
    u: float  # uniform draw for the kind's factor
    up: bool  # direction of a sum drift


def _place_incidents(
    rng: np.random.Generator,
    *,
    n_tab: int,
    cal: _Calendar,
    rate: float,
    kinds: tuple[str, ...],
    forced: Sequence[tuple[str, int]],
) -> list[_Incident]:
    n_day = len(cal.day_ns)
    taken = np.zeros((n_tab, n_day), dtype=bool)
    placed: list[_Incident] = []
    for kind, table in forced:
        placed.append(_Incident(table, n_day - 1, 1, kind, float(rng.random()), bool(rng.random() < 0.5)))
        taken[table, n_day - 1] = True

    first = math.ceil(HISTORY_FRACTION * n_day)
    eligible = np.zeros(n_day, dtype=bool)
    eligible[first:] = True
    eligible &= ~cal.holiday
    cand_t, cand_d = np.nonzero((rng.random((n_tab, n_day)) < rate) & eligible[None, :])
    n = len(cand_t)
    kind_idx = rng.integers(0, len(kinds), n)
    run_u = rng.random(n)
    factor_u = rng.random(n)
    up = rng.random(n) < 0.5
    for i in range(n):
        t, d = int(cand_t[i]), int(cand_d[i])
        kind = kinds[kind_idx[i]]
        length = 1 + int(run_u[i] * _MAX_RUN.get(kind, 1))
        stop = d
        while stop < min(d + length, n_day) and eligible[stop]:
            stop += 1
        # Keep a clean load on either side: the load before a stuck run must be normal, and two
        # incidents of a table must be two windows.
        if taken[t, max(d - 1, 0) : min(stop + 1, n_day)].any():
            continue
        taken[t, d:stop] = True
        placed.append(_Incident(t, d, stop - d, kind, float(factor_u[i]), bool(up[i])))
    return placed


def _apply(values: dict[str, np.ndarray], incidents: list[_Incident]) -> None:
    """Write each incident's signature into the clean values (in place). Stuck runs go last: they copy
    the load before them, which is always clean."""
    rows, nulls = values["row_count"], values["null_pct"]
    distinct, amount, duration = values["distinct_count"], values["sum_amount"], values["load_duration_s"]
    for inc in sorted(incidents, key=lambda x: x.kind == "stuck"):
        t, sl = inc.table, slice(inc.start, inc.start + inc.length)
        if inc.kind == "partial":
            new_rows = np.maximum(1.0, np.round(rows[t, sl] * (0.2 + 0.4 * inc.u)))
            ratio = new_rows / rows[t, sl]
            rows[t, sl] = new_rows
            distinct[t, sl] = np.clip(np.round(distinct[t, sl] * ratio), 1.0, new_rows)
            amount[t, sl] = np.round(amount[t, sl] * ratio, 2)
        elif inc.kind == "empty":
            rows[t, sl] = 0.0
            distinct[t, sl] = 0.0
            amount[t, sl] = 0.0
            nulls[t, sl] = 0.0
        elif inc.kind == "duplicated":
            rows[t, sl] *= 2.0
            amount[t, sl] *= 2.0
        elif inc.kind == "null_spike":
            pct = 15.0 + 65.0 * inc.u
            nulls[t, sl] = 100.0 * np.round(rows[t, sl] * pct / 100.0) / rows[t, sl]
        elif inc.kind == "distinct_collapse":
            distinct[t, sl] = np.maximum(1.0, np.round(distinct[t, sl] * (0.01 + 0.19 * inc.u)))
        elif inc.kind == "sum_drift":
            shift = 0.25 + 0.35 * inc.u
            amount[t, sl] = np.round(amount[t, sl] * (1.0 + shift if inc.up else 1.0 - shift), 2)
        elif inc.kind == "slow":
            duration[t, sl] = np.round(duration[t, sl] * (4.0 + 6.0 * inc.u), 1)
        elif inc.kind == "stuck":
            for arr in values.values():
                arr[t, sl] = arr[t, inc.start - 1]
        else:  # pragma: no cover - kinds are validated before
            raise AssertionError(inc.kind)


def generate(
    *,
    tables: int = 20,
    days: int = 180,
    seed: int = 0,
    end: dt.date | str = "2026-11-02",
    incident_rate: float = 0.015,
    holidays: Iterable[dt.date] | None = None,
    final_load_incidents: Sequence[tuple[str, int]] = (),
    metrics: Sequence[str] = METRICS,
) -> SynthData:
    """Generate ``tables`` tables × ``days`` daily loads (the last one on ``end``) of ``metrics``.

    ``incident_rate`` is the probability that an eligible load (after the first 15 %, not a holiday)
    starts a random incident; with the default 1.5 %, about 1.2 % of all loads start one once the
    history, the holidays and the spacing rule are accounted for, and about 1.6 % of loads are affected
    (drifts and stuck runs last several loads). Kinds are drawn uniformly among those that touch at
    least one of ``metrics``. ``holidays=None`` uses the US calendar of the ``holidays`` package (through
    :func:`dqad.detect.holiday_calendar.holiday_dates`, observed days included); pass ``()`` for none.
    ``final_load_incidents`` forces ``(kind, table_index)`` incidents on the last load of those tables
    (one per table; a ``stuck`` one needs ``days >= 2``). See the module docstring for the model.
    """
    if tables < 1 or days < 1:
        raise ValueError(f"tables and days must be >= 1, got tables={tables}, days={days}")
    if not 0.0 <= incident_rate <= 1.0:
        raise ValueError(f"incident_rate must be within [0, 1], got {incident_rate}")
    metrics = tuple(metrics)
    if not metrics or len(set(metrics)) != len(metrics) or not set(metrics) <= set(METRICS):
        raise ValueError(f"metrics must be distinct names among {METRICS}, got {metrics}")
    visible = tuple(k for k in INCIDENT_KINDS if set(INCIDENT_METRICS[k]) & set(metrics))
    forced = [(str(kind), int(table)) for kind, table in final_load_incidents]
    for kind, table in forced:
        if kind not in INCIDENT_KINDS:
            raise ValueError(f"unknown incident kind {kind!r}; known: {INCIDENT_KINDS}")
        if kind not in visible:
            raise ValueError(f"incident kind {kind!r} touches none of the generated metrics {metrics}")
        if not 0 <= table < tables:
            raise ValueError(f"table index {table} out of range for {tables} tables")
        if kind == "stuck" and days < 2:
            raise ValueError("a stuck incident needs a previous load (days >= 2)")
    if len({table for _, table in forced}) != len(forced):
        raise ValueError("final_load_incidents names a table more than once")

    end_date = _as_date(end)
    start = end_date - dt.timedelta(days=days - 1)
    calendar = holiday_dates("US", start, end_date) if holidays is None else (_as_date(h) for h in holidays)
    hols = tuple(sorted({d for d in calendar if start <= d <= end_date}))
    cal = _calendar(start, days, frozenset(hols))

    names, business = _table_names(tables)
    normal_seq, timing_seq, incident_seq = np.random.SeedSequence(seed).spawn(3)
    values = _normal_values(np.random.default_rng(normal_seq), business, cal)
    load_ns, rerun = _load_times(np.random.default_rng(timing_seq), tables, cal)
    incidents = _place_incidents(
        np.random.default_rng(incident_seq),
        n_tab=tables,
        cal=cal,
        rate=incident_rate,
        kinds=visible,
        forced=forced,
    )
    _apply(values, incidents)
    done_ns = load_ns + (np.round(values["load_duration_s"]) * 1e9).astype(np.int64)

    # Long table, ordered (table, metric, load).
    n_met = len(metrics)
    table_codes = np.repeat(np.arange(tables), n_met * days)
    stacked = np.stack([values[m] for m in metrics], axis=1)  # (tables, metrics, days)
    jobs = [f"tln_load_{name.replace('.', '_')}" for name in names]
    frame = pd.DataFrame(
        {
            "table_name": _str_column(names, table_codes),
            "metric_name": _str_column(metrics, np.tile(np.repeat(np.arange(n_met), days), tables)),
            "load_ts": np.repeat(load_ns[:, None, :], n_met, axis=1).ravel().view("datetime64[ns]"),
            "metric_value": stacked.ravel().astype(np.float64),
            "job_name": _str_column(jobs, table_codes),
            "is_rerun": np.repeat(rerun[:, None, :], n_met, axis=1).ravel(),
            "loaded_at": np.repeat(done_ns[:, None, :], n_met, axis=1).ravel().view("datetime64[ns]"),
        }
    )

    met_index = {m: i for i, m in enumerate(metrics)}
    points: list[tuple[int, int, int, int]] = []  # (table, metric, load, kind)
    for inc in incidents:
        code = INCIDENT_KINDS.index(inc.kind)
        loads = range(inc.start, inc.start + inc.length)
        for m in INCIDENT_METRICS[inc.kind]:
            if m in met_index:
                points.extend((inc.table, met_index[m], d, code) for d in loads)
    pts = np.array(points, dtype=np.int64).reshape(-1, 4)
    pts = pts[np.lexsort((pts[:, 2], pts[:, 1], pts[:, 0]))]
    incident_frame = pd.DataFrame(
        {
            "table_name": _str_column(names, pts[:, 0]),
            "metric_name": _str_column(metrics, pts[:, 1]),
            "load_ts": load_ns[pts[:, 0], pts[:, 2]].view("datetime64[ns]"),
            "kind": _str_column(INCIDENT_KINDS, pts[:, 3]),
        }
    )
    return SynthData(metrics=frame, incidents=incident_frame, holidays=hols)
