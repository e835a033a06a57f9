"""The scorer's shortcuts give the numbers of the plain computations they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig
from dqad.detect.calendar_effects import _occurrence_stats, _occurrence_stats_at
from dqad.detect.features import compute
from dqad.detect.vectorised import normalise, window_quantiles


@pytest.mark.parametrize("seed", range(4))
def test_window_quantiles_equal_pandas_rolling(seed: int) -> None:
    """Every min_periods, gaps and ties: the windows skipped for too few values are NaN in pandas too."""
    rng = np.random.default_rng(seed)
    qs = [0.5, 0.25, 0.75, 0.05, 0.95]
    for _ in range(60):
        n, w = int(rng.integers(20, 300)), int(rng.integers(1, 12))
        buf = rng.normal(size=n)
        buf[rng.random(n) < rng.random()] = np.nan
        if rng.random() < 0.5:
            buf = np.round(buf, 1)  # ties
        buf[:w] = np.nan  # a Padded buffer starts with padding
        ends = np.sort(rng.choice(np.arange(w - 1, n), size=int(rng.integers(1, n - w + 1)), replace=False))
        min_periods = int(rng.integers(0, w + 1))
        outs, counts = window_quantiles(buf, ends, w, qs, min_periods=min_periods, chunk=int(rng.integers(1, 64)))
        rolling = pd.Series(buf).rolling(w, min_periods=min_periods)
        for q, out in zip(qs, outs, strict=True):
            expected = (rolling.median() if q == 0.5 else rolling.quantile(q)).to_numpy()[ends]
            np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(counts, pd.Series(buf).rolling(w, min_periods=0).count().to_numpy()[ends])


@pytest.mark.parametrize("k", [1, 3, 6])
def test_occurrence_stats_at_the_asked_rows_only(k: int) -> None:
    rng = np.random.default_rng(k)
    for _ in range(50):
        n = int(rng.integers(1, 200))
        codes = np.sort(rng.integers(0, 5, n))
        ratios = np.round(rng.normal(0, 0.3, n), 1)
        ratios[rng.random(n) < rng.random()] = np.nan
        at = rng.integers(0, n, int(rng.integers(1, 40)))
        whole = _occurrence_stats(codes, ratios, k, centred=False).take(at)
        for got, expected in zip(_occurrence_stats_at(codes, ratios, k, at), whole, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_sorted_categorical_names_stand_for_strings(loads_factory) -> None:
    """The scorer hands series and group over as Categoricals of sorted names: normalise keeps them
    as they are, and the features are those of the strings."""
    df = loads_factory(days=90, tables=3, seed=5)
    df = df.sample(frac=1.0, random_state=0)  # not in name order
    df["timestamp"] = df["timestamp"].astype("datetime64[ns]")
    coded = df.copy()
    for c in ("series", "group"):
        coded[c] = pd.Categorical(df[c], categories=sorted(df[c].unique()))
    assert normalise(coded, copy=False) is coded
    targets = (df["timestamp"] >= df["timestamp"].max() - pd.Timedelta(days=3)).to_numpy()
    cfg = DetectorConfig()
    plain = compute(df, cfg, targets=targets)
    fast = compute(coded, cfg, targets=targets)
    pd.testing.assert_frame_equal(fast.features, plain.features, check_exact=True)
    pd.testing.assert_frame_equal(fast.aux, plain.aux, check_exact=True)


def test_unsorted_categories_are_normalised_to_strings(loads_factory) -> None:
    df = loads_factory(days=10, tables=2)
    df["series"] = pd.Categorical(df["series"], categories=sorted(df["series"].unique(), reverse=True))
    out = normalise(df, copy=False)
    assert out is not df and out["series"].dtype == pd.Series([], dtype=str).dtype


def test_score_new_gives_strings_for_categorical_names(loads_factory) -> None:
    from dqad.detect import LabelerConfig, label_history, score_new, train_candidates

    df = loads_factory(days=80, tables=2, seed=1)
    df["timestamp"] = df["timestamp"].astype("datetime64[ns]")
    cut = df["timestamp"].max() - pd.Timedelta(days=2)
    history, new = df[df["timestamp"] < cut], df[df["timestamp"] >= cut]
    bundle = train_candidates(
        label_history(history, None, LabelerConfig()), DetectorConfig(n_estimators=5, cv_folds=2, min_positive=1)
    ).bundle
    coded = new.copy()
    for c in ("series", "group"):
        coded[c] = pd.Categorical(new[c], categories=sorted(df[c].unique()))
    pd.testing.assert_frame_equal(score_new(bundle, history, coded), score_new(bundle, history, new), check_exact=True)
