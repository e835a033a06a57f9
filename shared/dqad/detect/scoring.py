"""Scorer: score, label, severity, expected range and reasons for the rows of new loads.

Only the tail of history each series needs is used (trailing windows + a few seasonal cycles +
earlier special days), so scoring cost grows with the new data, not with the whole history.
Scores are causal: a new point's features come from strictly earlier points (history and earlier
new loads) plus its own load's other metrics, so appending future loads never changes them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa

from dqad.detect._util import (
    Padded,
    holiday_flag,
    key_columns,
    month_end_flag,
    normalise,
    series_time_order,
    window_quantiles,
)
from dqad.detect.features import compute
from dqad.detect.model import ModelBundle

OUTPUT_COLUMNS = ("score", "is_anomaly", "severity", "expected_low", "expected_high", "reasons")
SEVERITIES = ("", "low", "medium", "high")
DAY_NAMES = ("Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "Saturdays", "Sundays")


def _history_tail(hist: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    """The rows of history new points can depend on, sorted by (series, time).

    Per series: the last ``need`` points (trailing windows, ``seasonal_k + 1`` seasonal cycles and
    the scale window, where a cycle is 7 points for daily data and a day's worth of points for
    sub-daily data, judged from the median of the last 64 steps), plus every earlier special day.
    Positional slicing on the series-sorted frame: no per-series Python.
    """
    if len(hist) == 0:
        return hist
    cfg = bundle.cfg
    codes, _ = pd.factorize(hist["series"], sort=True)
    ts = hist["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = series_time_order(codes, ts)
    codes, ts = codes[order], ts[order]
    pad = Padded(codes, 65)
    step = np.r_[np.nan, np.diff(ts) / 1e9]
    step[pad.starts] = np.nan
    last = np.r_[pad.starts[1:], len(codes)] - 1
    (med_step,), _ = window_quantiles(pad.buffer(step), pad.pos[last], 64, [0.5])
    med_step = np.nan_to_num(med_step, nan=86400.0)
    cycle = np.where(med_step >= 20 * 3600, 7, np.ceil(86400 / np.maximum(med_step, 1.0)))
    need = max(*cfg.windows, cfg.scale_window, 16) + 2 + (cfg.seasonal_k + 1) * cycle + cfg.scale_window
    from_end = last[pad.gid] - np.arange(len(codes))
    t = pd.DatetimeIndex(ts.view("datetime64[ns]"))
    special = holiday_flag(t, cfg.holidays)
    if "month_end" in cfg.slots:
        special = special | month_end_flag(t, cfg.month_end_days, cfg.holidays)
    keep = (from_end < need[pad.gid]) | special
    return hist.iloc[order[keep]]


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    if ax >= 100:
        return f"{x:,.0f}"
    if ax >= 1:
        return f"{x:,.2f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


def _slot_name(dow: int, hour: int, minute: int, daily: bool, holiday: bool, month_end: bool) -> str:
    if holiday:
        return "holidays"
    if month_end and daily:
        return "month ends"
    if daily:
        return DAY_NAMES[dow]
    return f"{hour:02d}:{minute:02d}"


def _metric_words(series: str) -> str:
    return series.rsplit("/", 1)[-1].replace("_", " ")


def _reasons(
    out: pd.DataFrame, feats: pd.DataFrame, aux: pd.DataFrame, anomalies: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Top drivers in words, only for anomalous rows.

    Anomalies are few, so a Python loop over them is affordable, but only over plain lists taken
    for those rows (no pandas row access), and the "metrics moved together" summary looks only at
    deviating rows of loads that hold an anomaly: nothing here walks every new row in Python.
    """
    rows = np.flatnonzero(anomalies)
    texts: list[str] = []
    if not len(rows):
        return rows, texts
    ts_ns = out["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    z = feats["seas_z"].to_numpy(dtype=np.float64)

    # metrics deviating (|seas_z| >= 3) in the loads (group, timestamp) that hold an anomaly
    load = aux["load"].to_numpy()
    keys = load[rows].tolist()
    dev = np.flatnonzero(np.abs(z) >= 3.0)
    dev = dev[np.isin(load[dev], load[rows])]
    moved: dict[int, tuple[set[str], list[bool]]] = {}
    metric_names = out["series"].iloc[dev].tolist()
    for key, name, zz in zip(load[dev].tolist(), metric_names, z[dev].tolist(), strict=True):
        names, negs = moved.setdefault(key, (set(), []))
        names.add(_metric_words(name))
        negs.append(zz < 0)
    together: dict[int, str] = {}
    for key, (name_set, negs) in moved.items():
        if len(name_set) >= 2:
            names = sorted(name_set)
            verb = "dropped" if sum(negs) / len(negs) >= 0.5 else "rose"
            together[key] = f"{', '.join(names[:-1])} and {names[-1]} {verb} together in this load"

    t_rows = pd.DatetimeIndex(ts_ns[rows].view("datetime64[ns]"))
    f = {
        c: feats[c].to_numpy(dtype=np.float64)[rows].tolist()
        for c in ("same_as_prev", "same_rate", "gap_ratio", "load_delay_z", "is_rerun")
    }
    a = {
        c: aux[c].to_numpy(dtype=bool)[rows].tolist()
        for c in ("daily", "is_holiday", "is_month_end", "special_unknown")
    }
    per_row = zip(
        keys,
        out["value"].to_numpy(dtype=np.float64)[rows].tolist(),
        aux["expected"].to_numpy(dtype=np.float64)[rows].tolist(),
        out["expected_low"].to_numpy(dtype=np.float64)[rows].tolist(),
        out["expected_high"].to_numpy(dtype=np.float64)[rows].tolist(),
        np.abs(z[rows]).tolist(),
        np.asarray(t_rows.day_of_week).tolist(),
        np.asarray(t_rows.hour).tolist(),
        np.asarray(t_rows.minute).tolist(),
        a["daily"],
        a["is_holiday"],
        a["is_month_end"],
        a["special_unknown"],
        f["same_as_prev"],
        f["same_rate"],
        f["gap_ratio"],
        f["load_delay_z"],
        f["is_rerun"],
        strict=True,
    )
    for (
        key,
        v,
        exp,
        lo,
        hi,
        az,
        dow,
        hour,
        minute,
        daily,
        hol,
        me,
        spec,
        same,
        same_rate,
        gap,
        delay,
        rerun,
    ) in per_row:
        parts: list[tuple[float, str]] = []
        if math.isnan(v):
            parts.append((100.0, "value is missing (NULL) where a number was expected"))
        elif math.isfinite(exp):
            slot = _slot_name(dow, hour, minute, daily, hol, me)
            where = f"for {slot}" if slot[0].isalpha() else f"at {slot}"
            if spec and abs(exp) > 1e-9:
                kind = "holidays" if hol else "month ends"
                parts.append(
                    (
                        az,
                        f"value {_fmt(v)} is outside the range tolerated on {kind} "
                        f"({_fmt(lo)} to {_fmt(hi)}; ordinary level {_fmt(exp)})",
                    )
                )
            elif abs(exp) > 1e-9:
                pct = (v - exp) / abs(exp) * 100
                word = "below" if pct < 0 else "above"
                parts.append((az, f"value {_fmt(v)} is {abs(pct):.0f}% {word} the usual {_fmt(exp)} {where}"))
            else:
                parts.append((az, f"value {_fmt(v)} where {_fmt(exp)} is usual {where}"))
        if key in together:
            parts.append((50.0, together[key]))
        if same > 0 and same_rate < 0.2:
            parts.append((40.0, f"same value as the previous load ({_fmt(v)}): the data may be stale"))
        if gap > 1.9:
            parts.append((20.0, f"{gap:.0f}x the usual interval since the previous load"))
        if delay > 4:
            parts.append((15.0, "the load ran much later/slower than usual"))
        if rerun > 0:
            parts.append((5.0, "this load is a rerun"))
        parts.sort(key=lambda p: -p[0])
        texts.append("; ".join(p[1] for p in parts[:3]) or "unusual combination of recent behaviour")
    return rows, texts


def _sparse_strings(n: int, rows: np.ndarray, texts: list[str]) -> pd.Series:
    """A string column of ``n`` rows, empty except ``texts`` at ``rows`` (ascending).

    Built directly as Arrow buffers (offsets from the lengths, one joined byte string): a million
    mostly empty Python strings would otherwise be scanned one by one on the way in and out.
    """
    data = [t.encode() for t in texts]
    lengths = np.zeros(n, dtype=np.int64)
    lengths[rows] = [len(b) for b in data]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))
    return pd.Series(pd.arrays.ArrowExtensionArray(arr)).astype(str)


