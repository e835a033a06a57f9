"""Scorer: score, label, severity, expected range and reasons for the rows of new loads.

Only the tail of history each series needs is used (trailing windows + a few seasonal cycles +
earlier special days), so scoring cost grows with the new data, not with the whole history.
Scores are causal: a new point's features come from strictly earlier points (history and earlier
new loads) plus its own load's other metrics, so appending future loads never changes them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dqad.detect._util import holiday_flag, key_columns, month_end_flag, normalise
from dqad.detect.features import compute
from dqad.detect.model import ModelBundle

OUTPUT_COLUMNS = ("score", "is_anomaly", "severity", "expected_low", "expected_high", "reasons")
DAY_NAMES = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def _history_tail(hist: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """The rows of history new points can depend on (per series), in original order."""
    if len(hist) == 0:
        return hist
    cfg = bundle.cfg
    h = hist.sort_values(["series", "timestamp"], kind="stable")
    ts = h["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    step = pd.Series(np.r_[0, np.diff(ts)] / 1e9, index=h.index)
    first = h["series"].ne(h["series"].shift())
    step[first.to_numpy()] = np.nan
    med_step = step.groupby(h["series"].to_numpy()).transform(lambda s: s.tail(64).median())
    cycle = np.where(med_step.fillna(86400).to_numpy() >= 20 * 3600, 7,
                     np.ceil(86400 / np.maximum(med_step.fillna(86400).to_numpy(), 1.0)))
    need = max(*cfg.windows, cfg.scale_window, 16) + 2 + (cfg.seasonal_k + 1) * cycle + cfg.scale_window
    from_end = h.groupby("series", sort=False).cumcount(ascending=False).to_numpy()
    t = pd.DatetimeIndex(h["timestamp"])
    special = holiday_flag(t, cfg.holidays)
    if "month_end" in cfg.slots:
        special = special | month_end_flag(t, cfg.month_end_days, cfg.holidays)
    keep = (from_end < need) | special
    return h[keep]


def _fmt(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:,.2f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def _slot_name(ts: pd.Timestamp, daily: bool, holiday: bool, month_end: bool) -> str:
    if holiday:
        return "holidays"
    if month_end and daily:
        return "month ends"
    if daily:
        return DAY_NAMES[ts.day_of_week]
    return f"{ts.hour:02d}:{ts.minute:02d}"


def _reasons(new: pd.DataFrame, feats: pd.DataFrame, aux: pd.DataFrame, anomalies: np.ndarray) -> np.ndarray:
    """Top drivers in words, only for anomalous rows (few), so per-row Python is affordable."""
    out = np.full(len(new), "", dtype=object)
    if not anomalies.any():
        return out
    metric = new["series"].str.rsplit("/", n=1).str[-1].str.replace("_", " ")
    z = feats["seas_z"].to_numpy()
    dev = np.abs(z) >= 3.0
    grp_key = new["group"].astype(str) + "|" + new["timestamp"].astype(str)
    dev_names = (
        pd.DataFrame({"k": grp_key[dev], "m": metric[dev], "neg": z[dev] < 0})
        .groupby("k")
        .agg(names=("m", lambda s: sorted(set(s))), neg=("neg", "mean"))
    )
    for i in np.flatnonzero(anomalies):
        row = new.iloc[i]
        f = feats.iloc[i]
        a = aux.iloc[i]
        parts: list[tuple[float, str]] = []
        v = float(row["value"])
        exp = float(a["expected"])
        ts = row["timestamp"]
        if np.isnan(v):
            parts.append((100.0, "value is missing (NULL) where a number was expected"))
        elif np.isfinite(exp):
            slot = _slot_name(ts, bool(a["daily"]), bool(a["is_holiday"]), bool(a["is_month_end"]))
            where = f"for {slot}" if slot[0].isalpha() else f"at {slot}"
            if a["special_unknown"] and abs(exp) > 1e-9:
                kind = "holidays" if a["is_holiday"] else "month ends"
                parts.append((abs(float(f["seas_z"])),
                              f"value {_fmt(v)} is outside the range tolerated on {kind} "
                              f"({_fmt(float(row['expected_low']))} to {_fmt(float(row['expected_high']))}; "
                              f"ordinary level {_fmt(exp)})"))
            elif abs(exp) > 1e-9:
                pct = (v - exp) / abs(exp) * 100
                word = "below" if pct < 0 else "above"
                parts.append((abs(float(f["seas_z"])),
                              f"value {_fmt(v)} is {abs(pct):.0f}% {word} the usual {_fmt(exp)} {where}"))
            else:
                parts.append((abs(float(f["seas_z"])), f"value {_fmt(v)} where {_fmt(exp)} is usual {where}"))
        k = grp_key.iloc[i]
        if k in dev_names.index and len(dev_names.at[k, "names"]) >= 2:
            names = dev_names.at[k, "names"]
            verb = "dropped" if dev_names.at[k, "neg"] >= 0.5 else "rose"
            listed = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
            parts.append((50.0, f"{listed} {verb} together in this load"))
        if f["same_as_prev"] > 0 and f["same_rate"] < 0.2:
            parts.append((40.0, f"same value as the previous load ({_fmt(v)}): the data may be stale"))
        if f["gap_ratio"] > 1.9:
            parts.append((20.0, f"{f['gap_ratio']:.0f}x the usual interval since the previous load"))
        if f["load_delay_z"] > 4:
            parts.append((15.0, "the load ran much later/slower than usual"))
        if f["is_rerun"] > 0:
            parts.append((5.0, "this load is a rerun"))
        parts.sort(key=lambda p: -p[0])
        out[i] = "; ".join(p[1] for p in parts[:3]) or "unusual combination of recent behaviour"
    return out


def score_new(bundle: ModelBundle, history: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One output row per ``new`` row (same index): carried columns + score, label, range, reasons."""
    new_n = normalise(new)
    hist_n = normalise(history) if history is not None and len(history) else new_n.iloc[:0]
    if "label" not in hist_n.columns:
        hist_n["label"] = 0
    tail = _history_tail(hist_n, bundle)
    cols = sorted(set(tail.columns) | set(new_n.columns))
    both = pd.concat(
        [tail.reindex(columns=cols).reset_index(drop=True), new_n.reindex(columns=cols).reset_index(drop=True)],
        ignore_index=True,
    )
    for c in ("series", "group"):
        both[c] = both[c].astype(str)
    labels = pd.Series(np.r_[tail["label"].fillna(0).to_numpy(dtype=np.float64), np.zeros(len(new_n))],
                       index=both.index)
    comp = compute(both, bundle.cfg, labels=labels)
    sel = np.arange(len(tail), len(both))
    feats = comp.features.iloc[sel].reset_index(drop=True)
    aux = comp.aux.iloc[sel].reset_index(drop=True)
    score = np.clip(bundle.predict_score(feats), 0.0, 1.0)
    is_anom = bundle.decide(score, feats)

    cfg = bundle.cfg
    exp = aux["expected"].to_numpy(dtype=np.float64)
    half = cfg.range_z * aux["scale"].to_numpy(dtype=np.float64)
    lo, hi = exp - half, exp + half
    spec = aux["special_unknown"].to_numpy(dtype=bool)
    base = aux["base_expected"].to_numpy(dtype=np.float64)
    hol = aux["is_holiday"].to_numpy(dtype=bool)
    r_lo = np.where(hol, cfg.holiday_range[0], cfg.month_end_range[0])
    r_hi = np.where(hol, cfg.holiday_range[1], cfg.month_end_range[1])
    lo = np.where(spec, np.minimum(base * r_lo, base * r_hi), lo)
    hi = np.where(spec, np.maximum(base * r_lo, base * r_hi), hi)
    # a series that was never negative is not expected to become negative
    nonneg = (
        pd.concat([tail[["series", "value"]], new_n[["series", "value"]]])
        .groupby("series")["value"].min().ge(0)
    )
    nn = new_n["series"].map(nonneg).fillna(False).to_numpy(dtype=bool)
    lo = np.where(nn, np.maximum(lo, 0.0), lo)

    z = np.abs(feats["seas_z"].to_numpy(dtype=np.float64))
    rel = np.abs(feats["seas_rel"].to_numpy(dtype=np.float64))
    sev = np.where((score >= 0.9) & ((z >= 2 * cfg.robust_threshold) | (rel >= 0.5)), "high",
                   np.where((score >= 0.7) | (rel >= 0.2), "medium", "low"))
    sev = np.where(is_anom, sev, "")

    carried = ["series", "group", "timestamp", "value", *[c for c in key_columns(new_n) if c in new_n.columns]]
    out = new_n[carried].reset_index(drop=True)
    out["score"] = score
    out["is_anomaly"] = is_anom
    out["severity"] = sev
    out["expected_low"] = lo
    out["expected_high"] = hi
    out["reasons"] = _reasons(out, feats, aux, is_anom)
    out.index = new.index
    return out
