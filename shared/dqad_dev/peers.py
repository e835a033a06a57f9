"""The peers' detection methods, run on the same points as dqad inside ``dqad backtest``.

A user choosing a tool wants to see, on their own data, what the usual methods would have flagged
(docs/architecture.md §6: "prints precision/recall/F1 for dqad and for the peers' methods side by
side"). Each function takes the long frame (``series, timestamp, value``) and returns one boolean
alarm per row, in the frame's row order, computed from each series' past points only (anomstack's
method also takes the backtest's history mask, and is fitted on that part only). The
parameters are the peers' documented defaults, not values tuned here:

* :func:`elementary_zscore` — Elementary's dbt-data-reliability anomaly tests: a value is anomalous
  when ``|z| > anomaly_sensitivity``, default 3 (Elementary's ``anomaly_sensitivity`` doc page), with
  the mean and standard deviation of a training set of the previous ``days_back`` buckets, default
  14, and a score used only once the training set is complete (``training_set_size >= days_back -
  1`` in the macro ``get_anomaly_query.sql``). With ``seasonality="day_of_week"`` the training set is
  the same weekday's buckets only (the ``seasonality`` option of the same tests).
* :func:`deequ_online_normal` — Deequ's ``OnlineNormalStrategy``: a running mean and variance
  (Welford), a point is anomalous outside ``mean ± factor * std`` with ``lowerDeviationFactor`` and
  ``upperDeviationFactor`` 3.0, the first ``ignoreStartPercentage`` = 10 % of the series never
  flagged, and ``ignoreAnomalies`` = true: flagged points do not update the running statistics
  (``OnlineNormalStrategy`` in deequ's ``anomalydetection`` package).
* :func:`anomstack_lagdiff` — anomstack's default model (andrewm4894/anomstack). Features are its
  ``preprocess`` (``metrics/defaults/python/preprocess.py``, ``diff_n=1, smooth_n=3, lags_n=5``):
  the one-step change, its trailing 3-point mean, and that mean's 5 previous values. The train job
  (``anomstack/jobs/train.py``) fits every entry of ``model_configs``, by default PyOD's ``PCA`` and
  ``KNN``, per metric on its latest ``train_max_n`` = 2500 points when it has ``train_min_n`` = 14
  (``metrics/defaults/sql/train.sql``); the score job (``anomstack/jobs/score.py``) keeps each
  model's ``predict_proba(X)[:, 1]`` and combines them by ``model_combination_method`` "mean"; the
  alert job flags a score ``>= alert_threshold`` = 0.8 (``metrics/defaults/sql/alerts.sql``). The
  stored ``defaults.yaml`` versions are older (``train_max_n`` 1000, ``preprocess_lags_n`` 3,
  ``alert_threshold`` 0.5 then 0.8), so the current values are the ones anomstack's own
  ``tests/test_config.py::test_default_values`` asserts (2500, 14, 0.8, "mean") and ``preprocess``'s
  signature. ``train.sql`` writes the minimum as ``metric_recency_rank >= train_min_n``, which read
  literally drops the newest 13 points instead; the yaml's comment ("min number of observations for
  training a model") is what is implemented. PyOD (yzhao062/pyod, ``pyod/models/{pca,knn,base}.py``),
  reimplemented with scikit-learn so the backtest needs no PyOD: ``PCA()`` standardises, keeps every
  component and scores a row as the sum over components of the distance from the row to the unit
  eigenvector divided by its explained-variance ratio (the code's ``cdist(X, components) / w``; the
  docstring's "weighted euclidean distance ... to the hyperplane" and the textbook sum of squared
  projections over eigenvalues describe a different score, and anomstack runs the code);
  ``KNN(n_neighbors=5, method='largest')`` scores the distance to the 5th nearest training row, a
  training row's own score leaving the row out; ``predict_proba(method='linear')`` min-max scales on
  the training scores and clips to 0..1.
* :func:`anomstack_lagdiff_smoothed` — the same with anomstack's alert-side smoothing and snooze
  (``alerts.sql``): the score averaged over ``alert_smooth_n`` = 3 points ("smooth anomaly score over
  rolling n" in ``defaults.yaml``), and no new alert within ``alert_snooze_n`` = 3 points of the last
  one (the same ``snooze_n=3`` default as ``anomstack/ml/threshold.py``). ``alerts.sql`` orders both
  windows by recency rank, newest first, from ``rank - n`` to ``rank``: read literally, the newest
  point (the only one whose alert is saved) is smoothed over itself and never snoozed, which would
  make both settings no-ops in a point-by-point replay; the trailing mean and the look-back snooze
  the comments describe are implemented instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame[["series", "timestamp", "value"]].copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df.sort_values(["series", "timestamp"], kind="stable")


def elementary_zscore(
    frame: pd.DataFrame, *, days_back: int = 14, sensitivity: float = 3.0, seasonality: str | None = None
) -> np.ndarray:
    """Elementary-style training-window z-score (see the module docstring for the defaults).

    ``days_back`` counts buckets (loads) of the series; with ``seasonality="day_of_week"`` the
    training set is the previous ``days_back`` loads that fall on the same weekday.
    """
    if seasonality not in (None, "day_of_week"):
        raise ValueError(f"seasonality must be None or 'day_of_week', got {seasonality!r}")
    df = _ordered(frame)
    keys: list[pd.Series] = [df["series"]]
    if seasonality == "day_of_week":
        keys.append(df["timestamp"].dt.day_of_week)
    prev = df.groupby(keys, sort=False)["value"].shift(1)
    grouped = prev.groupby([k.to_numpy() for k in keys], sort=False)
    need = max(2, days_back - 1)
    mean = grouped.transform(lambda s: s.rolling(days_back, min_periods=need).mean())
    std = grouped.transform(lambda s: s.rolling(days_back, min_periods=need).std())
    z = (df["value"] - mean) / std.replace(0.0, np.nan)
    alarm = (z.abs() > sensitivity).fillna(False)
    return alarm.reindex(frame.index).to_numpy(dtype=bool)


def deequ_online_normal(
    frame: pd.DataFrame,
    *,
    lower_factor: float = 3.0,
    upper_factor: float = 3.0,
    ignore_start: float = 0.1,
    ignore_anomalies: bool = True,
) -> np.ndarray:
    """Deequ-style OnlineNormal (see the module docstring for the defaults)."""
    df = _ordered(frame)
    out = pd.Series(False, index=df.index)
    for _, g in df.groupby("series", sort=False):
        v = g["value"].to_numpy(dtype=np.float64)
        flags = np.zeros(len(v), dtype=bool)
        start = int(len(v) * ignore_start)
        n, mean, m2 = 0, 0.0, 0.0
        for i, x in enumerate(v):
            if not np.isfinite(x):
                continue
            std = np.sqrt(m2 / (n - 1)) if n > 1 else 0.0
            anomalous = i >= start and n > 1 and (x > mean + upper_factor * std or x < mean - lower_factor * std)
            flags[i] = anomalous
            if anomalous and ignore_anomalies:
                continue
            n += 1
            delta = x - mean
            mean += delta / n
            m2 += delta * (x - mean)
        out.loc[g.index] = flags
    return out.reindex(frame.index).to_numpy(dtype=bool)


def anomstack_lagdiff(
    frame: pd.DataFrame,
    hist_mask: np.ndarray,
    *,
    diff_n: int = 1,
    smooth_n: int = 3,
    lags_n: int = 5,
    train_max_n: int = 2500,
    train_min_n: int = 14,
    n_neighbors: int = 5,
    threshold: float = 0.8,
    alert_smooth_n: int = 0,
    snooze_n: int = 0,
) -> np.ndarray:
    """anomstack's default PyOD PCA + KNN on lag/difference features (see the module docstring).

    ``hist_mask`` marks each series' history (its first part, as ``iforest_baseline`` takes it):
    the two detectors are fitted once on the latest ``train_max_n`` history points, as anomstack's
    train job would have fitted them when the scored part began, so every later alarm depends on
    the history and on the points up to its own only. ``alert_smooth_n`` and ``snooze_n`` at 0 give
    the raw per-point decision; :func:`anomstack_lagdiff_smoothed` turns on anomstack's alert-side
    smoothing and snooze.
    """
    df = frame[["series", "timestamp", "value"]].copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["train"] = np.asarray(hist_mask, dtype=bool)
    df = df.sort_values(["series", "timestamp"], kind="stable")
    feats = _lagdiff_features(df, diff_n=diff_n, smooth_n=smooth_n, lags_n=lags_n)
    series = df["series"].to_numpy()
    train = df["train"].to_numpy()
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]]) if len(df) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(df)]
    out = np.zeros(len(df), dtype=bool)
    for lo, hi in zip(starts, ends, strict=True):
        score = _anomstack_score(
            feats[lo:hi], train[lo:hi], train_max_n=train_max_n, train_min_n=train_min_n, n_neighbors=n_neighbors
        )
        if alert_smooth_n > 1:
            score = pd.Series(score).rolling(alert_smooth_n, min_periods=1).mean().to_numpy()
        with np.errstate(invalid="ignore"):
            alarm = score >= threshold
        out[lo:hi] = _snooze(alarm, snooze_n) if snooze_n > 0 else alarm
    return pd.Series(out, index=df.index).reindex(frame.index).to_numpy(dtype=bool)


def anomstack_lagdiff_smoothed(
    frame: pd.DataFrame, hist_mask: np.ndarray, *, alert_smooth_n: int = 3, snooze_n: int = 3, **kwargs: Any
) -> np.ndarray:
    """:func:`anomstack_lagdiff` with anomstack's alert job on top: the score averaged over the last
    ``alert_smooth_n`` points, and no new alert within ``snooze_n`` points of the last one."""
    return anomstack_lagdiff(frame, hist_mask, alert_smooth_n=alert_smooth_n, snooze_n=snooze_n, **kwargs)


def _lagdiff_features(df: pd.DataFrame, *, diff_n: int, smooth_n: int, lags_n: int) -> np.ndarray:
    """anomstack's ``preprocess``: the ``diff_n``-step change, its trailing mean over ``smooth_n``
    points, and that smoothed change's previous ``lags_n`` values; a row missing any is NaN."""
    g = df.groupby("series", sort=False)["value"]
    x = g.diff(diff_n) if diff_n > 0 else df["value"]
    if smooth_n > 0:
        x = x.groupby(df["series"], sort=False).transform(lambda s: s.rolling(smooth_n).mean())
    cols = [x]
    gx = x.groupby(df["series"], sort=False)
    cols += [gx.shift(lag) for lag in range(1, lags_n + 1)]
    return np.column_stack([c.to_numpy(dtype=np.float64) for c in cols])


