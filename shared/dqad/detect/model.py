"""Trainer: supervised candidates, time-ordered validation, threshold, champion/challenger.

Why this shape:
- Labels come from the labeler (human feedback first, then rules with hindsight); the models learn to
  recognise, from *causal* features only, what the labeler would call an incident with hindsight.
- Validation folds are cut by time (expanding window: train on the past, validate on the next block),
  never future -> past, because DQ series drift and random K-fold flatters every model.
- The decision threshold is chosen on the out-of-fold validation scores (max F1), not fixed at 0.5:
  classes are very imbalanced and probabilities of tree ensembles are not calibrated.
- A robust-statistics detector competes on the same folds and is the fallback whenever there are too
  few positive labels, so the trainer ALWAYS returns a usable bundle.
- A fitted (supervised) candidate replaces the robust detector only when it beats it on validation
  points a *human* labelled (``_human_f1``), by more than one event's worth, with at least
  ``MIN_HUMAN_EVENTS`` labelled events in validation (``label_decision``; labels never hurt).
  Labels from the labeler's rule only teach a model to
  imitate that rule. They are still trained and cross-validated every time, so ``metrics.json``
  shows each candidate's precision and recall. A fitted model's per-series alarm thresholds are
  calibrated on its out-of-fold scores, never on its (memorised) training scores.

"Better" for champion/challenger: challenger F1 >= champion F1 + ``promote_margin``, or F1 within the
margin and PR-AUC >= champion PR-AUC + ``promote_margin``. A margin keeps the champion stable
against noise between retrains (a model swap must pay for itself). Two exceptions, where the F1s
do not compare one model with another: when both are the robust detector, nothing was fitted and
the challenger is the same detector calibrated on the longer history (it always wins: a champion
kept for its F1 on an older history kept its older thresholds, and series that arrived since had
none, so a sub-daily one never left its learning period); and a champion whose F1 could not be
measured (no positive label in its validation) is no standard to beat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dqad.detect.alarm import SeriesCalibration, calibrate_series, explicit_feedback, odds_scale
from dqad.detect.alarm import decide as alarm_decide
from dqad.detect.config import DetectorConfig
from dqad.detect.features import STALE_REPEAT_RATE, compute
from dqad.ports import ProgressCallback


class RobustDetector:
    """Documented fallback: robust seasonal z-score with special-day and consensus rules.

    score = |z| / (|z| + robust_threshold), i.e. 0.5 exactly at the threshold, where z is the
    deviation from the seasonal baseline in robust sigmas (IQR of past residuals). A point also needs
    a relative change of at least ``min_relative_change``. On holidays and month ends, z measures how
    far the value lies outside the tolerated range around the ordinary baseline (see features).
    A metric that deviates while at least two other metrics of the same load deviate too needs only
    75% of the threshold (an empty or partial load moves them together). A load whose metrics all
    repeat the previous load's numbers exactly, in series that practically never repeat, is stale
    (score 0.8); a value of exactly 0 in a series that is never 0, while other metrics of the load
    deviate, scores 0.7. A missing value scores 0.6.
    """

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.classes_ = np.array([0, 1])

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None) -> RobustDetector:
        return self

    def score(self, X: pd.DataFrame) -> np.ndarray:
        cfg = self.cfg
        thr = cfg.robust_threshold
        z = np.abs(X["seas_z"].to_numpy(dtype=np.float64))
        if "week_z" in X.columns:  # sub-daily: normal if it matches yesterday's or last week's pattern
            z = np.minimum(z, np.abs(X["week_z"].to_numpy(dtype=np.float64)))
        rel = np.abs(X["seas_rel"].to_numpy(dtype=np.float64))
        others = X["grp_other_dev"].to_numpy(dtype=np.float64)
        eff = np.where(others >= 2, z / 0.75, z)
        s = eff / (eff + thr)
        s = np.where(rel >= cfg.min_relative_change, s, np.minimum(s, 0.45))
        # stuck loads: every metric of the load repeats its previous number, in series that never do
        stuck = (
            (X["same_as_prev"].to_numpy() > 0)
            & (X["same_rate"].to_numpy() < STALE_REPEAT_RATE)
            & (X["grp_other_same_frac"].to_numpy() >= 0.5)
            & (X["n_hist"].to_numpy() >= 7)
        )
        s = np.where(stuck, np.maximum(s, 0.8), s)
        # a value of exactly 0 in a series that is never 0, while other metrics of the load deviate
        zero = (X["is_zero"].to_numpy() > 0) & (X["zero_rate"].to_numpy() < 0.02) & (others >= 1)
        s = np.where(zero, np.maximum(s, 0.7), s)
        missing = X["is_missing"].to_numpy() > 0
        s = np.where(missing, np.maximum(s, 0.6), s)
        young = X["n_hist"].to_numpy() < 3
        return np.where(young, np.minimum(s, 0.3), s)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        s = self.score(X)
        return np.column_stack([1.0 - s, s])


@dataclass
class ModelBundle:
    """Everything the scorer needs; written and read without pickle by dqad.detect.model_format."""

    estimator: Any
    feature_names: list[str]
    threshold: float
    cfg: DetectorConfig
    trained_at: str
    metrics: dict[str, float]
    kind: str
    #: per-series alarm thresholds and steps learned on the history (dqad.detect.alarm); bundles
    #: pickled before this field existed load with None (global threshold only)
    calibration: SeriesCalibration | None = None

    def predict_score(self, X: pd.DataFrame) -> np.ndarray:
        Xf = X.reindex(columns=self.feature_names, fill_value=0.0)
        if self.kind == "robust":
            return self.estimator.score(Xf)
        # the features arrive one column per feature (contiguous); trees read all of a row's
        # features at each split, so a row-major copy makes their reads sequential (~30% faster)
        Xf = pd.DataFrame(np.ascontiguousarray(Xf.to_numpy()), columns=Xf.columns, index=Xf.index, copy=False)
        return self.estimator.predict_proba(Xf)[:, 1].astype(np.float64)

    def decide(self, score: np.ndarray, features: pd.DataFrame | None, frame: pd.DataFrame | None = None) -> np.ndarray:
        """The alarm decision for scored points: the one place the scorer and the backtest ask it.

        ``frame`` (the scored rows' ``series`` and ``timestamp``, same order as ``score``) enables
        the per-series thresholds and the one-alert-per-incident rule (see dqad.detect.alarm);
        without it only the global threshold and the sub-daily margin apply.
        """
        return alarm_decide(
            score, self.threshold, self.cfg, getattr(self, "calibration", None), features=features, frame=frame
        )


@dataclass
class TrainingResult:
    bundle: ModelBundle
    metrics: dict[str, float]
    candidates: dict[str, dict[str, float]]
    promote: bool
    reason: str
    timings: dict[str, float] = field(default_factory=dict)
    #: why a supervised candidate did or did not replace the robust detector (see label_decision)
    label_decision: dict[str, Any] = field(default_factory=dict)


#: Human-labelled anomaly events (runs of consecutive labelled points of a series) the time-ordered
#: validation blocks must hold before a supervised candidate may replace the robust detector. With
#: fewer, one event found or missed moves recall by more than 0.1 and a "win" is noise: nab-dev's
#: history holds 2-4 labelled windows, and a model chosen on them missed almost every later incident.
MIN_HUMAN_EVENTS = 10


def label_decision(
    candidates: dict[str, dict[str, float]], events: int, promote_margin: float
) -> dict[str, Any]:
    """Whether a supervised candidate may replace the robust detector, and why (labels never hurt).

    A supervised candidate qualifies only when its F1 on human-labelled validation points *after* its
    training window (the expanding time folds) beats the robust detector's by a margin of
    ``max(promote_margin, 1 / events)``: the win must be worth more than one event found or missed,
    and there must be at least :data:`MIN_HUMAN_EVENTS` labelled events. Otherwise the labels act on
    the robust detector only (labelled anomalies leave its baselines through ``features.compute``;
    points a human confirmed normal raise the thresholds of their series).
    """
    margin = max(promote_margin, 1.0 / events) if events else 1.0
    rob = candidates["robust"].get("human_f1", 0.0)
    fitted = {n: m for n, m in candidates.items() if n != "robust" and "human_f1" in m}
    best = max(fitted, key=lambda n: fitted[n]["human_f1"]) if fitted else None
    out: dict[str, Any] = {"events": int(events), "margin": float(margin), "robust_human_f1": float(rob),
                           "min_events": MIN_HUMAN_EVENTS, "qualified": []}
    if best is None:
        return {**out, "decision": "robust", "reason": "no supervised candidate was cross-validated"}
    bf = float(fitted[best]["human_f1"])
    out["best_supervised"], out["best_supervised_human_f1"] = best, bf
    if events < MIN_HUMAN_EVENTS:
        return {**out, "decision": "robust",
                "reason": f"{events} human-labelled events in validation < {MIN_HUMAN_EVENTS}: too few to be sure"}
    out["qualified"] = sorted(n for n, m in fitted.items() if m["human_f1"] >= rob + margin)
    if not out["qualified"]:
        return {**out, "decision": "robust",
                "reason": f"best supervised {best} human F1 {bf:.3f} does not beat robust {rob:.3f} by {margin:.3f}"}
    return {**out, "decision": "supervised",
            "reason": f"{best} human F1 {bf:.3f} beats robust {rob:.3f} by >= {margin:.3f} on {events} events"}


def _human_events(series: np.ndarray, ts: np.ndarray, y: np.ndarray, human: np.ndarray) -> int:
    """Labelled anomaly events among human-labelled rows: runs of consecutive anomalous rows per series."""
    sel = human
    if not sel.any():
        return 0
    frame = pd.DataFrame({"s": series[sel], "t": ts[sel], "y": y[sel]}).sort_values(["s", "t"], kind="stable")
    a = frame["y"].to_numpy() == 1
    new_series = frame["s"].ne(frame["s"].shift()).to_numpy()
    starts = a & (new_series | ~np.r_[False, a[:-1]])
    return int(starts.sum())


def make_estimator(name: str, cfg: DetectorConfig, n_rows: int) -> Any:
    """Candidate models; sized so that all of them with CV fit in the trainer's time budget."""
    if name == "logistic":
        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=0.5, class_weight="balanced", max_iter=300),
        )
    if name == "random_forest":
        return RandomForestClassifier(
            n_estimators=cfg.n_estimators,
            min_samples_leaf=3,
            max_depth=14,
            max_features="sqrt",
            class_weight="balanced_subsample",
            max_samples=min(1.0, 15_000 / max(n_rows, 1)),
            n_jobs=-1,
            random_state=cfg.random_state,
        )
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=60,
            learning_rate=0.1,
            max_leaf_nodes=15,
            max_bins=63,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=cfg.random_state,
        )
    if name == "robust":
        return RobustDetector(cfg)
    raise ValueError(f"unknown candidate {name!r}")


