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


def _plain_series_time_order(codes: np.ndarray, ts: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(len(codes)), ts, codes))  # stable by (series, time)


@pytest.mark.parametrize("seed", range(3))
def test_series_time_order_of_runs_equals_a_full_sort(seed: int) -> None:
    """Series in runs (one or several each, in time order or not, ties of time): the sort by (series, time)."""
    from dqad.detect.vectorised import series_time_order

    rng = np.random.default_rng(seed)
    for _ in range(500):
        k = int(rng.integers(1, 8))
        sizes = rng.integers(1, 30, k)
        codes = np.repeat(rng.integers(0, 5, k), sizes)
        kind = rng.integers(0, 3)
        if kind == 0:  # time-ordered runs, ties and overlaps between runs of one series
            ts = np.concatenate([np.sort(rng.integers(0, 50, s)) for s in sizes])
        elif kind == 1:  # history then later loads
            ts = np.concatenate([np.arange(s) + o for s, o in zip(sizes, rng.integers(0, 60, k), strict=True)])
        else:
            ts = rng.integers(0, 50, len(codes))
        ts = ts.astype(np.int64)
        np.testing.assert_array_equal(series_time_order(codes, ts), _plain_series_time_order(codes, ts))


def _plain_tail_positions(codes: np.ndarray, ts: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    """The history rows new points depend on, from a padded buffer of every row's step."""
    from dqad.detect.features import scale_points
    from dqad.detect.vectorised import DAILY_STEP_S, DAY_S, Padded

    order = _plain_series_time_order(codes, ts)
    codes, ts = codes[order], ts[order]
    pad = Padded(codes, 65)
    step = np.r_[np.nan, np.diff(ts) / 1e9]
    step[pad.starts] = np.nan
    last = np.r_[pad.starts[1:], len(codes)] - 1
    med_step = pd.Series(pad.buffer(step)).rolling(64, min_periods=1).median().to_numpy()[pad.pos[last]]
    med_step = np.nan_to_num(med_step, nan=float(DAY_S))
    cycle = np.where(med_step >= DAILY_STEP_S, 7, np.ceil(DAY_S / np.maximum(med_step, 1.0)))
    scale = scale_points(med_step, cfg.scale_window)
    need = np.maximum(max(*cfg.windows, 16), scale) + 2 + (cfg.seasonal_k + 1) * cycle + scale
    need = np.where(med_step < DAILY_STEP_S, need + (cfg.seasonal_k + 1) * 6 * cycle, need)
    from_end = last[pad.gid] - np.arange(len(codes))
    return order[(from_end < need[pad.gid]) | (med_step >= DAILY_STEP_S)[pad.gid]]


@pytest.mark.parametrize("seed", range(3))
def test_history_tail_from_the_runs_of_a_file(seed: int) -> None:
    """Daily, hourly and 5-minute series, jittered, in runs, shuffled or with stray rows: the same rows."""
    from dqad.detect.scoring import _tail_positions, _tail_rows

    cfg = DetectorConfig()
    rng = np.random.default_rng(seed)
    for _ in range(120):
        k = int(rng.integers(1, 7))
        sizes = rng.integers(1, 700, k)
        codes = np.repeat(rng.permutation(20)[:k], sizes)
        steps = [
            rng.choice([300, 3600, 86_400, 7 * 86_400]) + rng.integers(-100, 100, s) * (rng.random() < 0.5)
            for s in sizes
        ]
        ts = np.concatenate([np.cumsum(s) for s in steps]).astype(np.int64) * 10**9
        if rng.random() < 0.2:
            codes = codes[rng.permutation(len(codes))]
        if rng.random() < 0.2:  # a series in two runs
            codes, ts = np.r_[codes, codes[:5]], np.r_[ts, ts[:5] + 1]
        expected = _plain_tail_positions(codes, ts, cfg)
        np.testing.assert_array_equal(_tail_positions(codes, ts, cfg), expected)
        rows = _tail_rows(codes, ts, cfg)
        np.testing.assert_array_equal(np.arange(len(codes)) if rows is None else rows, np.sort(expected))


@pytest.mark.parametrize("seed", range(3))
def test_strided_window_quantiles_equal_pandas_on_every_stride_th_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    qs = [0.5, 0.25, 0.75, 0.05, 0.95]
    for _ in range(60):
        w, stride = int(rng.integers(1, 10)), int(rng.integers(2, 16))
        n = (w - 1) * stride + int(rng.integers(40, 300))
        buf = np.round(rng.normal(size=n), 1)  # ties
        buf[rng.random(n) < rng.random()] = np.nan
        buf[: (w - 1) * stride + 1] = np.nan
        ends = np.sort(rng.choice(np.arange((w - 1) * stride, n), size=int(rng.integers(1, 40)), replace=False))
        min_periods = int(rng.integers(0, w + 1))
        outs, counts = window_quantiles(
            buf, ends, w, qs, min_periods=min_periods, chunk=int(rng.integers(1, 64)), stride=stride
        )
        for i, e in enumerate(ends):
            rolling = pd.Series(buf[e - (w - 1) * stride : e + 1 : stride]).rolling(w, min_periods=min_periods)
            assert counts[i] == rolling.count().iloc[-1]
            for q, out in zip(qs, outs, strict=True):
                expected = (rolling.median() if q == 0.5 else rolling.quantile(q)).iloc[-1]
                np.testing.assert_array_equal(out[i], expected)


def _daily_without_gaps(rng: np.random.Generator, series: int) -> pd.DataFrame:
    """Daily series of many lengths (one load to a year) without a missing day: weekly and
    fortnightly rhythms, zeros, NaN, ties, month ends and holidays on the way."""
    parts = []
    for s in range(series):
        days = int(rng.choice([1, 2, 5, 15, 40, 90, 200, 370]))
        ts = pd.date_range(pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 60))), periods=days)
        ts = ts + pd.Timedelta(hours=int(rng.integers(0, 24)))
        level = 1000.0 * (1 + s) * np.where(ts.day_of_week >= 5, 0.5, 1.0)
        if rng.random() < 0.3:  # a fortnightly run
            level = level * np.where(((ts.day_of_year // 7) % 2 == 0) & (ts.day_of_week == 4), 2.0, 1.0)
        value = np.round(level * np.exp(rng.normal(0, 0.05, days)), int(rng.integers(-2, 2)))
        value[rng.random(days) < rng.random() * 0.2] = np.nan
        if rng.random() < 0.3:
            value[rng.random(days) < 0.7] = 0.0  # mostly empty loads
        group = f"t{s // 3}"
        parts.append(pd.DataFrame({"series": f"{group}/m{s % 3}", "group": group, "timestamp": ts, "value": value}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("seed", range(4))
def test_weekly_slots_read_in_place_equal_the_sort_by_slot(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Daily series without gaps: the features read every seventh row equal those of the sort by slot,
    for one new load per series, a run of them, or scattered targets (rows between them not scored)."""
    from datetime import date

    import dqad.detect.features as features

    rng = np.random.default_rng(seed)
    df = _daily_without_gaps(rng, 12)
    cfg = DetectorConfig(holidays=(date(2024, 1, 1), date(2024, 3, 29), date(2024, 5, 27), date(2024, 12, 25)))
    labels = (rng.random(len(df)) < 0.05).astype(float)
    assert features._weekly_without_gaps(features._layout(df, cfg, None, None), cfg)
    last = df.groupby("series").cumcount(ascending=False).to_numpy()
    for targets in (last == 0, last < 3, rng.random(len(df)) < 0.1, None):
        fast = compute(df, cfg, labels, targets=targets)
        with monkeypatch.context() as m:
            m.setattr(features, "_weekly_without_gaps", lambda lay, cfg: False)
            plain = compute(df, cfg, labels, targets=targets)
        pd.testing.assert_frame_equal(fast.features, plain.features, check_exact=True)
        pd.testing.assert_frame_equal(fast.aux, plain.aux, check_exact=True)


def test_weekly_slots_need_every_day() -> None:
    """A missing day, a sub-daily series or day-of-month slots keep the sort by slot."""
    import dqad.detect.features as features

    df = _daily_without_gaps(np.random.default_rng(0), 4)
    cfg = DetectorConfig()

    def weekly(frame: pd.DataFrame, config: DetectorConfig = cfg) -> bool:
        return features._weekly_without_gaps(features._layout(frame, config, None, None), config)

    assert weekly(df)
    assert not weekly(df.drop(index=df.groupby("series").head(100).index[50]))
    assert not weekly(df, DetectorConfig(slots=("dom",)))
    hourly = df.iloc[:48].assign(timestamp=pd.date_range("2024-01-01", periods=48, freq="h"))
    assert not weekly(pd.concat([df, hourly.assign(series="h/x", group="h")], ignore_index=True))


@pytest.mark.parametrize("seed", range(3))
def test_prefers_rhythm_of_periodic_slots_equals_the_sort_by_slot(seed: int) -> None:
    from dqad.detect.vectorised import prefers_rhythm

    rng = np.random.default_rng(seed)
    for _ in range(100):
        sizes = rng.integers(1, 80, int(rng.integers(1, 6)))
        codes = np.repeat(np.arange(len(sizes)), sizes)
        slots = np.concatenate([(np.arange(s) + rng.integers(0, 7)) % 7 for s in sizes])
        ordinary = np.round(rng.normal(0, 1, len(codes)), 1)
        rhythm = np.round(rng.normal(0, 1, len(codes)) * rng.choice([0.3, 1.0], len(codes)), 1)
        ordinary[rng.random(len(codes)) < 0.2] = np.nan
        rhythm[rng.random(len(codes)) < 0.2] = np.nan
        np.testing.assert_array_equal(
            prefers_rhythm(codes, slots, ordinary, rhythm, period=7), prefers_rhythm(codes, slots, ordinary, rhythm)
        )


@pytest.mark.parametrize("consecutive", [True, False])
def test_block_frame_from_arrow_columns_equals_the_pandas_concatenation(consecutive: bool) -> None:
    """History rows (labels with nulls, NaN values) and new rows: the frame and labels of pd.concat."""
    import pyarrow as pa

    from dqad.detect.scoring import _UNREAD_HISTORY, _arrow_block, _arrow_codes, _block_frame, _Coded, _take

    rng = np.random.default_rng(int(consecutive))
    n, m = 400, 12
    names = np.array([f"t{i % 4}/m{i}" for i in range(m)])

    def table(rows: int, labelled: bool) -> pa.Table:
        s = rng.integers(0, m, rows)
        value = rng.normal(size=rows)
        value[rng.random(rows) < 0.1] = np.nan
        cols = {
            "series": pa.array(names[s]).dictionary_encode(),
            "group": pa.array([x.split("/")[0] for x in names[s]]).dictionary_encode(),
            "timestamp": pa.array(rng.integers(0, 10**15, rows).astype("datetime64[ns]")),
            "value": pa.array(value),
        }
        if labelled:
            cols["label"] = pa.array(rng.integers(0, 2, rows), type=pa.int8(), mask=rng.random(rows) < 0.1)
            cols["label_source"] = pa.array(["rule"] * rows)
        return pa.table(cols)

    hist, new = table(n, True), table(m, False)
    (s_new, s_hist), s_names = _arrow_codes([new["series"], hist["series"]])
    (g_new, g_hist), g_names = _arrow_codes([new["group"], hist["group"]])
    s_dtype, g_dtype = pd.CategoricalDtype(s_names), pd.CategoricalDtype(g_names)
    coded_hist, coded_new = _Coded(s_hist, g_hist, s_dtype, g_dtype), _Coded(s_new, g_new, s_dtype, g_dtype)
    rows = np.arange(50, 350) if consecutive else np.sort(rng.choice(n, 200, replace=False))
    new_n = _take(new, np.arange(m), coded_new)
    fast = _arrow_block(hist, rows, coded_hist, new_n)
    plain = _block_frame(_take(hist, rows, coded_hist, drop=_UNREAD_HISTORY), new_n)
    assert fast is not None
    pd.testing.assert_frame_equal(fast.frame, plain.frame, check_exact=True)
    np.testing.assert_array_equal(fast.labels, plain.labels)
    assert fast.n_tail == plain.n_tail == len(rows)
    # a key column the features hash as strings: pandas' rules
    assert _arrow_block(hist.append_column("table_name", pa.array(["x"] * n)), rows, coded_hist, new_n) is None


def test_rows_within_reach_of_the_next_target() -> None:
    """One range per target equals the pass over every row that looks for the next target."""
    from dqad.detect.features import _within_before

    def plain(gid: np.ndarray, tgt: np.ndarray, width: int | np.ndarray) -> np.ndarray:
        n = len(gid)
        at = np.arange(n)
        nxt = np.minimum.accumulate(np.where(tgt, at, n)[::-1])[::-1] if n else at
        has = nxt < n
        out = np.zeros(n, dtype=bool)
        reach = np.broadcast_to(np.asarray(width, dtype=np.int64), (n,))[nxt[has]]
        out[has] = (gid[nxt[has]] == gid[has]) & (nxt[has] - at[has] <= reach)
        return out

    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(0, 60))
        gid = np.sort(rng.integers(0, 5, n))
        tgt = rng.random(n) < rng.random()
        width = rng.integers(0, 10, n) if rng.random() < 0.5 else int(rng.integers(0, 10))
        np.testing.assert_array_equal(_within_before(gid, tgt, width), plain(gid, tgt, width))


@pytest.mark.parametrize("seed", range(3))
def test_step_seconds_from_each_rows_own_step(seed: int) -> None:
    """Daily, sub-daily and mixed series (ties, jitter): the medians of the padded earlier steps."""
    from dqad.detect.vectorised import DAILY_STEP_S, Padded, step_seconds

    rng = np.random.default_rng(seed)
    for _ in range(100):
        sizes = rng.integers(1, 60, int(rng.integers(1, 5)))
        codes = np.repeat(np.arange(len(sizes)), sizes)
        gaps = rng.choice([300, 3600, 86_400, 90_000], len(codes)) + rng.integers(0, 50, len(codes))
        ts = (np.cumsum(gaps) * 10**9).astype(np.int64)
        pad = Padded(codes, 17)
        t = ts.astype("float64") / 1e9
        buf = pad.buffer(t - pad.shift(t, 1))
        median = pd.Series(buf).rolling(16, min_periods=1).median().to_numpy()[pad.pos]
        np.testing.assert_array_equal(step_seconds(ts, pad), median)
        exact = rng.random(len(codes)) < 0.3
        got = step_seconds(ts, pad, exact=exact)
        short = pd.Series(buf < DAILY_STEP_S).rolling(16, min_periods=1).sum().to_numpy()[pad.pos] > 0
        need = exact | short
        np.testing.assert_array_equal(got[need], median[need])
        np.testing.assert_array_equal(got[~need], buf[pad.pos][~need])


def test_series_codes_of_sorted_categoricals_equal_factorize() -> None:
    from dqad.detect.features import _series_codes

    rng = np.random.default_rng(0)
    names = sorted(f"t{i}/m{j}" for i in range(6) for j in range(3))
    for _ in range(50):
        values = rng.choice(names[: int(rng.integers(1, len(names) + 1))], int(rng.integers(1, 80)))
        coded = pd.Series(pd.Categorical(values, categories=names))
        codes, uniques = _series_codes(coded)
        expected_codes, expected_uniques = pd.factorize(pd.Series(values), sort=True)
        np.testing.assert_array_equal(codes, expected_codes)
        assert list(uniques) == list(expected_uniques)


def test_component_labels_from_the_pairs_runs() -> None:
    """Series linked by shared groups, rows in runs or shuffled: the components of every pair."""
    from dqad.detect.scoring import _component_labels

    rng = np.random.default_rng(1)
    for _ in range(200):
        n_s, n_g = int(rng.integers(1, 30)), int(rng.integers(1, 10))
        group_of = rng.integers(0, n_g, n_s)
        frames = []
        for _ in range(2):
            s = np.repeat(rng.integers(0, n_s, int(rng.integers(0, 10))), rng.integers(1, 6, 1))
            s = s if rng.random() < 0.5 else rng.permutation(s)
            g = np.where(rng.random(len(s)) < 0.1, rng.integers(0, n_g, len(s)), group_of[s])
            frames.append((s.astype(np.int32), g.astype(np.int32)))
        (c0, c1), _ = _component_labels([f[0] for f in frames], [f[1] for f in frames], n_s, n_g)
        # plain: union-find over every row's pair
        parent = list(range(n_s + n_g))

        def find(x: int, parent: list[int] = parent) -> int:
            while parent[x] != x:
                x = parent[x]
            return x

        for s, g in frames:
            for a, b in zip(s.tolist(), g.tolist(), strict=True):
                parent[find(a)] = find(n_s + b)
        for (s, _), c in zip(frames, (c0, c1), strict=True):
            for i in range(len(s)):
                for j in range(len(s)):
                    assert (c[i] == c[j]) == (find(int(s[i])) == find(int(s[j])))
