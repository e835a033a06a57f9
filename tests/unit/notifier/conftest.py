"""Scores frames for the notifier's and the report's unit tests (no AWS)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest


def _scores(points: list[tuple], ts: str = "2026-11-02 02:16:07") -> pd.DataFrame:
    """``points``: (table, metric, value, low, high, severity) with severity "" for a normal point."""
    rows = [
        {
            "series": f"{t}/{m}",
            "group": t,
            "timestamp": pd.Timestamp(ts),
            "value": float(v),
            "score": 0.9 if sev else 0.05,
            "is_anomaly": bool(sev),
            "severity": sev,
            "expected_low": float(lo),
            "expected_high": float(hi),
            "reasons": f"{m} out of range" if sev else "",
        }
        for t, m, v, lo, hi, sev in points
    ]
    frame = pd.DataFrame(rows)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


@pytest.fixture
def scores() -> Callable[..., pd.DataFrame]:
    return _scores
