"""Truth labels for the history: human feedback > robust seasonal rule > cross-metric consensus
(a complete labels file's "normal" excepted: see ``_labels``).

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

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqad.detect.alarm import explicit_feedback
from dqad.detect.calendar_effects import HOLIDAY, apply_effects, calendar_categories, learn_effects, log_ratio
from dqad.detect.config import LabelerConfig
from dqad.detect.vectorised import (
    DAILY_STEP_S,
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


@dataclass(frozen=True)
class _Points:
    """The history in (series, time) order, the order every rolling window and slot reads."""

    #: row of the normalised history each sorted point comes from (to put the labels back)
    order: np.ndarray
    sc: np.ndarray
    #: timestamps as int64 nanoseconds
    ts: np.ndarray
    t_index: pd.DatetimeIndex
    v: np.ndarray
    #: the human label (1 anomaly, 0 normal), NaN where no human said
    hum: np.ndarray
    groups: np.ndarray
    pad: Padded


@dataclass(frozen=True)
class _Slots:
    """What each point is compared with: its seasonal slot, its second rhythm, its calendar days."""

    #: the point's series is loaded daily (or less often): calendar days concern daily series only
    daily: np.ndarray
    cats: np.ndarray
    #: on a candidate calendar day, which the ordinary baselines leave out
    special: np.ndarray
    slot_base: np.ndarray
    rhythm: np.ndarray
    #: positions of the candidate calendar days, where effects are learnt and applied
    rows: np.ndarray


@dataclass(frozen=True)
class _LeftIn:
    """Values with the rule's own labels left in, the same in every round.

    Blanking its labels there would let the rule confirm itself: the points it labels are often
    the very ones that show a rhythm, a series' tails or an intermittent series' bursts (see the
    comments where each is read).
    """

    #: human anomalies and candidate calendar days blanked
    values: np.ndarray
    #: the second rhythm's occurrences: human anomalies and holidays blanked
    rhythm: np.ndarray


@dataclass(frozen=True)
class _Baseline:
    """The ordinary (centred, same-slot) baseline of every point and its robust scale."""

    #: same-slot median, which calendar-effect ratios are taken against
    med: np.ndarray
    #: same-slot values the median had (the rule needs ``min_history`` of them)
    cnt: np.ndarray
    #: centred median of the residuals over ``scale_window`` points, added to every same-slot median
    r_med: np.ndarray
    expected: np.ndarray
    scale: np.ndarray


@dataclass(frozen=True)
class _CalendarJudgement:
    """The baseline moved by the calendar effects that apply (see :func:`_with_effects`)."""

    expected: np.ndarray
    scale: np.ndarray
    #: a calendar day the rule cannot judge yet, and so neither may the consensus
    undetermined: np.ndarray
    #: a calendar effect applies: it describes the day better than the second rhythm does
    applies: np.ndarray


@dataclass(frozen=True)
class _Round:
    """One round of the seasonal rule: its labels and the deviations the consensus reads."""

    rule: np.ndarray
    z: np.ndarray
    rel: np.ndarray
    #: not the rule's to judge yet (see :func:`_with_effects`), nor the consensus'
    undetermined: np.ndarray


def _with_effects(pts: _Points, slots: _Slots, base: _Baseline, cfg: LabelerConfig) -> _CalendarJudgement:
    """Expected value, scale, "cannot tell yet" and "an effect applies" of the calendar days.

    A calendar day whose category has too few occurrences to tell an effect from an incident is
    not judged (like a slot without ``min_history``): labelling it would blank it out of the very
    effect estimate that later occurrences need. Nor is a declared holiday without an effect. Only
    human-labelled anomalies are kept out of the effect estimates: the rule's own labels of an
    earlier round must not erase the surge that would explain them.
    """
    n, rows, v, cats = len(pts.v), slots.rows, pts.v, slots.cats
    if not len(rows):
        return _CalendarJudgement(base.expected, base.scale, np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
    ratios = log_ratio(np.where(pts.hum == 1, np.nan, v), base.med)
    noise = base.scale[rows] / np.maximum(np.abs(base.expected[rows]), 1e-9)
    rules = cfg.effect_rules()
    eff = learn_effects(pts.sc, cats, ratios, rows, noise, rules, centred=True)
    expected, scale = base.expected.copy(), base.scale.copy()
    expected[rows], scale[rows] = apply_effects(expected[rows], scale[rows], eff, cfg.rel_scale_floor, v[rows], rules)
    undetermined = np.zeros(n, dtype=bool)
    # + the point itself; also where another of the day's categories has an effect: a month-end
    # effect does not tell what the first quarter end does (it may triple the table)
    undetermined[rows] = eff.evidence < cfg.effect_min_occurrences + 1
    # a declared holiday the series shows no effect of yet is not the rule's to judge: a closed day
    # and a partial load look alike, and labelling the first closures would blank out of the
    # baselines the very occurrences the detector learns the holiday effect from
    undetermined[rows] |= cats[rows, HOLIDAY] & ~eff.applies
    applies = np.zeros(n, dtype=bool)
    applies[rows] = eff.applies
    return _CalendarJudgement(expected=expected, scale=scale, undetermined=undetermined, applies=applies)


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
    if len(df) == 0:
        out = history.copy()
        out["label"] = pd.Series(dtype="int8")
        out["label_source"] = pd.Series(dtype=str)
        return out
    pts = _sorted_points(df, feedback, cfg)
    slots = _slots(pts, cfg)
    judged = _seasonal_rule(pts, slots, cfg)
    consensus = _consensus(pts, slots, judged, cfg)
    labelled = ~np.isnan(pts.hum)
    # ordinary days of a complete labels file (see ``_labels``)
    keeps_rule = labelled & ~explicit_feedback(pts.sc, labelled, pts.ts) & ~slots.special
    label, source = _labels(pts.hum, judged.rule, consensus, keeps_rule)
    return _in_history_order(history, pts.order, label, source)


def _sorted_points(df: pd.DataFrame, feedback: pd.DataFrame | None, cfg: LabelerConfig) -> _Points:
    """The normalised history ``df`` with its human labels, sorted by (series, time)."""
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
    return _Points(
        order=order,
        sc=sc,
        ts=ts_ns[order],
        t_index=pd.DatetimeIndex(df["timestamp"].to_numpy()[order]),
        v=df["value"].to_numpy(dtype=np.float64)[order],
        hum=human[order],
        groups=df["group"].to_numpy()[order],
        pad=Padded(sc, max(cfg.scale_window, 16) + 2),
    )


def _slots(pts: _Points, cfg: LabelerConfig) -> _Slots:
    """Each point's slots and calendar days, from its series' cadence."""
    step = step_seconds(pts.ts, pts.pad)
    daily = ~(step < DAILY_STEP_S)
    cats = calendar_categories(pts.t_index, cfg.holidays) & daily[:, None]  # daily series only
    special = np.asarray(cats[:, :-1].any(axis=1))
    slot_base = slot_codes(pts.t_index, step, cfg.slots)
    return _Slots(
        daily=daily,
        cats=cats,
        special=special,
        slot_base=slot_base,
        rhythm=rhythm_slots(pts.t_index, daily, slot_base),
        rows=np.flatnonzero(special),
    )


def _seasonal_rule(pts: _Points, slots: _Slots, cfg: LabelerConfig) -> _Round:
    """The rule's last round: each round's labels are blanked out of the next round's baselines.

    So an incident does not widen the very scale it is judged against; the rounds stop once the
    labels no longer change (or after ``cfg.iterations``).
    """
    # the values with the rule's own labels left in (the rhythm and the tails are read from them)
    with_rule_labels = pts.v.copy()
    with_rule_labels[(pts.hum == 1) | slots.special] = np.nan
    # the second rhythm's occurrences keep the month and quarter ends (a payroll Friday that is
    # also the last business day is still a payroll Friday); holidays stay out of every baseline
    rhythm_values = np.where((pts.hum == 1) | slots.cats[:, HOLIDAY], np.nan, pts.v)
    left_in = _LeftIn(values=with_rule_labels, rhythm=rhythm_values)
    rule = np.zeros(len(pts.v), dtype=bool)
    for _ in range(max(cfg.iterations, 1)):
        judged = _judge(pts, slots, left_in, rule, cfg)
        if np.array_equal(judged.rule, rule):
            break
        rule = judged.rule
    return judged


def _judge(pts: _Points, slots: _Slots, left_in: _LeftIn, rule: np.ndarray, cfg: LabelerConfig) -> _Round:
    """One round of the rule, with the previous round's labels (``rule``) out of the baselines."""
    n = len(pts.v)
    base = _ordinary_baseline(pts, slots, left_in, rule, cfg)
    calendar = _with_effects(pts, slots, base, cfg)
    # a series that is zero on most loads: its bursts are judged against the earlier bursts
    # (the rule's labels left in: labelling the first bursts must not make the next unusual)
    expected, scale, intermittent = intermittent_at(
        pts.pad,
        left_in.values,
        np.arange(n),
        pts.v,
        calendar.expected,
        calendar.scale,
        cfg.scale_window,
        cfg.rel_scale_floor,
        slots.daily,
    )
    free = ~calendar.applies & ~intermittent
    expected, scale = _by_rhythm(pts, slots, left_in, base.r_med, expected, scale, free, cfg)
    z = (pts.v - expected) / scale
    rel = (pts.v - expected) / np.maximum(np.abs(expected), 1e-9)
    enough = (base.cnt >= cfg.min_history) & np.isfinite(z) & ~calendar.undetermined
    labelled = enough & (np.abs(z) > cfg.mad_threshold) & (np.abs(rel) >= cfg.min_relative_change)
    return _Round(rule=labelled, z=z, rel=rel, undetermined=calendar.undetermined)


