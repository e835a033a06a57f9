"""Alarm rules of the product: when a scored point becomes an alert.

Why these rules exist: one global threshold on a per-point score cannot serve a daily warehouse
metric and a noisy 5-minute feed at once. A 5-minute series offers 288 chances a day for noise to
cross it, and on real feeds (NAB) a single threshold raised ~2,800 alarms in ~1,700 separate runs.
What a user wants is a bounded number of alerts per series and per day, each a new incident.

1. **Per-series threshold calibrated on the history** (``calibrate_series``, at training time): the
   lowest threshold (never below the model's global one) at which the series' own history would have
   raised at most ``alarm_budget_per_day`` incidents per day (one a week by default; a budget, not a
   floor of one: a mature history shorter than a week may not have alerted at all, so the threshold
   goes above its highest score; allowing one incident in two days of history is a rate of one
   every two days, and NAB's spiky 5-minute feeds then alerted on every routine spike), then raised by
   ``calibration_margin`` on the odds scale, because the scored future is longer than the history
   and its noise reaches further. The budget threshold is searched from the margin *below* the
   global threshold, so the result rises continuously as a history nears its budget: searched from
   the global threshold, one history point at 0.501 instead of 0.497 lifted a series' threshold
   by the whole margin, and labels that moved one score by 0.004 added false alarms. Only *mature*
   history points count (full seasonal baseline and robust scale; warm-up points have meaningless
   z-scores). Points a human labelled as anomalies count as the incidents they are, as unlabelled
   ones do (left out, they freed their share of the budget for ordinary points, and labels added
   false alarms). When the history holds human-labelled anomalies
   whose scores stand above every other point of the series, the threshold is lowered to the middle
   (odds scale) of the gap between them and the rest: the human showed what an incident of this
   series looks like, and where the normal points end.
2. **Sub-daily series without a calibration yet** need ``uncalibrated_margin`` times the global
   threshold's odds: more points per day, more chances for noise. When the scored rows' series are
   known (``frame``) and ``subdaily_warmup`` is on (default), such a series is in its learning
   period and does not alert at all until it is calibrated.
3. **What a human confirmed as normal does not alarm again** (``calibrate_series``): a point of
   the series that a human labelled normal and that scored at or above the series' threshold
   raises the threshold, for deviations in *its direction* only, to just above its score: its
   twin (a planned migration that lifts the null share the same way next week) is not flagged,
   while a drop of the same series still is. Only mature points count, and only explicit
   feedback: labels that cover most of the stretch they span are a complete labels file
   (``explicit_feedback``), whose "normal" means "no incident here" rather than "expected".
4. **Incidents, not points** (``suppress_continuing``): an alarm less than ``incident_gap_hours``
   after the previous alert of the same series belongs to that incident and is not a new alert (an
   alerting system does not re-alert inside an ongoing incident; it re-alerts once the gap has passed,
   as the notifier's ``realert_after_hours`` does across loads). The budget of rule 1 counts alerts
   the same way. Daily or slower loads (a median step of at least 20 hours) are never merged:
   each bad daily load is its own alert, even when it ran a little earlier than the night before.

The backtest applies exactly this decision (``ModelBundle.decide``) to the scores the scorer
produced, so the measured precision is the precision of the alerts a user would receive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dqad.detect.config import DetectorConfig
from dqad.detect.vectorised import DAILY_STEP_S


def odds_scale(p: float | np.ndarray, factor: float | np.ndarray) -> float | np.ndarray:
    """Multiply a probability-like score's odds by ``factor`` (stays in (0, 1), monotone)."""
    p = np.clip(p, 1e-9, 1 - 1e-9)
    o = p / (1 - p) * factor
    return o / (1 + o)


def alert_mask(t_sorted_s: np.ndarray, gap_s: float) -> np.ndarray:
    """Which alarms (times in seconds, sorted, one series) are alerts: none in the previous gap.

    The gap is measured to the previous *alert*, so a series that keeps alarming re-alerts once
    every ``gap_s`` (as the notifier's ``realert_after_hours`` does), and a noisy series that is
    "always in an incident" still counts as many alerts.
    """
    keep = np.zeros(len(t_sorted_s), dtype=bool)
    last = -np.inf
    for i, t in enumerate(t_sorted_s.tolist()):
        if t - last >= gap_s:
            keep[i] = True
            last = t
    return keep


