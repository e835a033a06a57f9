"""The one causal feature transformer shared by trainer, scorer and backtest.

A point's features use only strictly earlier points of its own series, plus the same timestamp's
other metrics of its load (``group``): an empty load moves row count, distinct count and sums at
once, and seeing that together is the strongest signal a single-series detector misses.

Because training, scoring and backtests all call this same function, a model never sees a feature
at training time that it could not have at scoring time (no leakage through "helpful" centring).

When ``labels`` are given, labelled anomalies are blanked out of every baseline (rolling medians,
quantiles, seasonal medians) before later points are compared with them: a past incident must not
teach the detector that incidents are normal.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqad.detect.calendar_effects import (
    HOLIDAY,
    MONTH_END,
    Effects,
    apply_effects,
    calendar_categories,
    learn_effects,
    log_ratio,
)
from dqad.detect.config import DetectorConfig
from dqad.detect.vectorised import (
    DAILY_STEP_S,
    DAY_NS,
    DAY_S,
    RHYTHM_MIN_HISTORY,
    TAIL_MIN_POINTS,
    TAIL_QUANTILES,
    Padded,
    intermittent_at,
    key_columns,
    normalise,
    prefers_rhythm,
    rhythm_scale,
    rhythm_slots,
    robust_scale,
    series_time_order,
    slot_codes,
    step_seconds,
    window_quantiles,
)

Z_CLIP = 50.0
#: the residual noise of a sub-daily series (one that loads more than once a day) is measured over
#: ``SUB_DAILY_SCALE_DAYS`` of its loads, at least ``scale_window`` and at most this many (a day of
#: 5-minute loads): ``scale_window`` loads of 5-minute data are under five hours, and an incident
#: lasting a quarter of them (a failing machine's temperature falling for an afternoon) became its
#: own noise and stopped alarming; a day-long one in 30-minute data (a city's taxi trips on a
#: holiday) did the same over 28 hours. Daily series keep ``scale_window`` (56 loads, eight weeks).
#: Three days, not more: over twelve days of hourly loads a table whose residuals are uneven through
#: the day measured them too wide and missed a value stuck for an hour; measured on nab-dev and the
#: scenario corpus's hourly tables together (the worst of the two, not either alone)
SUB_DAILY_SCALE_POINTS = 288
SUB_DAILY_SCALE_DAYS = 3.0
REL_CLIP = 20.0
#: a series repeating its previous value less often than this is one where a repeat may mean stale
STALE_REPEAT_RATE = 0.05
MIN_SEASONAL_HISTORY = 2
#: |seas_z| from which a load's other metric counts as deviating, and the clip of the z it averages
DEVIATING_Z = 3.0
LOAD_Z_CLIP = 20.0
#: least relative scale of a load's delay (a run that always takes the same time)
LOAD_DELAY_REL_FLOOR = 0.05


@dataclass
class Computed:
    """Features plus the baselines the scorer needs (expected value/scale), index = frame's index."""

    features: pd.DataFrame
    aux: pd.DataFrame