def _best_threshold(y: np.ndarray, s: np.ndarray, w: np.ndarray, beta: float = 1.0) -> dict[str, float]:
    """Threshold maximising weighted F-beta on validation scores, with the metrics at that point."""
    if y.sum() == 0 or len(y) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "pr_auc": 0.0, "threshold": 0.5}
    order = np.argsort(-s, kind="stable")
    s_o, y_o, w_o = s[order], y[order], w[order]
    tp = np.cumsum(w_o * y_o)
    fp = np.cumsum(w_o * (1 - y_o))
    last = np.r_[s_o[1:] != s_o[:-1], True]  # cut only between distinct scores
    tp, fp, thr = tp[last], fp[last], s_o[last]
    pos = float((w * y).sum())
    prec = tp / np.maximum(tp + fp, 1e-12)
    rec = tp / pos
    b2 = beta * beta
    fb = (1 + b2) * prec * rec / np.maximum(b2 * prec + rec, 1e-12)
    i = int(np.argmax(fb))
    f1 = 2 * prec[i] * rec[i] / max(prec[i] + rec[i], 1e-12)
    # place the threshold halfway to the next lower score, so it generalises a little
    nxt = thr[i + 1] if i + 1 < len(thr) else thr[i] - 1e-6
    threshold = float((thr[i] + nxt) / 2.0)
    ap = float(average_precision_score(y, s, sample_weight=w))
    return {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1), "pr_auc": ap, "threshold": threshold}