def count_incidents(t_sorted_s: np.ndarray, gap_s: float) -> int:
    """Alerts among alarm times (seconds, sorted) under the re-alert gap (see ``alert_mask``)."""
    return int(alert_mask(t_sorted_s, gap_s).sum())


def budget_threshold(score: np.ndarray, t_s: np.ndarray, base: float, allowed: float, gap_s: float) -> float:
    """Lowest threshold >= ``base`` at which the points would raise at most ``allowed`` incidents."""
    order = np.argsort(t_s, kind="stable")
    score, t_s = score[order], t_s[order]
    cand = np.unique(score[score >= base])[::-1]  # descending; incidents grow as the threshold drops
    if len(cand) == 0:
        return base

    def incidents(th: float) -> int:
        return count_incidents(t_s[score >= th], gap_s)

    if incidents(cand[0]) > allowed:
        # even the highest score alone is too many (cannot happen with allowed >= 1): above it
        return float(np.nextafter(cand[0], 1.0))
    lo, hi = 0, len(cand) - 1
    while lo < hi:  # largest index (lowest threshold) still within the budget
        mid = (lo + hi + 1) // 2
        if incidents(cand[mid]) <= allowed:
            lo = mid
        else:
            hi = mid - 1
    if lo == len(cand) - 1:
        return base  # even the global threshold stays within the budget
    return float(cand[lo])


#: how far above a confirmed-normal point's score its series' threshold goes (odds scale)
CONFIRMED_NORMAL_MARGIN = 1.1
#: rule 3 reads a series' human labels as a complete labels file, not explicit feedback, when they
#: cover at least this share of the loads between the first and the last of them...
LABELS_FILE_SHARE = 0.5
#: ...and are at least this many: more consecutive verdicts than anyone gives alert by alert (two
#: weeks of daily loads), so that one or two confirmed alerts stay explicit feedback
LABELS_FILE_MIN_POINTS = 14


