"""Small hand-made canonical frames for the detection-core tests (fast, deterministic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_loads(days: int = 120, tables: int = 2, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    """Daily loads: row_count / distinct_count / sum_amount per table, weekly cycle, small noise."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=days, freq="D") + pd.Timedelta(hours=3)
    rows = []
    for t in range(tables):
        table = f"sales.t{t}"
        level = 10_000 * (t + 1) * np.where(ts.day_of_week >= 5, 0.5, 1.0)
        noise = np.exp(rng.normal(0, 0.02, days))
        rc = level * noise
        for metric, vals in (
            ("row_count", rc),
            ("distinct_count", rc * 0.6 * np.exp(rng.normal(0, 0.005, days))),
            ("sum_amount", rc * 25.0 * np.exp(rng.normal(0, 0.01, days))),
        ):
            rows.append(pd.DataFrame({
                "series": f"{table}/{metric}", "group": table, "timestamp": ts, "value": vals,
                "table_name": table, "metric_name": metric,
            }))
    return pd.concat(rows, ignore_index=True)


@pytest.fixture
def loads_factory():
    """The frame factory (a fixture, so test modules need not import conftest)."""
    return make_loads