def _metrics_at(y: np.ndarray, s: np.ndarray, w: np.ndarray, threshold: float) -> dict[str, float]:
    """Weighted precision, recall and F1 of the alarms ``s >= threshold``."""
    hit = s >= threshold
    tp = float((w * y * hit).sum())
    fp = float((w * (1 - y) * hit).sum())
    pos = float((w * y).sum())
    prec = tp / (tp + fp) if tp + fp > 0 else 0.0
    rec = tp / pos if pos > 0 else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"precision": prec, "recall": rec, "f1": f1}


def _time_folds(ts: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Expanding-window folds: block i+1 validates a model trained on blocks 0..i (by time)."""
    uniq = np.unique(ts)
    if len(uniq) < k + 1:
        return []
    edges = [uniq[int(len(uniq) * j / (k + 1))] for j in range(1, k + 1)] + [uniq[-1] + 1]
    folds = []
    for j in range(k):
        tr = np.flatnonzero(ts < edges[j])
        va = np.flatnonzero((ts >= edges[j]) & (ts < edges[j + 1]))
        folds.append((tr, va))
    return folds


def _human_f1(y: np.ndarray, s: np.ndarray, w: np.ndarray, human: np.ndarray, threshold: float) -> dict[str, float]:
    """F1 at ``threshold`` on the validation points a human labelled (and how many anomalies they hold).

    Why supervised candidates must win *here* to be chosen: without human feedback the labels are
    the labeler's hindsight rule, and a model fitted to them learns to imitate that rule; its F1
    against the rule's own labels says how well it imitates, not whether its alarms are incidents.
    On the synthetic benchmark and on nab-dev the fitted models never beat the robust detector on
    the rule's labels, and where they won by a little (nab-dev, with labels) their alarms flooded
    series the robust detector kept quiet. So the robust detector stays the model unless a
    candidate beats it (by ``promote_margin``) on human-labelled validation points.
    """
    if not human.any():
        return {"human_f1": 0.0, "human_positives": 0.0}
    at = _metrics_at(y[human], s[human], w[human], threshold)
    return {"human_f1": at["f1"], "human_positives": float((y[human] == 1).sum())}


def _oof_rows(ts_all: np.ndarray, ts: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """All rows (of the full history) in the time span of each fold's validation block.

    Folds are cut on the (possibly subsampled) training rows; the blocks are contiguous in time, so
    a block is the span between its first and last timestamp. Calibration needs every point of a
    series there, not a sample of its negatives: alert budgets count incidents per day.
    """
    out = []
    for _, va in folds:
        lo, hi = ts[va].min(), ts[va].max()
        out.append(np.flatnonzero((ts_all >= lo) & (ts_all <= hi)))
    return out


def is_better(challenger: dict[str, float], champion: dict[str, float] | None, margin: float) -> tuple[bool, str]:
    """Champion/challenger rule (see module docstring)."""
    if not champion:
        return True, "no champion yet"
    robust_both = challenger.get("fitted") == 0.0 and champion.get("fitted") == 0.0
    if robust_both:
        # nothing is fitted: the thresholds are calibrated on the history and its feedback, so the
        # calibration that has seen more of both wins (the F1s were measured on different labels)
        return True, "the robust detector, recalibrated on the longer history"
    cf, cp = float(challenger.get("f1", 0.0)), float(challenger.get("pr_auc", 0.0))
    hf, hp = float(champion.get("f1", 0.0)), float(champion.get("pr_auc", 0.0))
    if not np.isfinite(hf):
        return True, "the champion's F1 could not be measured (no positive label in its validation)"
    if cf >= hf + margin:
        return True, f"challenger F1 {cf:.3f} beats champion F1 {hf:.3f} by >= {margin}"
    if abs(cf - hf) < margin and cp >= hp + margin:
        return True, f"F1 tied ({cf:.3f} vs {hf:.3f}); challenger PR-AUC {cp:.3f} beats {hp:.3f}"
    return False, f"challenger F1 {cf:.3f} / PR-AUC {cp:.3f} not better than champion {hf:.3f} / {hp:.3f}"


def _subsample(n: int, y: np.ndarray, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep all positives and a uniform sample of negatives; weights restore the class balance."""
    if n <= max_rows:
        return np.arange(n), np.ones(n)
    rng = np.random.default_rng(seed)
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y == 0)
    k = max(max_rows - len(pos), min(len(neg), 1000))
    rate = k / max(len(neg), 1)
    keep_neg = rng.choice(neg, size=min(k, len(neg)), replace=False)
    idx = np.sort(np.r_[pos, keep_neg])
    w = np.where(y[idx] == 1, 1.0, 1.0 / rate)
    return idx, w


