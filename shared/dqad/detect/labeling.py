"""Truth labels for the history: human feedback > robust seasonal rule > cross-metric consensus.

The labeler works with hindsight: it labels history, it does not score new data, so each point is
judged against a *centred* window of its seasonal slot (the same weekday a few weeks before and
after, or the same time of day on neighbouring days). A centred median follows growth and trend
without lag. Labelled anomalies are then blanked out and the baselines recomputed (``iterations``),
so that an incident does not widen the very scale it is judged against.

Candidate calendar days (holidays, month and quarter ends of every convention) are left out of the
ordinary baselines; where a series' neighbouring occurrences of such a day show an effect
(dqad.detect.calendar_effects, centred), the day is judged against the baseline moved by it, so a
learnt month-end surge is not labelled while an empty load on a month end still is. Where the
series shows no effect, the day is an ordinary day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dqad.detect.calendar_effects import HOLIDAY, apply_effects, calendar_categories, learn_effects, log_ratio
from dqad.detect.config import LabelerConfig
from dqad.detect.vectorised import (
    RHYTHM_MIN_HISTORY,
    TAIL_MIN_POINTS,
    TAIL_QUANTILES,
    Padded,
    intermittent_at,
    normalise,
    prefers_rhythm,
    rhythm_scale,
    rhythm_slots,
    robust_scale,
    slot_codes,
    step_seconds,
)

SOURCES = ("human", "seasonal_rule", "consensus", "none")


def _centred_slot_median(
    sc: np.ndarray, slot: np.ndarray, ts: np.ndarray, vals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Median and count of the ``k`` nearest same-slot values around each point (centred)."""
    order = np.lexsort((ts, slot, sc))
    key = sc[order] * 100_000 + slot[order]
    win = k + 1
    pad = Padded(key, win + 1)
    med = pad.rolling(vals[order], win, "median", min_periods=1, center=True)
    cnt = pad.rolling(vals[order], win, "count", min_periods=0, center=True)
    out_m = np.empty_like(med)
    out_c = np.empty_like(cnt)
    out_m[order] = med
    out_c[order] = np.nan_to_num(cnt)
    return out_m, out_c


