"""The peers' detection methods, run on the same points as dqad inside ``dqad backtest``.

A user choosing a tool wants to see, on their own data, what the usual methods would have flagged
(docs/architecture.md §6: "prints precision/recall/F1 for dqad and for the peers' methods side by
side"). Each function takes the long frame (``series, timestamp, value``) and returns one boolean
alarm per row, in the frame's row order, computed from each series' past points only. The
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
"""

from __future__ import annotations

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