@dataclass
class _History:
    """Every labelled row of the history with its causal features.

    The bundle's counts and a robust bundle's calibration use all of it, not the sample the
    candidates are fitted on: alert budgets count incidents per day in every series.
    """

    labeled: pd.DataFrame
    X: pd.DataFrame
    y: np.ndarray
    #: timestamps as int64 nanoseconds, what the time folds compare
    ts: np.ndarray

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())


def _history(labeled: pd.DataFrame, cfg: DetectorConfig) -> _History:
    """Features computed with the labels, so that labelled anomalies leave the baselines."""
    if "label" not in labeled.columns:
        raise ValueError("train_candidates needs a labeled frame (column 'label')")
    y = labeled["label"].fillna(0).astype(int).to_numpy()
    comp = compute(labeled, cfg, labels=labeled["label"])
    ts = pd.to_datetime(labeled["timestamp"]).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return _History(labeled=labeled, X=comp.features, y=y, ts=ts)


@dataclass
class _TrainingRows:
    """The rows the candidates are fitted and validated on, with their weights and human flags.

    A big history keeps all positives and a sample of negatives (``_subsample``), so that every
    candidate with its cross-validation fits in the trainer's time budget.
    """

    X: pd.DataFrame
    y: np.ndarray
    w: np.ndarray
    ts: np.ndarray
    series: np.ndarray
    human: np.ndarray
    #: points a human called normal, explicit feedback only (see ``_training_rows``)
    human_normal: np.ndarray
    #: human-labelled rows in the whole history, which the bundle reports
    n_human: float


