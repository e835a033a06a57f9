"""The peers' methods flag an obvious spike and stay quiet on a flat series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad_dev.peers import deequ_online_normal, elementary_zscore

PEERS = {
    "elementary": elementary_zscore,
    "elementary_dow": lambda f: elementary_zscore(f, seasonality="day_of_week"),
    "deequ": deequ_online_normal,
}


def _frame() -> tuple[pd.DataFrame, int]:
    rng = np.random.default_rng(0)
    n = 120
    ts = pd.date_range("2026-01-01 03:00", periods=n, freq="D")
    noisy = 1000 + rng.normal(0, 10, n)
    spike = 100
    noisy[spike] = 3000
    flat = np.full(n, 50.0)
    f = pd.concat([
        pd.DataFrame({"series": "t/noisy", "timestamp": ts, "value": noisy}),
        pd.DataFrame({"series": "t/flat", "timestamp": ts, "value": flat}),
    ], ignore_index=True)
    return f.sample(frac=1.0, random_state=1), spike  # row order must not matter


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_flags_an_obvious_spike_and_not_a_flat_series(name: str) -> None:
    f, spike = _frame()
    alarm = pd.Series(PEERS[name](f), index=f.index)
    noisy = f["series"] == "t/noisy"
    at_spike = noisy & (f["timestamp"] == f.loc[noisy, "timestamp"].min() + pd.Timedelta(days=spike))
    assert alarm[at_spike].all()
    assert not alarm[f["series"] == "t/flat"].any()
    assert alarm[noisy].sum() <= 4  # 3 sigma on 120 gaussian points: a few at most


def test_elementary_rejects_an_unknown_seasonality() -> None:
    with pytest.raises(ValueError, match="seasonality"):
        elementary_zscore(_frame()[0], seasonality="hour")