def _coded_strings(codes: np.ndarray, names: tuple[str, ...]) -> pd.Series:
    """A string column from small integer codes into ``names`` (dictionary-decoded by Arrow)."""
    dictionary = pa.array(names, type=pa.large_string())
    arr = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), dictionary).cast(pa.large_string())
    return pd.Series(pd.arrays.ArrowExtensionArray(arr)).astype(str)


BLOCK_ROWS = 150_000


def _components(series: list[pd.Series], groups: list[pd.Series]) -> tuple[list[np.ndarray], int]:
    """Per frame, each row's set of rows that share a series or a group with it (transitively).

    A new point's features read earlier points of its own series and the same load's other metrics
    (its group), so such a set is the unit that can be scored apart from the others with the same
    result. ``series``/``groups`` are the string columns of each frame; label propagation over the
    distinct (series, group) pairs converges in two rounds when each series has one group.
    """
    s_codes, s_uniq = zip(*(pd.factorize(x) for x in series), strict=True)
    g_codes, g_uniq = zip(*(pd.factorize(x) for x in groups), strict=True)
    s_all = pd.Index(np.concatenate([np.asarray(u, dtype=object) for u in s_uniq])).unique()
    g_all = pd.Index(np.concatenate([np.asarray(u, dtype=object) for u in g_uniq])).unique()
    s_rows = [s_all.get_indexer(u)[c] for c, u in zip(s_codes, s_uniq, strict=True)]
    g_rows = [g_all.get_indexer(u)[c] for c, u in zip(g_codes, g_uniq, strict=True)]
    n_s, n_g = len(s_all), len(g_all)
    pairs = np.unique(np.concatenate([s * max(n_g, 1) + g for s, g in zip(s_rows, g_rows, strict=True)]))
    ps, pg = pairs // max(n_g, 1), pairs % max(n_g, 1)
    lab = np.arange(n_s)
    while True:
        g_lab = np.full(n_g, n_s)
        np.minimum.at(g_lab, pg, lab[ps])
        new = lab.copy()
        np.minimum.at(new, ps, g_lab[pg])
        if (new == lab).all():
            break
        lab = new
    return [lab[s] for s in s_rows], n_s