def _training_rows(hist: _History, cfg: DetectorConfig) -> _TrainingRows:
    """Subsample the history and flag what a human labelled.

    Only explicit feedback counts as a human "normal": in a series whose human labels cover most
    of the stretch they span (a complete labels file, see dqad.detect.alarm.explicit_feedback),
    "normal" means "no incident here", not "expected" (the same rule as the per-series
    calibration); it raised the global threshold to its cap on every series.
    """
    labeled, n = hist.labeled, len(hist.y)
    idx, w = _subsample(n, hist.y, cfg.max_train_rows, cfg.random_state)
    if "label_source" in labeled.columns:
        human_all = (labeled["label_source"].astype(str) == "human").to_numpy()
    else:
        human_all = np.zeros(n, dtype=bool)
    explicit = explicit_feedback(labeled["series"].astype(str).to_numpy(), human_all, hist.ts)
    series_all = labeled["series"].astype(str).to_numpy() if "series" in labeled.columns else np.zeros(n)
    return _TrainingRows(
        X=hist.X.iloc[idx],
        y=hist.y[idx],
        w=w,
        ts=hist.ts[idx],
        series=series_all[idx],
        human=human_all[idx],
        human_normal=(human_all & (hist.y == 0) & explicit)[idx],
        n_human=float(human_all.sum()),
    )


@dataclass
class _ValidationPlan:
    """Made once, so that every candidate is validated on the same time folds and their metrics compare."""

    #: expanding-window folds (positions in the training rows) whose training part holds both classes
    folds: list[tuple[np.ndarray, np.ndarray]]
    #: history rows in each fold's validation span (see ``_oof_rows``)
    oof_rows: list[np.ndarray]
    names: list[str]


def _validation_plan(hist: _History, rows: _TrainingRows, cfg: DetectorConfig) -> _ValidationPlan:
    """Only the robust detector competes when there is nothing a fitted model could learn from.

    That is the case with fewer than ``min_positive`` positive labels, or without a time fold whose
    training part holds at least two positives and both classes.
    """
    folds = _time_folds(rows.ts, cfg.cv_folds)
    usable = [(tr, va) for tr, va in folds if rows.y[tr].sum() >= 2 and len(np.unique(rows.y[tr])) == 2]
    fitted_too = hist.n_positive >= cfg.min_positive and bool(usable)
    names = [*cfg.candidates, "robust"] if fitted_too else ["robust"]
    return _ValidationPlan(folds=usable, oof_rows=_oof_rows(hist.ts, rows.ts, usable), names=names)


