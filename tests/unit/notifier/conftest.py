"""Scores for the notifier's and the report's unit tests (no AWS): frames for the report, and the same
rows as the notifier reads them from Parquet (pyarrow, no pandas) for the digest and the alert memory."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pytest

from dqad_notifier.scores import ScoredPoint, read_points


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


@pytest.fixture
def points() -> Callable[..., list[ScoredPoint]]:
    """Like ``scores``, but as the notifier reads them: through an Arrow table, as from scores.parquet."""

    def make(spec: list[tuple], ts: str = "2026-11-02 02:16:07") -> list[ScoredPoint]:
        return read_points(pa.Table.from_pandas(_scores(spec, ts), preserve_index=False))

    return make
