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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqad.detect._util import (
    Padded,
    holiday_flag,
    key_columns,
    month_end_flag,
    normalise,
    robust_scale,
    slot_codes,
    step_seconds,
)
from dqad.detect.config import DetectorConfig

Z_CLIP = 50.0
REL_CLIP = 20.0
MIN_SEASONAL_HISTORY = 2


@dataclass
class Computed:
    """Features plus the baselines the scorer needs (expected value/scale), index = frame's index."""

    features: pd.DataFrame
    aux: pd.DataFrame


def _hash01(values: pd.Series) -> np.ndarray:
    """Stable string encoding in [0, 1): crc32 (not Python's salted hash) so train and score agree."""
    uniq, inv = np.unique(values.astype(str).to_numpy(), return_inverse=True)
    codes = np.array([zlib.crc32(u.encode()) / 2**32 for u in uniq], dtype=np.float64)
    return codes[inv]


def special_range_excess(
    v: np.ndarray,
    expected: np.ndarray,
    holiday: np.ndarray,
    month_end: np.ndarray,
    holiday_range: tuple[float, float],
    month_end_range: tuple[float, float],
) -> np.ndarray:
    """Signed log-distance of value/expected outside the tolerated range of its special day (0 inside).

    Holidays and month ends differ too much from one another (a closure keeps 10% or 40% of the
    volume, a closing surge doubles it or not) for a baseline of their own to be reliable with a few
    months of history, so they are judged against a range around the ordinary-day baseline.
    """
    lo = np.where(holiday, holiday_range[0], month_end_range[0])
    hi = np.where(holiday, holiday_range[1], month_end_range[1])
    base = np.where(np.abs(expected) > 1e-9, expected, np.nan)
    ratio = v / base
    with np.errstate(divide="ignore", invalid="ignore"):
        below = np.log(lo) - np.log(np.maximum(ratio, 1e-6))
        above = np.log(np.maximum(ratio, 1e-6)) - np.log(hi)
    out = np.where(below > 0, -below, np.where(above > 0, above, 0.0))
    out = np.where((ratio <= 0) & np.isfinite(ratio), -(np.log(lo) + np.log(1e6)), out)
    return np.nan_to_num(out, nan=0.0)