@dataclass
class _Steps:
    """Counted across all candidates, so that one progress bar spans the whole training.

    One step per candidate and validation fold (one per candidate without folds).
    """

    total: int
    callback: ProgressCallback | None
    done: int = 0

    def tick(self) -> None:
        self.done += 1
        if self.callback:
            self.callback(self.done, self.total)


@dataclass
class _Pooled:
    """Pooled over the time folds, so that the threshold is chosen on scores a model gave points after
    its training window."""

    y: np.ndarray
    s: np.ndarray
    w: np.ndarray
    human: np.ndarray


@dataclass
class _FoldScores:
    """What one candidate's cross-validation scored: the pooled blocks for its metrics, and the
    history rows of those blocks for its calibration."""

    #: None without a usable fold: the candidate's metrics are then not measured on validation
    pooled: _Pooled | None
    #: out-of-fold score of every history row in a validation block (NaN elsewhere), not only of the
    #: subsample: a fitted model's per-series alarm thresholds are calibrated on these
    full: np.ndarray


def _score_folds(
    name: str, hist: _History, rows: _TrainingRows, plan: _ValidationPlan, cfg: DetectorConfig, steps: _Steps
) -> _FoldScores:
    """Fit on each fold's past, score its validation block: the scores a model gives the future."""
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    full = np.full(len(hist.y), np.nan)
    for (tr, va), span in zip(plan.folds, plan.oof_rows, strict=True):
        est = make_estimator(name, cfg, len(tr))
        if name != "robust":
            _fit(est, name, rows.X.iloc[tr], rows.y[tr], rows.w[tr])
            s = est.predict_proba(rows.X.iloc[va])[:, 1]
            full[span] = est.predict_proba(hist.X.iloc[span])[:, 1]
        else:
            s = est.score(rows.X.iloc[va])
        parts.append((rows.y[va], s, rows.w[va], rows.human[va]))
        steps.tick()
    if not plan.folds:
        steps.tick()
        return _FoldScores(pooled=None, full=full)
    y, s, w, human = (np.concatenate(p) for p in zip(*parts, strict=True))
    return _FoldScores(pooled=_Pooled(y=y, s=s, w=w, human=human), full=full)


def _candidate_metrics(
    name: str, pooled: _Pooled | None, rows: _TrainingRows, cfg: DetectorConfig
) -> dict[str, float]:
    """Validation metrics at the candidate's threshold, and its F1 on what humans labelled.

    The robust detector does not take the max-F1 threshold (see ``_robust_threshold``); it reports
    what the threshold it keeps does, not what a fitted one would.
    """
    if pooled is not None:
        m = _best_threshold(pooled.y, pooled.s, pooled.w, cfg.threshold_beta)
    else:
        nan = float("nan")
        m = {"precision": nan, "recall": nan, "f1": nan, "pr_auc": nan, "threshold": 0.5}
    if name == "robust":
        m = _robust_threshold(m, rows.X, rows.y, rows.w, rows.human_normal, est_cfg=cfg, usable=pooled is not None)
        if pooled is not None:
            m.update(_metrics_at(pooled.y, pooled.s, pooled.w, m["threshold"]))
    if pooled is not None:
        m.update(_human_f1(pooled.y, pooled.s, pooled.w, pooled.human, m["threshold"]))
    return m


@dataclass
class _CrossValidation:
    #: per candidate, its validation metrics (what ``metrics.json`` shows) and ``cv_seconds``
    candidates: dict[str, dict[str, float]]
    #: per candidate, ``_FoldScores.full``
    oof_full: dict[str, np.ndarray]