def _ordinary_baseline(
    pts: _Points, slots: _Slots, left_in: _LeftIn, rule: np.ndarray, cfg: LabelerConfig
) -> _Baseline:
    """Every point's centred same-slot baseline, with every label and calendar day blanked out of it."""
    bv = pts.v.copy()
    bv[(pts.hum == 1) | rule | slots.special] = np.nan
    med, cnt = _centred_slot_median(pts.sc, slots.slot_base, pts.ts, bv, cfg.seasonal_k)
    resid_b = bv - med
    w = cfg.scale_window
    pad = pts.pad
    r_med = np.nan_to_num(pad.rolling(resid_b, w, "median", min_periods=1, center=True))
    q1 = pad.rolling(resid_b, w, "quantile", min_periods=3, center=True, q=0.25)
    q3 = pad.rolling(resid_b, w, "quantile", min_periods=3, center=True, q=0.75)
    need = min(TAIL_MIN_POINTS, w)
    # the 5-95 % range is robust to the few incidents a window holds without blanking them;
    # blanking the rule's own labels there would let a series that is mostly zero (receipts
    # on a few days a week) label its every non-zero day, blank it, and shrink its scale to 0
    resid_t = left_in.values - med
    tails = tuple(
        np.where(slots.daily, pad.rolling(resid_t, w, "quantile", min_periods=need, center=True, q=q), np.nan)
        for q in TAIL_QUANTILES
    )
    scale = robust_scale(q1, q3, med, cfg.rel_scale_floor, tails=(tails[0], tails[1]))
    return _Baseline(med=med, cnt=cnt, r_med=r_med, expected=med + r_med, scale=scale)