def _with_effects(
    sc: np.ndarray,
    cats: np.ndarray,
    v: np.ndarray,
    hum: np.ndarray,
    med: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
    rows: np.ndarray,
    cfg: LabelerConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Expected value, scale, "cannot tell yet" and "an effect applies" of the calendar days.

    A calendar day whose category has too few occurrences to tell an effect from an incident is
    not judged (like a slot without ``min_history``): labelling it would blank it out of the very
    effect estimate that later occurrences need. Nor is a declared holiday without an effect. Only
    human-labelled anomalies are kept out of the effect estimates: the rule's own labels of an
    earlier round must not erase the surge that would explain them.
    """
    ratios = log_ratio(np.where(hum == 1, np.nan, v), med)
    noise = scale[rows] / np.maximum(np.abs(expected[rows]), 1e-9)
    rules = cfg.effect_rules()
    eff = learn_effects(sc, cats, ratios, rows, noise, rules, centred=True)
    expected, scale = expected.copy(), scale.copy()
    expected[rows], scale[rows] = apply_effects(
        expected[rows], scale[rows], eff, cfg.rel_scale_floor, v[rows], rules
    )
    undetermined = np.zeros(len(v), dtype=bool)
    # + the point itself; also where another of the day's categories has an effect: a month-end
    # effect does not tell what the first quarter end does (it may triple the table)
    undetermined[rows] = eff.evidence < cfg.effect_min_occurrences + 1
    # a declared holiday the series shows no effect of yet is not the rule's to judge: a closed day
    # and a partial load look alike, and labelling the first closures would blank out of the
    # baselines the very occurrences the detector learns the holiday effect from
    undetermined[rows] |= cats[rows, HOLIDAY] & ~eff.applies
    applies = np.zeros(len(v), dtype=bool)
    applies[rows] = eff.applies
    return expected, scale, undetermined, applies


def feedback_to_points(feedback: pd.DataFrame | None) -> pd.DataFrame:
    """Normalise human feedback to (series, timestamp, human) with human in {1, 0}."""
    if feedback is None or len(feedback) == 0:
        return pd.DataFrame(
            {
                "series": pd.Series(dtype=str),
                "timestamp": pd.Series(dtype="datetime64[ns]"),
                "human": pd.Series(dtype="int8"),
            }
        )
    fb = feedback.copy()
    missing = [c for c in ("series", "timestamp", "label") if c not in fb.columns]
    if missing:
        raise ValueError(f"feedback is missing column(s): {', '.join(missing)}")
    lab = fb["label"].astype(str).str.strip().str.lower()
    bad = sorted(set(lab) - {"anomaly", "normal", "1", "0", "true", "false"})
    if bad:
        raise ValueError(f"feedback.label must be 'anomaly' or 'normal', got {bad[:5]}")
    fb["human"] = lab.isin(["anomaly", "1", "true"]).astype("int8")
    fb["series"] = fb["series"].astype(str)
    fb["timestamp"] = pd.to_datetime(fb["timestamp"]).astype("datetime64[ns]")
    # the latest feedback on a point wins (feedback files are appended over time)
    return fb[["series", "timestamp", "human"]].drop_duplicates(["series", "timestamp"], keep="last")


def label_history(history: pd.DataFrame, feedback: pd.DataFrame | None, cfg: LabelerConfig) -> pd.DataFrame:
    """Return ``history`` with ``label`` (int8 0/1) and ``label_source`` (see module docstring)."""
    df = normalise(history)
    n = len(df)
    if n == 0:
        out = history.copy()
        out["label"] = pd.Series(dtype="int8")
        out["label_source"] = pd.Series(dtype=str)
        return out

    fb = feedback_to_points(feedback)
    human = (
        df[["series", "timestamp"]]
        .merge(fb, on=["series", "timestamp"], how="left")["human"]
        .to_numpy(dtype=np.float64)
    )

    series_codes, _ = pd.factorize(df["series"], sort=True)
    ts_ns = df["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    order = np.lexsort((ts_ns, series_codes))
    sc = series_codes[order]
    ts = ts_ns[order]
    t_index = pd.DatetimeIndex(df["timestamp"].to_numpy()[order])
    v = df["value"].to_numpy(dtype=np.float64)[order]
    hum = human[order]

    pad = Padded(sc, max(cfg.scale_window, 16) + 2)
    step = step_seconds(ts, pad)
    daily = ~(step < 20 * 3600)
    cats = calendar_categories(t_index, cfg.holidays) & daily[:, None]  # daily series only
    special = cats[:, :-1].any(axis=1)
    slot_base = slot_codes(t_index, step, cfg.slots)
    rhythm = rhythm_slots(t_index, daily, slot_base)
    rows = np.flatnonzero(special)

    rule = np.zeros(n, dtype=bool)
    everything = np.arange(n)
    # the values with the rule's own labels left in (the rhythm and the tails are read from them)
    with_rule_labels = v.copy()
    with_rule_labels[(hum == 1) | special] = np.nan
    # the second rhythm's occurrences keep the month and quarter ends (a payroll Friday that is
    # also the last business day is still a payroll Friday); holidays stay out of every baseline
    rhythm_values = np.where((hum == 1) | cats[:, HOLIDAY], np.nan, v)
    z = np.zeros(n)
    rel = np.zeros(n)
    for _ in range(max(cfg.iterations, 1)):
        bv = v.copy()
        bv[(hum == 1) | rule | special] = np.nan
        med, cnt = _centred_slot_median(sc, slot_base, ts, bv, cfg.seasonal_k)
        resid_b = bv - med
        w = cfg.scale_window
        r_med = np.nan_to_num(pad.rolling(resid_b, w, "median", min_periods=1, center=True))
        q1 = pad.rolling(resid_b, w, "quantile", min_periods=3, center=True, q=0.25)
        q3 = pad.rolling(resid_b, w, "quantile", min_periods=3, center=True, q=0.75)
        need = min(TAIL_MIN_POINTS, w)
        # the 5-95 % range is robust to the few incidents a window holds without blanking them;
        # blanking the rule's own labels there would let a series that is mostly zero (receipts
        # on a few days a week) label its every non-zero day, blank it, and shrink its scale to 0
        resid_t = with_rule_labels - med
        tails = tuple(
            np.where(daily, pad.rolling(resid_t, w, "quantile", min_periods=need, center=True, q=q), np.nan)
            for q in TAIL_QUANTILES
        )
        expected = med + r_med
        scale = robust_scale(q1, q3, med, cfg.rel_scale_floor, tails=(tails[0], tails[1]))
        undetermined = np.zeros(n, dtype=bool)
        effect = np.zeros(n, dtype=bool)
        if len(rows):
            expected, scale, undetermined, effect = _with_effects(sc, cats, v, hum, med, expected, scale, rows, cfg)
        # a series that is zero on most loads: its bursts are judged against the earlier bursts
        # (the rule's labels left in: labelling the first bursts must not make the next unusual)
        expected, scale, intermittent = intermittent_at(
            pad, with_rule_labels, everything, v, expected, scale, w, cfg.rel_scale_floor, daily
        )
        # the second rhythm the detector also accepts (fortnightly for daily data, weekly for
        # sub-daily: dqad.detect.vectorised.rhythm_slots), in a series that follows it; a calendar
        # effect, where one applies, is the better description of its day. The rule's own labels
        # stay in: a payroll Friday the first round labelled must not erase the rhythm explaining it
        med2, cnt2 = _centred_slot_median(sc, rhythm, ts, rhythm_values, cfg.seasonal_k)
        expected2 = np.where(cnt2 >= RHYTHM_MIN_HISTORY + 1, med2 + r_med, np.nan)
        follows = prefers_rhythm(sc, slot_base, with_rule_labels - expected, with_rule_labels - expected2, centred=True)
        by_rhythm = follows & ~effect & ~intermittent & np.isfinite(expected2)
        scale = np.where(by_rhythm, rhythm_scale(scale, expected, expected2, daily), scale)
        expected = np.where(by_rhythm, expected2, expected)
        z = (v - expected) / scale
        rel = (v - expected) / np.maximum(np.abs(expected), 1e-9)
        enough = (cnt >= cfg.min_history) & np.isfinite(z) & ~undetermined
        new_rule = enough & (np.abs(z) > cfg.mad_threshold) & (np.abs(rel) >= cfg.min_relative_change)
        if np.array_equal(new_rule, rule):
            break
        rule = new_rule

    # consensus across the metrics of one load (same group, same timestamp): metrics deviating
    # together, or all repeating their previous load's numbers exactly (a stale snapshot)
    zc = np.where(np.isfinite(z), z, 0.0)
    dev = (np.abs(zc) >= cfg.consensus_threshold) & (np.abs(rel) >= cfg.min_relative_change) & ~undetermined
    prev = pad.shift(v, 1)
    same = (v == prev) & np.isfinite(prev)
    same_rate = pad.rolling(same.astype(np.float64), cfg.scale_window, "mean", min_periods=7, center=True)
    stale = same & (np.nan_to_num(same_rate, nan=1.0) < 0.1) & daily
    groups = df["group"].to_numpy()[order]
    counts = (
        pd.DataFrame({"dev": dev.astype(np.int64), "stale": stale.astype(np.int64), "one": 1})
        .groupby([groups, ts], sort=False)
        .transform("sum")
    )
    consensus = (dev & (counts["dev"].to_numpy() >= cfg.consensus_min_metrics)) | (
        stale & (counts["stale"].to_numpy() >= 2) & (counts["stale"].to_numpy() * 2 >= counts["one"].to_numpy())
    )

    label = np.zeros(n, dtype=np.int8)
    source = np.full(n, "none", dtype=object)
    cons_only = consensus & ~rule
    label[cons_only] = 1
    source[cons_only] = "consensus"
    label[rule] = 1
    source[rule] = "seasonal_rule"
    is_h = ~np.isnan(hum)
    label[is_h] = hum[is_h].astype(np.int8)
    source[is_h] = "human"

    out = history.copy()
    lab_col = np.empty(n, dtype=np.int8)
    src_col = np.empty(n, dtype=object)
    lab_col[order] = label
    src_col[order] = source
    out["label"] = lab_col
    out["label_source"] = pd.array(src_col, dtype=str) if n else src_col
    return out