def _anomstack_score(
    X: np.ndarray, train: np.ndarray, *, train_max_n: int, train_min_n: int, n_neighbors: int
) -> np.ndarray:
    """One series' combined 0..1 score: the mean of PCA's and KNN's ``predict_proba``; NaN unscored."""
    score = np.full(len(X), np.nan)
    hist = np.flatnonzero(train)[-train_max_n:]
    if len(hist) < train_min_n:
        return score
    complete = np.isfinite(X).all(axis=1)
    fit_rows = hist[complete[hist]]
    if len(fit_rows) <= n_neighbors:  # PyOD's KNN needs more samples than neighbours
        return score
    Xt, Xs = X[fit_rows], X[complete]
    probs = [_minmax_proba(*_pyod_pca(Xt, Xs)), _minmax_proba(*_pyod_knn(Xt, Xs, n_neighbors))]
    stacked = np.vstack(probs)
    finite = np.isfinite(stacked)
    n = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        combined = np.where(finite, stacked, 0.0).sum(axis=0) / n
    score[complete] = np.where(n > 0, combined, np.nan)
    return score


def _pyod_pca(Xt: np.ndarray, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyOD ``PCA()`` decision scores of the training rows and of the scored rows (see the module
    docstring: standardised, every component, distance to each component over its variance ratio)."""
    from sklearn.decomposition import PCA

    mean = Xt.mean(axis=0)
    std = Xt.std(axis=0)
    std[std == 0] = 1.0  # StandardScaler leaves a constant column unscaled
    Zt, Zs = (Xt - mean) / std, (Xs - mean) / std
    with np.errstate(invalid="ignore", divide="ignore"):
        pca = PCA().fit(Zt)
        ratio = pca.explained_variance_ratio_
        comps = pca.components_

        def score(Z: np.ndarray) -> np.ndarray:
            dist = np.sqrt(((Z[:, None, :] - comps[None, :, :]) ** 2).sum(axis=2))
            return np.asarray((dist / ratio).sum(axis=1), dtype=np.float64)

        return score(Zt), score(Zs)


def _pyod_knn(Xt: np.ndarray, Xs: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """PyOD ``KNN()`` ('largest'): the distance to the k-th nearest training row. A training row's
    own score leaves the row itself out, as PyOD's fit does; a scored row's does not."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=n_neighbors).fit(Xt)
    train_dist, _ = nn.kneighbors(n_neighbors=n_neighbors)
    dist, _ = nn.kneighbors(Xs, n_neighbors=n_neighbors)
    return train_dist[:, -1], dist[:, -1]


def _minmax_proba(train_scores: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """PyOD ``predict_proba(method='linear')``: min-max on the training scores, clipped to 0..1.

    A constant training score scales by 1 (scikit-learn's MinMaxScaler); a non-finite one (PCA on a
    constant history) leaves the detector without a probability.
    """
    if not np.isfinite(train_scores).all():
        return np.full(len(scores), np.nan)
    lo, hi = float(train_scores.min()), float(train_scores.max())
    span = hi - lo if hi > lo else 1.0
    return np.clip((scores - lo) / span, 0.0, 1.0)


def _snooze(alarm: np.ndarray, snooze_n: int) -> np.ndarray:
    """Keep an alarm only when none was kept in the ``snooze_n`` points before it."""
    out = np.zeros_like(alarm)
    last = -snooze_n - 1
    for i in np.flatnonzero(alarm):
        if i - last > snooze_n:
            out[i] = True
            last = int(i)
    return out
