"""Point- and event-level precision/recall/F1, and the two plain baselines dqad is compared with.

Event level (what an on-call engineer feels): a labelled window counts as *found* when at least one
alarm falls inside it (recall); alarms are grouped into runs of consecutive alarmed points of a
series, and a run is a true alarm when any of its points falls inside a window (precision). One
incident flagged on five consecutive loads is one alert, not five.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest


def _prf(tp: float, n_pred: float, n_true: float) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f}


def point_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = float((y_true & y_pred).sum())
    out = _prf(tp, float(y_pred.sum()), float(y_true.sum()))
    out.update({"tp": tp, "alarms": float(y_pred.sum()), "positives": float(y_true.sum())})
    return out


def points_to_windows(points: pd.DataFrame, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Labelled points (series, timestamp, is_anomaly) -> windows of consecutive anomalous points."""
    p = points.copy()
    p["timestamp"] = pd.to_datetime(p["timestamp"]).astype("datetime64[ns]")
    p["is_anomaly"] = p["is_anomaly"].astype(str).str.lower().isin(["1", "true", "1.0", "anomaly", "yes"])
    if frame is not None:
        f = frame[["series", "timestamp"]].copy()
        f["timestamp"] = pd.to_datetime(f["timestamp"]).astype("datetime64[ns]")
        p = f.merge(p[["series", "timestamp", "is_anomaly"]], on=["series", "timestamp"], how="left")
        p["is_anomaly"] = p["is_anomaly"].fillna(False).astype(bool)
    p = p.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    a = p["is_anomaly"].to_numpy()
    new_series = p["series"].ne(p["series"].shift()).to_numpy()
    start = a & (new_series | ~np.r_[False, a[:-1]])
    run = np.cumsum(start)
    sel = p[a].assign(run=run[a])
    w = sel.groupby("run").agg(series=("series", "first"), start=("timestamp", "min"), end=("timestamp", "max"))
    return w.reset_index(drop=True)


def in_window(frame: pd.DataFrame, windows: pd.DataFrame) -> np.ndarray:
    """Window id (row of ``windows``) containing each frame row, or -1; loops over series only."""
    out = np.full(len(frame), -1, dtype=np.int64)
    if windows is None or len(windows) == 0 or len(frame) == 0:
        return out
    w = windows.reset_index(drop=True).copy()
    w["start"] = pd.to_datetime(w["start"]).astype("datetime64[ns]")
    w["end"] = pd.to_datetime(w["end"]).astype("datetime64[ns]")
    ts_all = pd.to_datetime(frame["timestamp"]).to_numpy().astype("datetime64[ns]")
    series = frame["series"].astype(str).to_numpy()
    for s, ws in w.groupby(w["series"].astype(str)):
        rows = np.flatnonzero(series == s)
        if len(rows) == 0:
            continue
        ws = ws.sort_values("start")
        starts = ws["start"].to_numpy()
        ends = ws["end"].to_numpy()
        ids = ws.index.to_numpy()
        t = ts_all[rows]
        # handles overlapping windows by checking the latest-starting window and its predecessor
        j = np.searchsorted(starts, t, side="right") - 1
        for back in (0, 1, 2):
            jj = j - back
            ok = (jj >= 0) & (out[rows] < 0)
            jj_c = np.clip(jj, 0, None)
            hit = ok & (t <= ends[jj_c])
            out[rows[hit]] = ids[jj_c[hit]]
    return out


def event_metrics(scored: pd.DataFrame, windows: pd.DataFrame, alarm_col: str = "is_anomaly") -> dict[str, float]:
    """Event-level P/R/F1 of ``scored`` (series, timestamp, alarm column) against ``windows``.

    Only windows that overlap the scored period of their series count towards recall.
    """
    df = scored[["series", "timestamp", alarm_col]].copy()
    df["series"] = df["series"].astype(str)
    df["timestamp"] = pd.to_datetime(df["timestamp"]).astype("datetime64[ns]")
    df = df.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    alarm = df[alarm_col].fillna(False).astype(bool).to_numpy()
    wid = in_window(df, windows)
    new_series = df["series"].ne(df["series"].shift()).to_numpy()
    run_start = alarm & (new_series | ~np.r_[False, alarm[:-1]])
    run_id = np.cumsum(run_start)
    runs = pd.DataFrame({"run": run_id[alarm], "hit": wid[alarm] >= 0})
    per_run = runs.groupby("run")["hit"].any()
    n_runs = float(len(per_run))
    tp_runs = float(per_run.sum())
    # windows eligible: overlap the scored span of their series
    if windows is not None and len(windows):
        w = windows.reset_index(drop=True)
        span = df.groupby("series")["timestamp"].agg(["min", "max"])
        ws = w["series"].astype(str)
        lo = ws.map(span["min"])
        hi = ws.map(span["max"])
        eligible = (pd.to_datetime(w["end"]) >= lo) & (pd.to_datetime(w["start"]) <= hi)
        n_windows = float(eligible.sum())
        found_ids = set(np.unique(wid[alarm & (wid >= 0)]).tolist())
        found = float(sum(1 for i in np.flatnonzero(eligible.to_numpy()) if i in found_ids))
    else:
        n_windows, found = 0.0, 0.0
    p = tp_runs / n_runs if n_runs else 0.0
    r = found / n_windows if n_windows else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "alarm_runs": n_runs,
        "true_runs": tp_runs,
        "windows": n_windows,
        "found": found,
    }


def zscore_baseline(frame: pd.DataFrame, window: int = 30, k: float = 3.0) -> np.ndarray:
    """Plain rolling 3-sigma: |value - mean of the previous `window` points| > k * their std."""
    df = frame[["series", "timestamp", "value"]].copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df = df.sort_values(["series", "timestamp"], kind="stable")
    g = df.groupby("series", sort=False)["value"]
    prev = g.shift(1)
    mean = prev.groupby(df["series"]).rolling(window, min_periods=max(5, window // 3)).mean()
    std = prev.groupby(df["series"]).rolling(window, min_periods=max(5, window // 3)).std()
    mean = mean.reset_index(level=0, drop=True).reindex(df.index)
    std = std.reset_index(level=0, drop=True).reindex(df.index)
    z = (df["value"] - mean) / std.replace(0, np.nan)
    alarm = (z.abs() > k).fillna(False)
    return alarm.reindex(frame.index).to_numpy(dtype=bool)


def iforest_baseline(frame: pd.DataFrame, train_mask: np.ndarray, random_state: int = 0) -> np.ndarray:
    """Per-series IsolationForest on (value, change from previous), fitted on the history part."""
    df = frame[["series", "timestamp", "value"]].copy()
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["train"] = np.asarray(train_mask, dtype=bool)
    df = df.sort_values(["series", "timestamp"], kind="stable")
    df["diff"] = df.groupby("series", sort=False)["value"].diff()
    out = pd.Series(False, index=df.index)
    for _, g in df.groupby("series", sort=False):
        X = g[["value", "diff"]].fillna(0.0).to_numpy()
        tr = g["train"].to_numpy()
        if tr.sum() < 10:
            continue
        model = IsolationForest(n_estimators=100, contamination="auto", random_state=random_state)
        model.fit(X[tr])
        pred = model.predict(X) == -1
        out.loc[g.index] = pred
    return out.reindex(frame.index).to_numpy(dtype=bool)