def _cross_validate(
    hist: _History, rows: _TrainingRows, plan: _ValidationPlan, cfg: DetectorConfig, steps: _Steps
) -> _CrossValidation:
    """Every candidate on the same time folds.

    Each is cross-validated even when only a human-labelled validation could let a fitted one be
    chosen (see ``_human_f1``): ``metrics.json`` reports each candidate's precision and recall, and
    the user sees what labelling would buy.
    """
    out = _CrossValidation(candidates={}, oof_full={})
    for name in plan.names:
        started = time.perf_counter()
        scores = _score_folds(name, hist, rows, plan, cfg, steps)
        out.oof_full[name] = scores.full
        m = _candidate_metrics(name, scores.pooled, rows, cfg)
        m["cv_seconds"] = time.perf_counter() - started
        out.candidates[name] = m
    return out


def _mark_eligible(
    candidates: dict[str, dict[str, float]], rows: _TrainingRows, plan: _ValidationPlan, cfg: DetectorConfig
) -> dict[str, Any]:
    """The label decision, with each candidate marked ``eligible`` (1.0) or not in ``candidates``.

    A supervised candidate must beat the robust detector on what humans labelled, with enough
    labelled events in validation to be sure (see ``_human_f1`` and ``label_decision``).
    """
    val = np.concatenate([va for _, va in plan.folds]) if plan.folds else np.zeros(0, dtype=np.int64)
    events = _human_events(rows.series[val], rows.ts[val], rows.y[val], rows.human[val])
    decision = label_decision(candidates, events, cfg.promote_margin)
    for name in plan.names:
        candidates[name]["eligible"] = float(name == "robust" or name in decision["qualified"])
    return decision


def _rank(item: tuple[str, dict[str, float]]) -> tuple[float, float, int]:
    """Validation F1 (to 3 decimals), then PR-AUC; ties, e.g. without validation positives, go to
    the documented robust detector."""
    name, m = item
    f1 = m["f1"] if np.isfinite(m["f1"]) else -1.0
    ap = m["pr_auc"] if np.isfinite(m["pr_auc"]) else -1.0
    return (round(f1, 3), ap, 1 if name == "robust" else 0)


def _best_eligible(candidates: dict[str, dict[str, float]]) -> str:
    return max(((k, m) for k, m in candidates.items() if m["eligible"]), key=_rank)[0]


def _final_bundle(
    name: str, validated: dict[str, float], hist: _History, rows: _TrainingRows, cfg: DetectorConfig, trained_at: str
) -> ModelBundle:
    """The chosen candidate refitted on all training rows: the folds only chose it.

    Its calibration is left to ``_calibration``, which needs the bundle's scores.
    """
    est = make_estimator(name, cfg, len(rows.y))
    if name != "robust":
        _fit(est, name, rows.X, rows.y, rows.w)
    metrics = {
        **validated,
        "n_train": float(len(hist.y)),
        "n_positive": float(hist.n_positive),
        "fitted": float(name != "robust"),
        "n_human": rows.n_human,
    }
    return ModelBundle(
        estimator=est,
        feature_names=list(hist.X.columns),
        threshold=float(validated["threshold"]),
        cfg=cfg,
        trained_at=trained_at,
        metrics=metrics,
        kind=name,
    )


def _calibration(bundle: ModelBundle, oof_full: np.ndarray, hist: _History, cfg: DetectorConfig) -> SeriesCalibration:
    """Per-series alarm thresholds (alarm rule 1) from scores the model gives points it has not seen.

    The robust detector is not fitted, so its history scores are honest as they are; a fitted model
    scores its own training points near 0/1 (a forest memorises them), so calibrating on those would
    put every threshold at the global one and flood the future with alarms. Its out-of-fold scores
    (time-ordered CV blocks) stand for the future it will score instead.
    """
    if bundle.kind == "robust":
        return calibrate_series(bundle.predict_score(hist.X), hist.labeled, hist.X, bundle.threshold, cfg)
    seen = np.isfinite(oof_full)
    return calibrate_series(oof_full[seen], hist.labeled[seen], hist.X[seen], bundle.threshold, cfg)