class _Sink(dict):
    """Feature columns stored as float32 the moment they are computed (clipped, NaN/inf -> 0).

    Holding ~45 float64 columns of a million rows until the end doubles the memory a scorer touches,
    and fresh memory is page-faulted in (expensive in sandboxed runtimes). ``keep`` names keep their
    float64 value in ``wide`` for the cross-metric features computed from them.
    """

    def __init__(self, keep: tuple[str, ...]) -> None:
        super().__init__()
        self.keep = keep
        self.wide: dict[str, np.ndarray] = {}
        self.clip = True

    def __setitem__(self, name: str, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        if self.clip and (name.endswith("_z") or name.startswith("z_")):
            x = np.clip(x, -Z_CLIP, Z_CLIP)
        elif self.clip and "rel" in name:
            x = np.clip(x, -REL_CLIP, REL_CLIP)
        if name in self.keep:
            self.wide[name] = x
        # cast first, then zero whatever is not finite in float32: NaN/inf of the float64 feature
        # and a value beyond float32's range, which no model can take (one pass over one copy)
        with np.errstate(over="ignore"):
            y = x.astype(np.float32)
        np.copyto(y, 0.0, where=~np.isfinite(y))
        super().__setitem__(name, y)


def _hash01(values: pd.Series) -> np.ndarray:
    """Stable string encoding in [0, 1): crc32 (not Python's salted hash) so train and score agree."""
    inv, uniq = pd.factorize(values.astype(str), use_na_sentinel=False)
    return _crc01(np.asarray(uniq, dtype=object))[inv]


def _crc01(names: np.ndarray) -> np.ndarray:
    return np.array([zlib.crc32(str(u).encode()) / 2**32 for u in names], dtype=np.float64)


def _mark(n: int, rows: np.ndarray) -> np.ndarray:
    """A mask of ``n`` rows, true at ``rows``."""
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return out


def _within_before(gid: np.ndarray, tgt: np.ndarray, width: int | np.ndarray) -> np.ndarray:
    """Rows that are a target or lie at most ``width`` rows before the next target, in its group.

    ``width`` is one number or one per row (read at the target row); ``gid`` numbers the groups in
    ascending order (each group's rows together). Each target claims the rows after the previous
    target, so the rows are marked from one range per target (a running sum of their ends), not
    from a pass over every row looking for the next target.
    """
    n = len(gid)
    T = np.flatnonzero(tgt)
    if not len(T):
        return np.zeros(n, dtype=bool)
    reach = np.broadcast_to(np.asarray(width, dtype=np.int64), (n,))[T]
    lo = np.maximum(np.maximum(T - reach, np.searchsorted(gid, gid[T])), np.r_[0, T[:-1] + 1])
    edge = np.zeros(n + 1, dtype=np.int32)
    edge[lo] += 1  # ranges are disjoint and in order: no index repeats within one statement
    edge[T + 1] -= 1
    return np.cumsum(edge[:-1]) > 0


def scale_points(step_s: np.ndarray, scale_window: int) -> np.ndarray:
    """Per row, how many earlier residuals measure its noise (see :data:`SUB_DAILY_SCALE_POINTS`).

    Rounded up to a multiple of eight loads so that an irregular feed's varying step gives a few
    distinct widths, each one pass of the window quantiles.
    """
    step = np.maximum(np.nan_to_num(np.asarray(step_s, dtype=np.float64), nan=float(DAY_S)), 1.0)
    span = np.ceil(SUB_DAILY_SCALE_DAYS * DAY_S / step / 8.0) * 8.0
    width = np.clip(span, scale_window, max(SUB_DAILY_SCALE_POINTS, scale_window)).astype(np.int64)
    return np.where(step < DAILY_STEP_S, width, scale_window)


def _seasonal_baseline(
    series_codes: np.ndarray,
    slot: np.ndarray,
    base_values: np.ndarray,
    k: int,
    rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing median and count of the last ``k`` same-slot values of each series (strictly earlier).

    Inputs are sorted by (series, time); the result is for ``rows`` only. A stable sort by
    (series, slot) keeps time order inside each slot, and the windows are read from that order.
    """
    key = series_codes.astype(np.int64) * 100_000 + slot
    order = np.argsort(key, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    pad = Padded(key[order], k + 1)
    (med,), cnt = window_quantiles(pad.buffer(base_values[order]), pad.pos[inv[rows]] - 1, k, [0.5])
    return med, cnt.astype(np.float64)


#: the repeat of a weekday slot in a daily series without gaps, and of its fortnightly rhythm slot
_WEEK = 7
_FORTNIGHT = 14


def _weekly_without_gaps(lay: _Layout, cfg: DetectorConfig) -> bool:
    """Whether every series is daily, slotted by weekday, with a load on each calendar day.

    Its slots then repeat every seven rows and its rhythm slots every fourteen, all distinct
    within (:func:`dqad.detect.vectorised.rhythm_slots`): a slot's earlier values are every
    seventh row of the series, read in place, and the seasonal baselines need no sort by slot
    (two sorts and their copies of the frame were most of a daily block's baseline).
    """
    if "dow" not in cfg.slots or not lay.daily.all() or lay.n < 2:
        return False
    day = lay.ts // DAY_NS
    return bool(((day[1:] - day[:-1] == 1) | (lay.sc[1:] != lay.sc[:-1])).all())


def _every_period(
    lay: _Layout, values: np.ndarray, rows: np.ndarray, period: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_seasonal_baseline` where each series' slots repeat every ``period`` rows (see
    :func:`_weekly_without_gaps`): the median and count of the last ``k`` values of the slot.

    Read from the layout's own padded buffer where no window of ``rows`` reaches past its
    padding (a history longer than the windows), else from one padded wide enough.
    """
    pad, reach = lay.pad, period * k
    if len(rows) and pad.pad < reach and (rows - pad.starts[pad.gid[rows]]).min() < reach - pad.pad:
        pad = Padded(lay.sc, reach)
    (med,), cnt = window_quantiles(pad.buffer(values), pad.pos[rows] - period, k, [0.5], stride=period)
    return med, cnt.astype(np.float64)


def _extend_to_loads(df: pd.DataFrame, ts_ns: np.ndarray, tmask: np.ndarray) -> np.ndarray:
    """Targets plus the other rows of their loads (same group and timestamp): cross-metric inputs."""
    if not tmask.any() or tmask.all():
        return tmask
    t_ts = ts_ns[tmask]
    cand = ~tmask & (ts_ns >= t_ts.min()) & (ts_ns <= t_ts.max())  # usually none: history is older
    if cand.any():
        cand[cand] = np.isin(ts_ns[cand], t_ts)
    if not cand.any():
        return tmask
    sub = np.flatnonzero(cand | tmask)
    g, _ = pd.factorize(df["group"].iloc[sub])
    t, _ = pd.factorize(ts_ns[sub])
    key = g.astype(np.int64) * (int(t.max()) + 1) + t
    hit = np.isin(key, key[tmask[sub]])
    out = tmask.copy()
    out[sub[hit]] = True
    return out


def _windows(
    buf: np.ndarray, ends: np.ndarray, width: int, min_periods: int, q_min_periods: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median (``min_periods``) and quartiles (``q_min_periods``) of the windows ending at ``ends``."""
    (med, q1, q3), cnt = window_quantiles(buf, ends, width, [0.5, 0.25, 0.75], min_periods=min_periods)
    few = cnt < q_min_periods
    q1[few] = np.nan
    q3[few] = np.nan
    return med, q1, q3


def _rhythm_z(
    med: np.ndarray,
    cnt: np.ndarray,
    vt: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
    robust_z: np.ndarray,
    daily: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust z against the second, longer seasonal slot, and that slot's median (NaN where unused).

    The robust detector takes the smaller of this z and ``seas_z``: a point is normal when it
    matches either of two rhythms (dqad.detect.vectorised.rhythm_slots). Sub-daily points: the
    same time of day on the same weekday, so a metric with a weekly rhythm (taxi trips,
    business-hours traffic) does not look anomalous every weekend morning. Daily points: the same
    weekday two weeks apart, because fortnightly runs (payroll every other Friday, a biweekly
    export) alternate between two levels that one weekday median splits down the middle. Same
    scale as ``seas_z``, carried to a daily rhythm's level (dqad.detect.vectorised.rhythm_scale). Where
    the longer slot has fewer than ``RHYTHM_MIN_HISTORY`` earlier occurrences, the value is
    ``robust_z`` itself, so taking the smaller one changes nothing.
    """
    ok = (cnt >= RHYTHM_MIN_HISTORY) & np.isfinite(med)
    z = (vt - med) / rhythm_scale(scale, expected, med, daily)
    return np.where(ok, z, robust_z), np.where(ok, med, np.nan)


@dataclass(frozen=True)
class _Layout:
    """The frame's rows in (series, time) order, the targets among them and their calendar.

    Every step of :func:`compute` reads the same sorted arrays; ``T`` are the target positions in
    that order and ``ends`` the last position before each target in ``pad``'s buffers.
    """

    df: pd.DataFrame
    order: np.ndarray
    series_names: pd.Index
    sc: np.ndarray
    ts: np.ndarray
    t_index: pd.DatetimeIndex
    v: np.ndarray
    bv: np.ndarray
    tgt: np.ndarray
    T: np.ndarray
    pad: Padded
    ends: np.ndarray
    step: np.ndarray
    daily: np.ndarray
    cats: np.ndarray
    candidate: np.ndarray
    slot_base: np.ndarray
    #: per row, the residuals its noise is measured over (``scale_points``)
    scale_width: np.ndarray

    @property
    def n(self) -> int:
        return len(self.v)


@dataclass(frozen=True)
class _Baseline:
    """Expected value and scale at the targets, and what they were built from.

    ``R`` are the rows whose residuals form the targets' scale (the targets and the
    ``scale_window`` rows before each); the rhythm's median and count are at ``R``.
    """

    expected: np.ndarray
    scale: np.ndarray
    seas_med: np.ndarray
    seas_n: np.ndarray
    effects: Effects
    R: np.ndarray
    rhythm_med_r: np.ndarray
    rhythm_n_r: np.ndarray


def _series_codes(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(series, sort=True)``: codes into the sorted names the frame holds, and the names.

    The scorer's blocks hold Categoricals with sorted categories (dqad.detect.vectorised.normalise):
    the codes are then the categories' own, renumbered over the ones present, without the hashing
    pandas' factorize does.
    """
    if isinstance(series.dtype, pd.CategoricalDtype) and series.dtype.categories.is_monotonic_increasing:
        codes = series.cat.codes.to_numpy()
        if len(codes) and codes.min() >= 0:
            present = np.bincount(codes, minlength=len(series.dtype.categories)) > 0
            renumber = np.cumsum(present) - 1
            return renumber[codes], series.dtype.categories[present]
    codes, names = pd.factorize(series, sort=True)
    return codes, pd.Index(names)


def _layout(
    frame: pd.DataFrame, cfg: DetectorConfig, labels: pd.Series | np.ndarray | None, targets: np.ndarray | None
) -> _Layout:
    """Sort the rows by (series, time), blank labelled anomalies out of the baselines, find the targets."""
    df = normalise(frame, copy=False)
    n = len(df)
    series_codes, series_names = _series_codes(df["series"])
    ts_ns = df["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = series_time_order(series_codes, ts_ns)
    sc = series_codes[order]
    ts_sorted = ts_ns[order]
    t_index = pd.DatetimeIndex(ts_sorted.view("datetime64[ns]"))
    v = df["value"].to_numpy(dtype=np.float64)[order]
    bv = v.copy()
    if labels is not None:
        if isinstance(labels, pd.Series):
            lab = labels.reindex(df.index).fillna(0).to_numpy(dtype=np.float64)
        else:
            lab = np.nan_to_num(np.asarray(labels, dtype=np.float64))
        bv[lab[order].astype(bool)] = np.nan
    if targets is None:
        tgt = np.ones(n, dtype=bool)
    else:
        tgt = _extend_to_loads(df, ts_ns, np.asarray(targets, dtype=bool))[order]
    T = np.flatnonzero(tgt)
    width = max(max(cfg.windows), cfg.scale_window, 16)
    pad = Padded(sc, width + 1)
    # calendar and seasonal slots (every row: earlier rows feed the seasonal baselines)
    step = step_seconds(ts_sorted, pad, exact=tgt)
    daily = ~(step < DAILY_STEP_S)
    all_daily = bool(daily.all())
    # every row of a daily frame measures its noise over scale_window residuals
    scale_width = np.full(n, cfg.scale_window, dtype=np.int64) if all_daily else scale_points(step, cfg.scale_window)
    if len(T) and scale_width[T].max() > width:  # the steps do not depend on the padding
        pad = Padded(sc, int(scale_width[T].max()) + 1)
    cats = calendar_categories(t_index, cfg.holidays)
    if not all_daily:
        cats = cats & daily[:, None]  # daily series only
    candidate = np.logical_or.reduce([cats[:, c] for c in range(cats.shape[1] - 1)]) if n else np.zeros(0, bool)
    return _Layout(
        df=df, order=order, series_names=series_names, sc=sc, ts=ts_sorted, t_index=t_index, v=v, bv=bv,
        tgt=tgt, T=T, pad=pad, ends=pad.pos[T] - 1,  # windows strictly before each target
        step=step, daily=daily, cats=cats, candidate=candidate, slot_base=slot_codes(t_index, step, cfg.slots),
        scale_width=scale_width,
    )


def _trailing_features(feats: _Sink, lay: _Layout, cfg: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """z and relative change against each trailing window; the value buffer and the longest window's scale."""
    bbuf = lay.pad.buffer(lay.bv)
    vt = lay.v[lay.T]
    wscale = {}
    for w in cfg.windows:
        m, q1, q3 = _windows(bbuf, lay.ends, w, 1, 2)
        wscale[w] = robust_scale(q1, q3, m, cfg.rel_scale_floor)
        feats[f"z_w{w}"] = (vt - m) / wscale[w]
        feats[f"rel_w{w}"] = (vt - m) / np.maximum(np.abs(m), 1e-9)
    return bbuf, wscale[max(cfg.windows)]


def _asked_candidates(lay: _Layout) -> np.ndarray:
    """The candidate days whose ratio a target's calendar effect can read: those of its categories.

    Effects are learnt only for the categories the targets fall on (a new load on the first
    business day reads the earlier first business days), so the seasonal baseline of the other
    candidate days, a third of a daily history, is not computed for a scorer's new loads.
    """
    asked = lay.cats[lay.T, :-1].any(axis=0) if len(lay.T) else np.zeros(lay.cats.shape[1] - 1, dtype=bool)
    if asked.all():
        return lay.candidate
    return np.asarray(lay.cats[:, np.flatnonzero(asked)].any(axis=1))


def _baseline(lay: _Layout, cfg: DetectorConfig, bbuf: np.ndarray, trailing_scale: np.ndarray) -> _Baseline:
    """The targets' expected value and scale: seasonal slot, residual noise, calendar effects, bursts."""
    # seasonal baseline of the ordinary slot; candidate calendar days are left out of it and judged
    # by the effect their own earlier occurrences show, if any (dqad.detect.calendar_effects).
    # Needed at the targets, at the scale_window points before them (their residuals form the
    # targets' scale) and at the earlier candidate days (their ratios form the effects).
    pad, T, daily = lay.pad, lay.T, lay.daily
    bv_ord = np.where(lay.candidate, np.nan, lay.bv)
    full = len(T) == lay.n
    R = T if full else np.flatnonzero(_within_before(pad.gid, lay.tgt, lay.scale_width))
    R_all = np.flatnonzero(_mark(lay.n, R) | _asked_candidates(lay))  # sorted, as np.union1d gives it
    weekly = _weekly_without_gaps(lay, cfg)
    if weekly:
        seas_med_all, seas_n_all = _every_period(lay, bv_ord, R_all, _WEEK, cfg.seasonal_k)
    else:
        seas_med_all, seas_n_all = _seasonal_baseline(lay.sc, lay.slot_base, bv_ord, cfg.seasonal_k, R_all)
    # where the seasonal slot has too little history, fall back to the longest trailing median
    fallback = np.flatnonzero(seas_n_all < MIN_SEASONAL_HISTORY)
    # a calendar day's ratio, which its effect is learnt from, is taken against one earlier
    # same-slot value where there is only one: a holiday on the second Monday of a table whose
    # Mondays double is no +70 % holiday effect, as the median of every weekday would make it
    effect_base = seas_med_all.copy()
    if len(fallback):
        (fb_med,), _ = window_quantiles(bbuf, pad.pos[R_all[fallback]] - 1, max(cfg.windows), [0.5])
        seas_med_all[fallback] = fb_med
        effect_base[fallback] = np.where(seas_n_all[fallback] >= 1, effect_base[fallback], fb_med)
    in_r = np.searchsorted(R_all, R)
    at_t = np.searchsorted(R_all, T)
    seas_med = seas_med_all[at_t]
    # the scale's residuals: against the second rhythm in a series that follows it, so that a
    # fortnightly run's other week (or a weekly rhythm of sub-daily data) does not count as noise
    # its occurrences keep the month and quarter ends (a payroll Friday that is also the last
    # business day is still a payroll Friday); holidays stay out of every baseline
    bv_rhythm = np.where(lay.cats[:, HOLIDAY], np.nan, lay.bv)
    if weekly:
        rhythm_med_r, rhythm_n_r = _every_period(lay, bv_rhythm, R, _FORTNIGHT, cfg.seasonal_k)
    else:
        rhythm = rhythm_slots(lay.t_index, daily, lay.slot_base)
        rhythm_med_r, rhythm_n_r = _seasonal_baseline(lay.sc, rhythm, bv_rhythm, cfg.seasonal_k, R)
    # a residual against the fallback baseline (a slot with too little history yet, compared with
    # a trailing median of every weekday) measures the weekly cycle, not the noise: left out
    resid_r = bv_ord[R] - seas_med_all[in_r]
    resid_r[seas_n_all[in_r] < MIN_SEASONAL_HISTORY] = np.nan
    # against the second rhythm where the series' slot follows it: a fortnightly run's other week,
    # or a sub-daily table's weekend, is no noise
    resid_rhythm = np.where(rhythm_n_r >= RHYTHM_MIN_HISTORY, bv_ord[R] - rhythm_med_r, np.nan)
    # R's rows of a series are consecutive when its targets are (one new load each, or a run of
    # them): its slots then repeat every seven of them too
    in_runs = weekly and bool(((R[1:] - R[:-1] == 1) | (pad.gid[R[1:]] != pad.gid[R[:-1]])).all())
    follows = prefers_rhythm(
        lay.sc[R], lay.slot_base[R], resid_r, resid_rhythm, period=_WEEK if in_runs else 0
    ) & np.isfinite(resid_rhythm)
    resid_base = np.where(follows, rhythm_med_r, seas_med_all[in_r])
    expected, scale = _residual_noise(
        lay, cfg, R, np.where(follows, resid_rhythm, resid_r), resid_base, seas_med, trailing_scale
    )
    vt = lay.v[T]
    effects = _effects(lay.sc, lay.cats, lay.bv, effect_base, R_all, T, scale / np.maximum(np.abs(expected), 1e-9), cfg)
    expected, scale = apply_effects(expected, scale, effects, cfg.rel_scale_floor, vt, cfg.effect_rules())
    expected, scale, _ = intermittent_at(
        pad, lay.bv, T, vt, expected, scale, cfg.scale_window, cfg.rel_scale_floor, daily[T]
    )
    return _Baseline(
        expected=expected, scale=scale, seas_med=seas_med, seas_n=seas_n_all[at_t], effects=effects,
        R=R, rhythm_med_r=rhythm_med_r, rhythm_n_r=rhythm_n_r,
    )


def _residual_noise(
    lay: _Layout, cfg: DetectorConfig, R: np.ndarray, resid_r: np.ndarray, resid_base: np.ndarray,
    seas_med: np.ndarray, trailing_scale: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected value and scale from the residuals at ``R``: their robust centre (a trend's bias) and spread.

    Where every residual of a target's window was taken against a positive baseline (``resid_base``),
    the noise is measured relative to its slot's level and carried to the target's: a table that
    loads a tenth on Sundays, or a feed whose night hours are a fifth of its peak, is noisy in
    proportion to its level, and an absolute spread pooled over its slots gave the quiet slot the
    peak's noise (a Sunday could halve or double unremarked) and the peak the quiet slot's.
    Elsewhere (zeros, values around zero) the absolute spread stays the measure.
    """
    T, widths = lay.T, lay.scale_width[lay.T]
    rbuf = np.full(lay.pad.size, np.nan)
    rbuf[lay.pad.pos[R]] = resid_r
    qs = [0.5, 0.25, 0.75, *TAIL_QUANTILES]
    (r_med, r_q1, r_q3, r_lo, r_hi), r_cnt = _quantiles_by_width(rbuf, lay.ends, widths, qs)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_r = np.where(resid_base > 0, resid_r / resid_base, np.nan)
    rbuf[lay.pad.pos[R]] = np.where(np.isfinite(resid_r), rel_r, np.nan)
    (m_med, m_q1, m_q3, m_lo, m_hi), m_cnt = _quantiles_by_width(rbuf, lay.ends, widths, qs)
    few_tails = (r_cnt < TAIL_MIN_POINTS) | ~lay.daily[T]
    for q in (r_q1, r_q3, m_q1, m_q3):
        q[r_cnt < 3] = np.nan
    for q in (r_lo, r_hi, m_lo, m_hi):  # daily loads only: see dqad.detect.vectorised.robust_scale
        q[few_tails] = np.nan
    relative_expected = seas_med * (1 + np.nan_to_num(m_med))
    relative = (m_cnt == r_cnt) & (seas_med > 0) & (relative_expected > 0)
    expected = np.where(relative, relative_expected, seas_med + np.nan_to_num(r_med))
    scale = np.where(
        relative,
        robust_scale(m_q1, m_q3, np.ones_like(m_q1), cfg.rel_scale_floor, tails=(m_lo, m_hi)) * np.abs(expected),
        robust_scale(r_q1, r_q3, seas_med, cfg.rel_scale_floor, tails=(r_lo, r_hi)),
    )
    # until the slots hold three such residuals, the trailing window's spread is the only measure
    # of the noise there is (wide, as it should be while the series is young)
    return expected, np.where(np.isnan(scale) | (r_cnt < 3), trailing_scale, scale)


def _quantiles_by_width(
    buf: np.ndarray, ends: np.ndarray, widths: np.ndarray, qs: list[float]
) -> tuple[list[np.ndarray], np.ndarray]:
    """``window_quantiles`` (min_periods 1) where each end has its own width (a few distinct ones)."""
    distinct = np.unique(widths)
    if len(distinct) <= 1:  # one width (every daily or every 5-minute block): one pass, no scatter
        return window_quantiles(buf, ends, int(distinct[0]) if len(distinct) else 1, qs, min_periods=1)
    outs = [np.full(len(ends), np.nan) for _ in qs]
    counts = np.zeros(len(ends), dtype=np.int64)
    for width in distinct.tolist():
        at = np.flatnonzero(widths == width)
        part, cnt = window_quantiles(buf, ends[at], int(width), qs, min_periods=1)
        for out, p in zip(outs, part, strict=True):
            out[at] = p
        counts[at] = cnt
    return outs, counts


def _deviation_features(feats: _Sink, lay: _Layout, base: _Baseline) -> tuple[np.ndarray, np.ndarray]:
    """The robust z and its companions; returns the robust z and the expected value shown."""
    vt, expected, scale, effects = lay.v[lay.T], base.expected, base.scale, base.effects
    robust_z = (vt - expected) / scale
    feats["seas_z"] = robust_z
    feats["seas_rel"] = (vt - expected) / np.maximum(np.abs(expected), 1e-9)
    feats["seas_n"] = base.seas_n
    feats["seas_resid_raw_z"] = (vt - base.seas_med) / scale
    feats["base_rel"] = (vt - expected) / np.maximum(np.abs(expected), 1e-9)
    at_r = np.searchsorted(base.R, lay.T)
    # a day with a supported calendar effect is judged by that effect, not by its rhythm; but a
    # holiday, or an effect seen once, is judged by whichever baseline it fits (apply_effects),
    # and its rhythm is one of them (a payroll Friday that is a holiday is still a payroll Friday)
    strict_effect = effects.applies & (effects.category != HOLIDAY) & ~effects.thin
    rhythm_n_t = np.where(strict_effect, 0.0, base.rhythm_n_r[at_r])
    week_z, week_med = _rhythm_z(
        base.rhythm_med_r[at_r], rhythm_n_t, vt, expected, scale, robust_z, lay.daily[lay.T]
    )
    feats["week_z"] = week_z
    # the range shown is the one of the rhythm the point fits (the robust detector judges by it);
    # a supported calendar effect keeps its own
    fits_second_rhythm = (np.abs(week_z) < np.abs(robust_z)) & np.isfinite(week_med)
    return robust_z, np.where(fits_second_rhythm, week_med, expected)


def _history_features(feats: _Sink, lay: _Layout, base: _Baseline, wlong: int) -> np.ndarray:
    """Lags, differences, stuck and zero values, gaps and level of the targets; returns the previous value."""
    pad, T, v, vt = lay.pad, lay.T, lay.v, lay.v[lay.T]
    first = pad.starts[pad.gid[T]]  # each target's series' first row
    prev_all = np.empty_like(v)  # the previous value of the same series (none at its first row)
    prev_all[1:] = v[:-1]
    prev_all[pad.starts] = np.nan
    lag1 = prev_all[T]
    feats["diff1_z"] = (vt - lag1) / base.scale
    feats["rel_lag1"] = (vt - lag1) / np.maximum(np.abs(lag1), 1e-9)
    same_all = (v == prev_all).astype(np.float64)
    same_all[np.isnan(prev_all)] = np.nan
    feats["same_as_prev"] = np.nan_to_num(same_all[T])
    feats["same_rate"] = pad.trailing_rate(same_all, T, wlong)
    lag_slot = np.where(first <= T - 7, v[np.maximum(T - 7, 0)], np.nan)
    feats["rel_lag7"] = (vt - lag_slot) / np.maximum(np.abs(lag_slot), 1e-9)
    feats["is_missing"] = np.isnan(vt).astype(np.float64)
    feats["is_zero"] = (vt == 0).astype(np.float64)
    zero_prev = (lay.bv == 0).astype(np.float64)
    zero_prev[np.isnan(lay.bv)] = np.nan
    feats["zero_rate"] = pad.trailing_rate(zero_prev, T, wlong)
    t_t = lay.ts[T].astype(np.float64)
    prev_t = np.where(first < T, lay.ts[np.maximum(T - 1, 0)].astype(np.float64), np.nan)
    feats["gap_ratio"] = (t_t - prev_t) / 1e9 / np.maximum(lay.step[T], 1.0)
    feats["n_hist"] = (T - first).astype(np.float64)
    feats["level_log"] = np.sign(base.expected) * np.log1p(np.abs(base.expected))
    feats["scale_rel"] = base.scale / np.maximum(np.abs(base.expected), 1e-9)
    return lag1


def _calendar_features(feats: _Sink, lay: _Layout, effects: Effects) -> tuple[np.ndarray, np.ndarray]:
    """Calendar position and learnt effect of the targets; returns their holiday and month-end flags."""
    tt = lay.t_index[lay.T]
    hol_t = lay.cats[lay.T, 0]
    me_t = np.asarray(lay.cats[lay.T][:, list(MONTH_END)].any(axis=1))
    feats["dow"] = np.asarray(tt.day_of_week, dtype=np.float64)
    feats["dom"] = np.asarray(tt.day, dtype=np.float64)
    feats["hour"] = np.asarray(tt.hour, dtype=np.float64)
    feats["days_to_month_end"] = np.asarray(tt.days_in_month - tt.day, dtype=np.float64)
    feats["is_month_end"] = me_t.astype(np.float64)
    feats["is_holiday"] = hol_t.astype(np.float64)
    feats["calendar_effect"] = np.expm1(effects.log_ratio)
    feats["is_daily"] = lay.daily[lay.T].astype(np.float64)
    return hol_t, me_t


def compute(
    frame: pd.DataFrame,
    cfg: DetectorConfig,
    labels: pd.Series | np.ndarray | None = None,
    *,
    targets: np.ndarray | None = None,
    column_order: Sequence[str] | None = None,
) -> Computed:
    """Features and baselines for the rows of ``frame`` (see module docstring).

    ``labels`` is aligned on the frame's index (a Series) or on its rows (an array). ``targets``
    (a boolean mask over the rows) asks for the rows that need scoring only; the other rows are
    context. Each statistic is then computed only where the targets depend on it (their trailing
    windows; seasonal baselines of the ``scale_window`` points before them), so a scorer pays for
    its new rows, not for the history tail. The result has one row per target, in frame order, with
    the same values a full computation gives those rows. ``column_order`` puts those feature
    columns first (a model's own order, so that selecting its columns needs no copy).
    """
    lay = _layout(frame, cfg, labels, targets)
    T, wlong = lay.T, max(cfg.windows)
    feats = _Sink(keep=("seas_z", "same_as_prev", "same_rate"))
    bbuf, trailing_scale = _trailing_features(feats, lay, cfg)
    base = _baseline(lay, cfg, bbuf, trailing_scale)
    robust_z, shown_expected = _deviation_features(feats, lay, base)
    lag1 = _history_features(feats, lay, base, wlong)
    hol_t, me_t = _calendar_features(feats, lay, base.effects)
    _load_run_features(feats, lay.df, lay.order, T, lay.ends, lay.pad, wlong)
    feats.clip = False  # cross-metric features below are not clipped
    rows = lay.order[T]  # frame positions of the targets, in (series, time) order
    load = _cross_metric_features(feats, lay.df, rows, lay.ts[T])
    _key_features(feats, lay.df, rows, lay.series_names, lay.sc[T])
    features, out_rows, back, identity = _assemble(feats, rows, lay.df.index, column_order)
    series_min = np.fmin.reduceat(lay.v, lay.pad.starts)[lay.pad.gid[T]] if lay.n else np.zeros(0)
    aux_cols = {
        "expected": shown_expected,
        "scale": base.scale,
        "robust_z": robust_z,
        "effect": base.effects.category,
        "effect_rel": np.expm1(base.effects.log_ratio),
        "is_holiday": hol_t,
        "is_month_end": me_t,
        "slot": lay.slot_base[T],
        "daily": lay.daily[T],
        "lag1": lag1,
        "series_min": series_min,
        "load": load,
    }
    aux = pd.DataFrame({k: x if identity else x[back] for k, x in aux_cols.items()}, index=features.index, copy=False)
    if targets is not None and len(features) != int(np.count_nonzero(targets)):
        keep = np.asarray(targets, dtype=bool)[out_rows]
        features, aux = features[keep], aux[keep]
    return Computed(features=features, aux=aux)

def _load_run_features(
    feats: _Sink, df: pd.DataFrame, order: np.ndarray, T: np.ndarray, ends: np.ndarray, pad: Padded, wlong: int
) -> None:
    """Rerun flag and load-delay z of the targets (zero where the frame has no such column)."""
    if "is_rerun" in df.columns:
        rerun = df["is_rerun"].fillna(False).astype(bool).to_numpy(dtype=np.float64)
        feats["is_rerun"] = rerun[order[T]]
    else:
        feats["is_rerun"] = np.zeros(len(T))
    if "load_delay_s" in df.columns:
        d = pd.to_numeric(df["load_delay_s"], errors="coerce").to_numpy(dtype=np.float64)[order]
        dm, dq1, dq3 = _windows(pad.buffer(d), ends, wlong, 1, 2)
        feats["load_delay_z"] = (d[T] - dm) / robust_scale(dq1, dq3, dm, LOAD_DELAY_REL_FLOOR)
    else:
        feats["load_delay_z"] = np.zeros(len(T))


def _cross_metric_features(feats: _Sink, df: pd.DataFrame, rows: np.ndarray, ts_t: np.ndarray) -> np.ndarray:
    """Features of the same load's other metrics (same group and timestamp); returns each target's load code.

    ``rows`` are the targets' frame positions and ``ts_t`` their timestamps, in (series, time) order.
    """
    z = np.clip(np.nan_to_num(feats.wide["seas_z"], nan=0.0), -LOAD_Z_CLIP, LOAD_Z_CLIP)
    # a repeat only says "stale" in a series that rarely repeats: a table's zeros repeat every day
    rarely_repeats = (np.nan_to_num(feats.wide["same_rate"], nan=1.0) < STALE_REPEAT_RATE).astype(np.float64)
    same = feats.wide["same_as_prev"] * rarely_repeats
    g_codes = pd.factorize(df["group"].iloc[rows])[0]  # the targets' groups only (same loads)
    t_codes, _ = pd.factorize(ts_t)
    load, _ = pd.factorize(g_codes.astype(np.int64) * (int(t_codes.max(initial=0)) + 1) + t_codes)
    n_loads = int(load.max(initial=-1)) + 1

    def others(x: np.ndarray) -> np.ndarray:
        return np.bincount(load, weights=x, minlength=n_loads)[load] - x

    n_other = np.bincount(load, minlength=n_loads)[load] - 1.0
    denom = np.maximum(n_other, 1.0)
    feats["grp_n_metrics"] = n_other
    feats["grp_other_mean_z"] = others(z) / denom
    feats["grp_other_dev"] = others((np.abs(z) >= DEVIATING_Z).astype(np.float64))
    feats["grp_other_dev_frac"] = feats["grp_other_dev"] / denom
    feats["grp_other_neg"] = others((z <= -DEVIATING_Z).astype(np.float64))
    feats["grp_other_pos"] = others((z >= DEVIATING_Z).astype(np.float64))
    # share of the load's other metrics that rarely repeat and repeated now
    n_rare = others(rarely_repeats)
    feats["grp_other_same_frac"] = (others(same) / np.maximum(n_rare, 1.0)) * (n_rare > 0)
    return load


def _key_features(feats: _Sink, df: pd.DataFrame, rows: np.ndarray, series_names: pd.Index, sc_t: np.ndarray) -> None:
    """Stable encodings of the targets' key columns and metric name (the targets' rows only: no string copies)."""
    for c in key_columns(df):
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            feats[f"key_{c}"] = _hash01(df[c].iloc[rows].fillna(""))
    used, at_used = np.unique(sc_t, return_inverse=True)  # the targets' series only
    used_names = np.asarray(series_names[used], dtype=object)  # plain names (iterating an Index is slower)
    metric_of_series = np.array([str(s).rsplit("/", 1)[-1] for s in used_names], dtype=object)
    feats["key_metric"] = _crc01(metric_of_series)[at_used] if len(used) else np.zeros(0)


def _assemble(
    feats: _Sink, rows: np.ndarray, idx: pd.Index, column_order: Sequence[str] | None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, bool]:
    """One float32 matrix, a column per feature (contiguous), rows put back in frame order once.

    Returns the features, their frame positions, the permutation from (series, time) order to
    frame order, and whether that permutation is the identity.
    """
    back = np.argsort(rows, kind="stable")
    identity = bool(len(rows) < 2 or (np.diff(rows) > 0).all())
    names = [c for c in (column_order or ()) if c in feats]
    names += [c for c in feats if c not in set(names)]
    matrix = np.empty((len(names), len(rows)), dtype=np.float32)
    for j, c in enumerate(names):
        x = feats.pop(c)
        matrix[j] = x if identity else x[back]
    out_rows = rows if identity else rows[back]
    return pd.DataFrame(matrix.T, index=idx[out_rows], columns=names, copy=False), out_rows, back, identity


def _effects(
    sc: np.ndarray,
    cats: np.ndarray,
    bv: np.ndarray,
    base: np.ndarray,
    R_all: np.ndarray,
    T: np.ndarray,
    noise_rel: np.ndarray,
    cfg: DetectorConfig,
) -> Effects:
    """Calendar effects of the targets, learnt from earlier candidate days of their own series.

    An occurrence's ratio is its value (labelled anomalies blanked) over its ordinary baseline
    (``base``, at ``R_all``).
    """
    ratios = np.full(len(bv), np.nan)
    ratios[R_all] = log_ratio(bv[R_all], base)
    return learn_effects(sc, cats, ratios, T, noise_rel, cfg.effect_rules())


def build_features(frame: pd.DataFrame, cfg: DetectorConfig, *, labels: pd.Series | None = None) -> pd.DataFrame:
    """Causal features (float32, no NaN) with the same index as ``frame``.

    ``labels`` (1 = anomaly, aligned on the frame's index) blank labelled points out of the
    baselines of later points.
    """
    return compute(frame, cfg, labels).features