def explicit_feedback(series: np.ndarray, human: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row: whether its series' human labels are explicit feedback (rule 3), not a labels file.

    A labels file marks spans (every load of its windows and the stretch around them), feedback
    marks the few loads someone looked at. The share is taken over the labels' own span, not over
    the whole history: a file that labelled the first weeks of a series stays a labels file as the
    history grows past it (as a share of the whole history it fell below one half after a few
    retrains, and its "normal" then raised the thresholds of every series it covered).
    ``t`` orders the rows in time (any monotone number).
    """
    n = len(series)
    if n == 0 or not human.any():
        return np.ones(n, dtype=bool)
    order = np.lexsort((t, series))
    s_sorted, h_sorted = series[order], human[order].astype(np.int64)
    frame = pd.DataFrame({"s": s_sorted, "h": h_sorted})
    rank = frame.groupby("s", sort=False).cumcount().to_numpy()
    labelled_rank = pd.Series(np.where(h_sorted > 0, rank, np.nan))
    by_series = labelled_rank.groupby(s_sorted, sort=False)
    first = by_series.transform("min").to_numpy()
    last = by_series.transform("max").to_numpy()
    count = frame.groupby("s", sort=False)["h"].transform("sum").to_numpy()
    span = np.nan_to_num(last - first + 1, nan=1.0)
    labels_file = (count >= LABELS_FILE_MIN_POINTS) & (count >= LABELS_FILE_SHARE * span)
    out = np.empty(n, dtype=bool)
    out[order] = ~labels_file
    return out


@dataclass
class SeriesCalibration:
    """Per-series alarm state learned at training time (stored in the bundle)."""

    thresholds: dict[str, float]
    step_s: dict[str, float]
    #: rule 3: per series, the threshold for upward and for downward deviations that points a
    #: human confirmed as normal set (absent: none); bundles pickled before it load with None
    confirmed_up: dict[str, float] | None = None
    confirmed_down: dict[str, float] | None = None


def calibrate_series(
    score: np.ndarray,
    frame: pd.DataFrame,
    features: pd.DataFrame,
    base: float,
    cfg: DetectorConfig,
) -> SeriesCalibration:
    """Per-series thresholds from the history's own scores (see module docstring, rule 1).

    ``frame`` has ``series``, ``timestamp`` and optionally ``label``/``label_source``; ``features``
    and ``score`` are aligned with it row by row.
    """
    series = frame["series"].astype(str).to_numpy()
    t_s = pd.to_datetime(frame["timestamp"]).to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    mature = (features["seas_n"].to_numpy() >= 2) & (features["n_hist"].to_numpy() >= cfg.scale_window)
    if "label_source" in frame.columns and "label" in frame.columns:
        human = frame["label_source"].astype(str).to_numpy() == "human"
        lab = frame["label"].fillna(0).to_numpy().astype(int)
        human_anom = human & (lab == 1)
        human_normal = human & (lab == 0)
    else:
        human_anom = np.zeros(len(frame), dtype=bool)
        human = human_normal = human_anom
    up = (features["seas_z"].to_numpy() > 0) if "seas_z" in features.columns else np.zeros(len(frame), dtype=bool)
    explicit_rows = explicit_feedback(series, human, t_s)
    confirmed: tuple[dict[str, float], dict[str, float]] = ({}, {})
    gap_s = cfg.incident_gap_hours * 3600.0
    thresholds: dict[str, float] = {}
    steps: dict[str, float] = {}
    for s, members in pd.Series(np.arange(len(series))).groupby(series).groups.items():
        idx = np.asarray(members)
        ts = np.sort(t_s[idx])
        steps[str(s)] = float(np.median(np.diff(ts))) if len(ts) > 1 else float("nan")
        # explicit feedback on a few points, not a complete labels file (whose "normal" says only
        # "no incident here", and muted NAB's series at their noisiest history point)
        explicit = bool(explicit_rows[idx[0]]) if len(idx) else False
        normal_rows = idx[human_normal[idx] & mature[idx]] if explicit else idx[:0]
        use = idx[mature[idx] & ~human_anom[idx]]
        if len(use) < cfg.min_calibration_points:
            _confirm(str(s), normal_rows, score, up, base, confirmed)
            continue
        # the budget counts the labelled incidents too, as it does unlabelled: taking them out freed
        # their share of the budget for ordinary points and lowered the threshold below the one the
        # same history gives without labels (labels must never add false alarms)
        budgeted = idx[mature[idx]]
        # counted as the decision counts them: each alarm of a daily series is its own incident
        series_gap_s = gap_s if steps[str(s)] < DAILY_STEP_S else 0.0
        span_days = (t_s[budgeted].max() - t_s[budgeted].min()) / 86400.0
        allowed = cfg.alarm_budget_per_day * span_days
        # the budget is searched from the margin below the global threshold, and the margin then
        # applied: the threshold rises continuously as a history comes near its budget (searched
        # from the global threshold itself, one history point at 0.501 instead of 0.497 made the
        # budget bind and lifted the threshold by the whole margin at once)
        floor = float(odds_scale(base, 1.0 / cfg.calibration_margin))
        raw = budget_threshold(score[budgeted], t_s[budgeted], floor, allowed, series_gap_s)
        th = base if raw <= floor else max(base, float(odds_scale(raw, cfg.calibration_margin)))
        # human-labelled incidents of this series that stand above all its other points: put the
        # threshold in the middle of the gap (odds scale), so incidents like them alarm again
        ha = idx[mature[idx] & human_anom[idx]]
        if len(ha):
            top_anom = float(score[ha].max())
            top_norm = float(score[use].max())
            if top_anom > top_norm and th > top_anom:
                mid = np.sqrt((top_norm / (1 - top_norm)) * (top_anom / (1 - top_anom)))
                th = float(max(mid / (1 + mid), base))
        thresholds[str(s)] = float(min(th, 1.0))
        _confirm(str(s), normal_rows, score, up, thresholds[str(s)], confirmed)
    return SeriesCalibration(
        thresholds=thresholds, step_s=steps, confirmed_up=confirmed[0], confirmed_down=confirmed[1]
    )


def _upward(features: pd.DataFrame | None, frame: pd.DataFrame) -> np.ndarray | None:
    """Whether each scored point deviates upwards: from its z-score, or from the range it was shown."""
    if features is not None and "seas_z" in features.columns:
        return features["seas_z"].to_numpy() > 0
    if {"value", "expected_low", "expected_high"} <= set(frame.columns):
        mid = (frame["expected_low"].to_numpy(dtype=np.float64) + frame["expected_high"].to_numpy(dtype=np.float64)) / 2
        return frame["value"].to_numpy(dtype=np.float64) > mid
    return None


def _confirm(
    series: str,
    normal_rows: np.ndarray,
    score: np.ndarray,
    up: np.ndarray,
    threshold: float,
    out: tuple[dict[str, float], dict[str, float]],
) -> None:
    """Rule 3: confirmed-normal points at or above ``threshold`` raise their direction's above them."""
    for direction, store in ((True, out[0]), (False, out[1])):
        rows = normal_rows[up[normal_rows] == direction]
        if not len(rows):
            continue
        top = float(score[rows].max())
        if top >= threshold:
            store[series] = float(min(odds_scale(top, CONFIRMED_NORMAL_MARGIN), 1.0))


def suppress_continuing(alarm: np.ndarray, series: np.ndarray, t_s: np.ndarray, gap_s: float) -> np.ndarray:
    """Keep only alarms that are alerts (rule 4): no alert of the series in the previous ``gap_s``.

    Causal: a point's decision depends only on earlier alarms of its series.
    """
    out = alarm.copy()
    idx = np.flatnonzero(alarm)
    if len(idx) < 2 or gap_s <= 0:
        return out
    order = idx[np.lexsort((t_s[idx], series[idx]))]
    s_o = series[order]
    starts = np.flatnonzero(np.r_[True, s_o[1:] != s_o[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for a, b in zip(starts, ends, strict=True):
        if b - a > 1:
            rows = order[a:b]
            out[rows] = alert_mask(t_s[rows], gap_s)
    return out


def _per_name(names: list[str], table: dict[str, float]) -> np.ndarray:
    """``table``'s value of each name (NaN where it has none), as ``Series.map(table)`` gives it.

    A dict lookup per name: ``Series.map`` builds an index of the whole table first, which for a
    model calibrated on many series cost the scorer more than the lookups, once per block.
    """
    return np.array([table.get(n, np.nan) for n in names], dtype=np.float64)


def decide(
    score: np.ndarray,
    base: float,
    cfg: DetectorConfig,
    calibration: SeriesCalibration | None,
    features: pd.DataFrame | None = None,
    frame: pd.DataFrame | None = None,
) -> np.ndarray:
    """The product's alarm decision for scored points (rules 1-4 of the module docstring).

    Without ``frame`` (series names and timestamps) only the global threshold and rule 2 (from the
    ``is_daily`` feature) apply.
    """
    score = np.asarray(score, dtype=np.float64)
    thr = np.full(len(score), float(base))
    strict = float(odds_scale(base, cfg.uncalibrated_margin))
    subdaily = np.zeros(len(score), dtype=bool)
    if features is not None and "is_daily" in features.columns:
        subdaily = features["is_daily"].to_numpy() <= 0
    if frame is None:
        return score >= np.where(subdaily, strict, thr)
    # series as codes into its distinct names: the per-series lookups run once per series, not per row
    series, distinct = pd.factorize(frame["series"].astype(str))
    names = np.asarray(distinct, dtype=object).tolist()
    cal = calibration or SeriesCalibration({}, {})
    calibrated = _per_name(names, cal.thresholds)[series]
    step = _per_name(names, cal.step_s)[series]
    known_step = np.isfinite(step)
    subdaily = np.where(known_step, step < DAILY_STEP_S, subdaily)
    warm = np.inf if cfg.subdaily_warmup else strict
    thr = np.where(np.isfinite(calibrated), np.maximum(calibrated, base), np.where(subdaily, warm, thr))
    up = _upward(features, frame)
    if up is not None and (cal.confirmed_up or cal.confirmed_down):
        c_up = _per_name(names, cal.confirmed_up or {})[series]
        c_down = _per_name(names, cal.confirmed_down or {})[series]
        confirmed = np.where(up, c_up, c_down)
        thr = np.where(np.isfinite(confirmed), np.fmax(thr, confirmed), thr)
    alarm = score >= thr
    t_s = pd.to_datetime(frame["timestamp"]).to_numpy().astype("datetime64[ns]").astype(np.int64) / 1e9
    # daily loads are never merged (rule 4), though a nightly load that ran a few minutes earlier
    # than the night before lies less than the 24 hours of the gap after it
    merged = suppress_continuing(alarm & subdaily, series, t_s, cfg.incident_gap_hours * 3600.0)
    return merged | (alarm & ~subdaily)