def _seasonal_baseline(
    series_codes: np.ndarray,
    slot: np.ndarray,
    ts_ns: np.ndarray,
    base_values: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Trailing median and count of the last ``k`` same-slot values of each series (strictly earlier)."""
    order = np.lexsort((ts_ns, slot, series_codes))
    key = series_codes[order] * 100_000 + slot[order]
    pad = Padded(key, k + 1)
    vals = base_values[order]
    med = pad.rolling(vals, k, "median", min_periods=1)
    cnt = pad.rolling(vals, k, "count", min_periods=0)
    out_med = np.empty_like(med)
    out_cnt = np.empty_like(cnt)
    out_med[order] = med
    out_cnt[order] = np.nan_to_num(cnt)
    return out_med, out_cnt


def compute(frame: pd.DataFrame, cfg: DetectorConfig, labels: pd.Series | None = None) -> Computed:
    """Features and baselines for every row of ``frame`` (see module docstring)."""
    df = normalise(frame)
    n = len(df)
    idx = df.index
    series_codes, _ = pd.factorize(df["series"], sort=True)
    ts_ns = df["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts_ns, series_codes))
    sc = series_codes[order]
    ts_sorted = ts_ns[order]
    t_index = pd.DatetimeIndex(df["timestamp"].to_numpy()[order])
    v = df["value"].to_numpy(dtype=np.float64)[order]
    bv = v.copy()
    if labels is not None:
        lab = pd.Series(labels).reindex(idx).fillna(0).to_numpy()[order].astype(bool)
        bv[lab] = np.nan

    maxw = max(max(cfg.windows), cfg.scale_window, 16)
    pad = Padded(sc, maxw + 1)
    feats: dict[str, np.ndarray] = {}

    # calendar and seasonal slots
    step = step_seconds(ts_sorted, pad)
    daily = ~(step < 20 * 3600)
    month_end = (
        month_end_flag(t_index, cfg.month_end_days, cfg.holidays) if "month_end" in cfg.slots else np.zeros(n, bool)
    )
    holiday = holiday_flag(t_index, cfg.holidays)
    month_end &= daily & ~holiday
    holiday &= daily
    special = month_end | holiday
    slot_base = slot_codes(t_index, step, cfg.slots, np.zeros(n, bool), np.zeros(n, bool))

    # seasonal baseline of the ordinary slot; special days are blanked out of it and are judged by
    # a tolerated range around it instead (see special_range_excess)
    bv_ord = np.where(special, np.nan, bv)
    med_ord, n_ord = _seasonal_baseline(sc, slot_base, ts_sorted, bv_ord, cfg.seasonal_k)
    seas_med = med_ord
    seas_n = n_ord

    # trailing windows (non-seasonal)
    wmed = {}
    wscale = {}
    for w in cfg.windows:
        m = pad.rolling(bv, w, "median", min_periods=1)
        q1 = pad.rolling(bv, w, "quantile", min_periods=2, q=0.25)
        q3 = pad.rolling(bv, w, "quantile", min_periods=2, q=0.75)
        s = robust_scale(q1, q3, m, cfg.rel_scale_floor)
        wmed[w], wscale[w] = m, s
        feats[f"z_w{w}"] = (v - m) / s
        feats[f"rel_w{w}"] = (v - m) / np.maximum(np.abs(m), 1e-9)
    wlong = max(cfg.windows)

    # where the seasonal slot has too little history, fall back to the longest trailing median
    seas_ok = seas_n >= MIN_SEASONAL_HISTORY
    seas_med = np.where(seas_ok, seas_med, wmed[wlong])

    # residuals w.r.t. the seasonal baseline, and their robust centre/scale (bias from trend/growth)
    resid = v - seas_med
    resid_b = bv_ord - seas_med
    r_med = pad.rolling(resid_b, cfg.scale_window, "median", min_periods=1)
    r_q1 = pad.rolling(resid_b, cfg.scale_window, "quantile", min_periods=3, q=0.25)
    r_q3 = pad.rolling(resid_b, cfg.scale_window, "quantile", min_periods=3, q=0.75)
    r_med = np.nan_to_num(r_med)
    expected = seas_med + r_med
    scale = robust_scale(r_q1, r_q3, seas_med, cfg.rel_scale_floor)
    scale = np.where(np.isnan(scale), wscale[wlong], scale)
    robust_z = (v - expected) / scale
    rel_dev = (v - expected) / np.maximum(np.abs(expected), 1e-9)
    # special days: deviation beyond the tolerated range, in units of 5% (log scale), signed
    excess = special_range_excess(v, expected, holiday, month_end, cfg.holiday_range, cfg.month_end_range)
    robust_z = np.where(special, excess / 0.05, robust_z)
    rel_dev = np.where(special, np.sign(excess) * np.expm1(np.abs(excess)), rel_dev)
    feats["seas_z"] = robust_z
    feats["seas_rel"] = rel_dev
    feats["seas_n"] = seas_n
    feats["seas_resid_raw_z"] = resid / scale
    base_exp = expected
    feats["base_rel"] = (v - expected) / np.maximum(np.abs(expected), 1e-9)
    special_unknown = special

    # lags / differences / stuck values
    lag1 = pad.shift(v, 1)
    feats["diff1_z"] = (v - lag1) / scale
    feats["rel_lag1"] = (v - lag1) / np.maximum(np.abs(lag1), 1e-9)
    same = (v == lag1).astype(np.float64)
    same[np.isnan(lag1)] = np.nan
    feats["same_as_prev"] = np.nan_to_num(same)
    feats["same_rate"] = pad.rolling(same, wlong, "mean", min_periods=1)
    lag_slot = pad.shift(v, 7)
    feats["rel_lag7"] = (v - lag_slot) / np.maximum(np.abs(lag_slot), 1e-9)
    feats["is_missing"] = np.isnan(v).astype(np.float64)
    feats["is_zero"] = (v == 0).astype(np.float64)
    zero_prev = (bv == 0).astype(np.float64)
    zero_prev[np.isnan(bv)] = np.nan
    feats["zero_rate"] = pad.rolling(zero_prev, wlong, "mean", min_periods=1)
    prev_t = pad.shift(ts_sorted.astype(np.float64), 1)
    feats["gap_ratio"] = (ts_sorted.astype(np.float64) - prev_t) / 1e9 / np.maximum(step, 1.0)
    feats["n_hist"] = pad.cumcount().astype(np.float64)
    feats["level_log"] = np.sign(expected) * np.log1p(np.abs(expected))
    feats["scale_rel"] = scale / np.maximum(np.abs(expected), 1e-9)

    # calendar
    feats["dow"] = np.asarray(t_index.day_of_week, dtype=np.float64)
    feats["dom"] = np.asarray(t_index.day, dtype=np.float64)
    feats["hour"] = np.asarray(t_index.hour, dtype=np.float64)
    feats["days_to_month_end"] = np.asarray(t_index.days_in_month - t_index.day, dtype=np.float64)
    feats["is_month_end"] = month_end.astype(np.float64)
    feats["is_holiday"] = holiday.astype(np.float64)
    feats["special_unknown"] = special_unknown.astype(np.float64)
    feats["is_daily"] = daily.astype(np.float64)

    # load-run context
    if "is_rerun" in df.columns:
        feats["is_rerun"] = df["is_rerun"].fillna(False).astype(bool).to_numpy()[order].astype(np.float64)
    else:
        feats["is_rerun"] = np.zeros(n)
    if "load_delay_s" in df.columns:
        d = pd.to_numeric(df["load_delay_s"], errors="coerce").to_numpy(dtype=np.float64)[order]
        dm = pad.rolling(d, wlong, "median", min_periods=1)
        dq1 = pad.rolling(d, wlong, "quantile", min_periods=2, q=0.25)
        dq3 = pad.rolling(d, wlong, "quantile", min_periods=2, q=0.75)
        feats["load_delay_z"] = (d - dm) / robust_scale(dq1, dq3, dm, 0.05)
    else:
        feats["load_delay_z"] = np.zeros(n)

    out = pd.DataFrame(feats, index=idx[order])
    for c in out.columns:
        if c.endswith("_z") or c.startswith("z_"):
            out[c] = out[c].clip(-Z_CLIP, Z_CLIP)
        elif "rel" in c:
            out[c] = out[c].clip(-REL_CLIP, REL_CLIP)
    out = out.reindex(idx)

    # cross-metric features of one load: the same timestamp's other metrics in the group
    z = out["seas_z"].fillna(0.0).clip(-20, 20)
    keys = [df["group"], df["timestamp"]]
    same = out["same_as_prev"].astype(float)
    g = pd.DataFrame({"z": z, "same": same, "dev": (z.abs() >= 3.0).astype(float), "neg": (z <= -3.0).astype(float),
                      "pos": (z >= 3.0).astype(float), "one": 1.0}, index=idx)
    sums = g.groupby(keys, sort=False).transform("sum")
    n_other = (sums["one"] - 1.0).to_numpy()
    denom = np.maximum(n_other, 1.0)
    out["grp_n_metrics"] = n_other
    out["grp_other_mean_z"] = ((sums["z"] - g["z"]) / denom).to_numpy()
    out["grp_other_dev"] = (sums["dev"] - g["dev"]).to_numpy()
    out["grp_other_dev_frac"] = out["grp_other_dev"].to_numpy() / denom
    out["grp_other_neg"] = (sums["neg"] - g["neg"]).to_numpy()
    out["grp_other_pos"] = (sums["pos"] - g["pos"]).to_numpy()
    out["grp_other_same_frac"] = ((sums["same"] - g["same"]).to_numpy() / denom) * (n_other > 0)

    # key encodings
    for c in key_columns(df):
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            out[f"key_{c}"] = _hash01(df[c].fillna(""))
    out["key_metric"] = _hash01(df["series"].str.rsplit("/", n=1).str[-1])

    aux = pd.DataFrame(
        {
            "expected": expected,
            "scale": scale,
            "robust_z": robust_z,
            "special_unknown": special_unknown,
            "is_holiday": holiday,
            "is_month_end": month_end,
            "base_expected": base_exp,
            "slot": slot_base,
            "daily": daily,
            "lag1": lag1,
        },
        index=idx[order],
    ).reindex(idx)
    aux["base_expected"] = aux["base_expected"].fillna(aux["expected"])
    feats_df = out.replace([np.inf, -np.inf], np.nan).fillna(0.0).astype(np.float32)
    return Computed(features=feats_df, aux=aux)


def build_features(
    frame: pd.DataFrame, cfg: DetectorConfig, *, labels: pd.Series | None = None
) -> pd.DataFrame:
    """Causal features (float32, no NaN) with the same index as ``frame``.

    ``labels`` (1 = anomaly, aligned on the frame's index) blank labelled points out of the
    baselines of later points.
    """
    return compute(frame, cfg, labels).features