def train_candidates(
    labeled: pd.DataFrame,
    cfg: DetectorConfig,
    champion_metrics: dict | None = None,
    progress: ProgressCallback | None = None,
) -> TrainingResult:
    """Train every candidate, validate by time, pick the best; fall back to the robust detector.

    ``progress`` is told one step per candidate and validation fold (one per candidate without folds).
    """
    t0 = time.perf_counter()
    hist = _history(labeled, cfg)
    t_feat = time.perf_counter() - t0
    rows = _training_rows(hist, cfg)
    trained_at = pd.Timestamp.now("UTC").isoformat()
    plan = _validation_plan(hist, rows, cfg)
    cv = _cross_validate(hist, rows, plan, cfg, _Steps(len(plan.names) * max(len(plan.folds), 1), progress))
    decision = _mark_eligible(cv.candidates, rows, plan, cfg)
    best_name = _best_eligible(cv.candidates)
    bundle = _final_bundle(best_name, cv.candidates[best_name], hist, rows, cfg, trained_at)
    t_cal = time.perf_counter()
    bundle.calibration = _calibration(bundle, cv.oof_full[best_name], hist, cfg)
    t_cal = time.perf_counter() - t_cal
    promote, reason = is_better(bundle.metrics, champion_metrics, cfg.promote_margin)
    if best_name == "robust" and hist.n_positive < cfg.min_positive:
        reason = f"{hist.n_positive} positive labels < min_positive {cfg.min_positive}: robust fallback; " + reason
    return TrainingResult(
        bundle=bundle,
        metrics=bundle.metrics,
        candidates=cv.candidates,
        promote=promote,
        reason=reason,
        timings={"features_s": t_feat, "calibration_s": t_cal, "total_s": time.perf_counter() - t0},
        label_decision={**decision, "chosen": best_name},
    )


def _fit(est: Any, name: str, X: pd.DataFrame, y: np.ndarray, w: np.ndarray) -> None:
    if name == "logistic":
        est.fit(X, y, logisticregression__sample_weight=w)
    elif name == "gradient_boosting":
        # no class/sample weights: they push HistGradientBoosting off its fast histogram path (~10x
        # slower); imbalance is handled by choosing the threshold on validation instead
        est.fit(X, y)
    else:
        est.fit(X, y, sample_weight=w)


def _robust_threshold(
    m: dict[str, float],
    X: pd.DataFrame,
    y: np.ndarray,
    w: np.ndarray,
    human_normal: np.ndarray,
    *,
    est_cfg: DetectorConfig,
    usable: bool,
) -> dict[str, float]:
    """The robust detector keeps its documented 0.5 threshold; only human feedback moves it.

    Validation against the labeler's own labels does not: those labels come from the same robust
    z-scores, so a threshold fitted to them measures the detector against itself (on the scenario
    corpus it raised the threshold and halved the recall of sub-daily tables for no gain overall).
    Human feedback does help: the threshold is raised just above the highest score of a point a
    human called normal, so what a person confirmed as normal in the past does not alarm in the
    future (explicit feedback only: ``human_normal`` leaves out series whose labels cover
    the stretch they span, where a complete labels file's "normal" says only "no incident here").

    Either way the global threshold stays at most ``odds_scale(0.5, calibration_margin)`` (0.6 by
    default, |z| = 1.5 x robust_threshold): it is the floor of *every* series' threshold, and
    pooled validation is dominated by the noisiest series. Series-specific strictness belongs to
    the per-series calibration (dqad.detect.alarm), which already counts the points a human called
    normal and applies the same margin. With a 0.8 cap (|z| = 4 x robust_threshold) nab-dev's
    human-labelled history (a complete labels file: everything outside its windows is normal)
    raised the global threshold to 0.8 in every retrain and muted quiet series whose own history
    never came near it.
    """
    cap = float(odds_scale(0.5, est_cfg.calibration_margin))
    s = RobustDetector(est_cfg).score(X)
    normal = human_normal
    thr = 0.5
    if normal.any():
        top = float(np.quantile(s[normal], 0.9995)) if normal.sum() > 2000 else float(s[normal].max())
        thr = float(min(max(0.5, top + 0.01), cap))
    out = dict(m)
    out["threshold"] = thr
    if not usable and y.sum() > 0:
        # no time-ordered folds: the training rows' labels give the metrics, at the threshold kept
        # (fitted to them, one labelled point of a short history lifted every series' floor to 0.8)
        out.update(pr_auc=_best_threshold(y, s, w)["pr_auc"], **_metrics_at(y, s, w, thr))
    return out