def _by_rhythm(
    pts: _Points,
    slots: _Slots,
    left_in: _LeftIn,
    r_med: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
    free: np.ndarray,
    cfg: LabelerConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected value and scale, from the second rhythm where the series follows it.

    The second rhythm is the one the detector also accepts (fortnightly for daily data, weekly for
    sub-daily: dqad.detect.vectorised.rhythm_slots). Only ``free`` points take it (no calendar
    effect, not intermittent): a calendar effect, where one applies, is the better description of
    its day. The rule's own labels stay in: a payroll Friday the first round labelled must not
    erase the rhythm explaining it.
    """
    med2, cnt2 = _centred_slot_median(pts.sc, slots.rhythm, pts.ts, left_in.rhythm, cfg.seasonal_k)
    expected2 = np.where(cnt2 >= RHYTHM_MIN_HISTORY + 1, med2 + r_med, np.nan)
    ordinary, rhythmic = left_in.values - expected, left_in.values - expected2
    follows = prefers_rhythm(pts.sc, slots.slot_base, ordinary, rhythmic, centred=True)
    by_rhythm = follows & free & np.isfinite(expected2)
    scale = np.where(by_rhythm, rhythm_scale(scale, expected, expected2, slots.daily), scale)
    return np.where(by_rhythm, expected2, expected), scale


def _consensus(pts: _Points, slots: _Slots, judged: _Round, cfg: LabelerConfig) -> np.ndarray:
    """Consensus across the metrics of one load (same group, same timestamp).

    Metrics deviating together, or all repeating their previous load's numbers exactly (a stale
    snapshot), are an incident of the load even where no one metric is far enough off on its own.
    """
    zc = np.where(np.isfinite(judged.z), judged.z, 0.0)
    far = (np.abs(zc) >= cfg.consensus_threshold) & (np.abs(judged.rel) >= cfg.min_relative_change)
    dev = far & ~judged.undetermined
    prev = pts.pad.shift(pts.v, 1)
    same = (pts.v == prev) & np.isfinite(prev)
    same_rate = pts.pad.rolling(same.astype(np.float64), cfg.scale_window, "mean", min_periods=7, center=True)
    stale = same & (np.nan_to_num(same_rate, nan=1.0) < 0.1) & slots.daily
    counts = (
        pd.DataFrame({"dev": dev.astype(np.int64), "stale": stale.astype(np.int64), "one": 1})
        .groupby([pts.groups, pts.ts], sort=False)
        .transform("sum")
    )
    n_stale = counts["stale"].to_numpy()
    return (dev & (counts["dev"].to_numpy() >= cfg.consensus_min_metrics)) | (
        stale & (n_stale >= 2) & (n_stale * 2 >= counts["one"].to_numpy())
    )


def _labels(
    hum: np.ndarray, rule: np.ndarray, consensus: np.ndarray, keeps_rule: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Label and source of each point: human feedback > seasonal rule > consensus.

    Except for a human "normal" where ``keeps_rule``: an ordinary day of a complete labels file
    (dqad.detect.alarm.explicit_feedback) that the rule or the consensus labelled. Such a file's
    "normal" says "no incident here", not "this value is expected", so the outlier stays out of the
    baselines as it would without the file: put back, it widened the noise of the series' later
    points, lowered its history's scores and so its alarm threshold, and the labels added false
    alarms. On a candidate calendar day the "normal" still wins: the surge the rule took for an
    incident (a first business day before its effect was learnt) is the effect's own evidence.
    Explicit feedback ("this load is fine") overrides the rule everywhere.
    """
    n = len(hum)
    label = np.zeros(n, dtype=np.int8)
    source = np.full(n, "none", dtype=object)
    cons_only = consensus & ~rule
    label[cons_only] = 1
    source[cons_only] = "consensus"
    label[rule] = 1
    source[rule] = "seasonal_rule"
    is_h = ~np.isnan(hum) & ~(keeps_rule & (hum == 0) & (rule | consensus))
    label[is_h] = hum[is_h].astype(np.int8)
    source[is_h] = "human"
    return label, source


def _in_history_order(history: pd.DataFrame, order: np.ndarray, label: np.ndarray, source: np.ndarray) -> pd.DataFrame:
    """``history`` with the sorted points' ``label`` and ``source`` put back on their rows."""
    n = len(order)
    lab_col = np.empty(n, dtype=np.int8)
    src_col = np.empty(n, dtype=object)
    lab_col[order] = label
    src_col[order] = source
    out = history.copy()
    out["label"] = lab_col
    out["label_source"] = pd.array(src_col, dtype=str)
    return out