def _blocks(tail: pd.DataFrame, new_n: pd.DataFrame, block_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Row positions (history tail, new) of blocks of whole components (see ``_components``).

    Scoring a block at a time keeps every temporary array (features, windows, tree inputs) a
    block long: a million-row frame's temporaries are page-faulted in afresh on each allocation and
    dominated the scorer's time, a block's are reused from the allocator and stay in cache.
    Positions stay ascending inside a block, so each block's frame keeps the order it had.
    """
    if len(new_n) == 0:
        return []
    if len(new_n) + len(tail) <= block_rows:
        return [(np.arange(len(tail)), np.arange(len(new_n)))]
    (c_tail, c_new), n_comp = _components([tail["series"], new_n["series"]], [tail["group"], new_n["group"]])
    sizes = np.bincount(c_tail, minlength=n_comp) + np.bincount(c_new, minlength=n_comp)
    block_of = (np.cumsum(sizes) - 1) // block_rows
    n_blocks = int(block_of.max(initial=0)) + 1
    out = []
    for c in (c_tail, c_new):
        b = block_of[c]
        order = np.argsort(b, kind="stable")
        out.append(np.split(order, np.cumsum(np.bincount(b, minlength=n_blocks))[:-1]))
    return [(t, n) for t, n in zip(*out, strict=True) if len(n)]


def score_new(
    bundle: ModelBundle, history: pd.DataFrame, new: pd.DataFrame, *, block_rows: int = BLOCK_ROWS
) -> pd.DataFrame:
    """One output row per ``new`` row (same index): carried columns + score, label, range, reasons.

    History is cut to the tail the new points depend on, and features are computed for the new rows
    only (the history rows are context): the cost follows the number of new rows. Rows are scored
    in blocks of about ``block_rows`` (history tail + new) that never split a series or a load's
    group, which gives the same output as one pass over everything (see ``_blocks``).
    """
    new_n = normalise(new, copy=False)
    hist_n = normalise(history, copy=False) if history is not None and len(history) else new_n.iloc[:0]
    tail = _history_tail(hist_n, bundle)
    n = len(new_n)
    score = np.zeros(n)
    is_anom = np.zeros(n, dtype=bool)
    sev = np.zeros(n, dtype=np.int8)
    lo = np.zeros(n)
    hi = np.zeros(n)
    reason_rows: list[np.ndarray] = []
    texts: list[str] = []
    for t_pos, n_pos in _blocks(tail, new_n, block_rows):
        r = _score_block(bundle, _rows(tail, t_pos), _rows(new_n, n_pos))
        score[n_pos], is_anom[n_pos], sev[n_pos], lo[n_pos], hi[n_pos] = r[:5]
        reason_rows.append(n_pos[r[5]])
        texts += r[6]
    rows = np.concatenate(reason_rows) if reason_rows else np.zeros(0, dtype=np.int64)
    by_row = np.argsort(rows, kind="stable")
    carried = ["series", "group", "timestamp", "value", *[c for c in key_columns(new_n) if c in new_n.columns]]
    out = new_n[carried].reset_index(drop=True)
    out["score"] = score
    out["is_anomaly"] = is_anom
    out["severity"] = _coded_strings(sev, SEVERITIES).array
    out["expected_low"] = lo
    out["expected_high"] = hi
    out["reasons"] = _sparse_strings(n, rows[by_row], [texts[i] for i in by_row]).array
    out.index = new.index
    return out


def _rows(frame: pd.DataFrame, pos: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[pos]``, as a view when ``pos`` is a run of consecutive rows (frames sorted by series)."""
    if len(pos) and pos[-1] - pos[0] + 1 == len(pos):
        return frame.iloc[pos[0] : pos[-1] + 1]
    return frame.iloc[pos]


def _score_block(bundle: ModelBundle, tail: pd.DataFrame, new_n: pd.DataFrame) -> tuple:
    """Score, label, severity code, range and reasons (rows, texts) of one block's new rows."""
    cols = sorted(set(tail.columns) | set(new_n.columns))
    both = pd.concat(
        [tail.reindex(columns=cols).reset_index(drop=True), new_n.reindex(columns=cols).reset_index(drop=True)],
        ignore_index=True,
    )
    for c in ("series", "group"):
        if both[c].dtype != new_n[c].dtype or both[c].hasnans:
            both[c] = both[c].astype(str)
    tail_labels = tail["label"].fillna(0).to_numpy(dtype=np.float64) if "label" in tail.columns else np.zeros(len(tail))
    labels = np.r_[tail_labels, np.zeros(len(new_n))]
    comp = compute(
        both,
        bundle.cfg,
        labels=labels,
        targets=np.arange(len(both)) >= len(tail),
        column_order=bundle.feature_names,
    )
    feats = comp.features.reset_index(drop=True)
    aux = comp.aux.reset_index(drop=True)
    score = np.clip(bundle.predict_score(feats), 0.0, 1.0)
    # the same decision the backtest makes: per-series thresholds and one alert per incident need the rows
    frame = new_n[["series", "timestamp"]].reset_index(drop=True)
    is_anom = bundle.decide(score, feats, frame=frame)

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
    nn = aux["series_min"].to_numpy(dtype=np.float64) >= 0
    lo = np.where(nn, np.maximum(lo, 0.0), lo)

    z = np.abs(feats["seas_z"].to_numpy(dtype=np.float64))
    rel = np.abs(feats["seas_rel"].to_numpy(dtype=np.float64))
    sev = np.where(
        (score >= 0.9) & ((z >= 2 * cfg.robust_threshold) | (rel >= 0.5)),
        3,
        np.where((score >= 0.7) | (rel >= 0.2), 2, 1),
    )
    sev = np.where(is_anom, sev, 0)
    frame["value"] = new_n["value"].to_numpy()
    frame["expected_low"] = lo
    frame["expected_high"] = hi
    rows, texts = _reasons(frame, feats, aux, is_anom)
    return score, is_anom, sev, lo, hi, rows, texts
