"""The scorer's block-wise pass gives exactly what one pass over every new row gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, label_history, score_new, train_candidates
from dqad.detect.scoring import _components, expected_range

FAST = DetectorConfig(n_estimators=10, cv_folds=2, min_positive=5)


@pytest.fixture(scope="module")
def scored_inputs():
    from tests.unit.detect.conftest import make_loads

    df = make_loads(days=110, tables=6, seed=3)
    df.loc[df.sample(40, random_state=1).index, "value"] *= 0.1  # incidents to label and to score
    labeled = label_history(df, None, LabelerConfig())
    res = train_candidates(labeled, FAST)
    est = getattr(res.bundle.estimator, "n_jobs", None)
    if est is not None:  # one thread: the forest then sums its trees in one fixed order
        res.bundle.estimator.n_jobs = 1
    cut = pd.Timestamp("2024-03-25")
    history = labeled[labeled["timestamp"] < cut]
    # new rows shuffled (blocks then gather scattered rows) with a few loads whose values jump
    new = df[df["timestamp"] >= cut].sample(frac=1.0, random_state=2)
    new.loc[new.index[:15], "value"] *= 4.0
    return res.bundle, history, new


@pytest.mark.parametrize("block_rows", [1, 200, 700])
def test_blocks_give_the_whole_frame_result(scored_inputs, block_rows: int) -> None:
    bundle, history, new = scored_inputs
    whole = score_new(bundle, history, new, block_rows=10**9)
    blocks = score_new(bundle, history, new, block_rows=block_rows)
    assert whole["is_anomaly"].any() and (whole["reasons"] != "").any()
    pd.testing.assert_frame_equal(blocks, whole, check_exact=True)


def test_components_join_series_that_share_a_group() -> None:
    # s2 moves from group b (history) to group a (new): a, b and their series form one component
    tail_s = pd.Series(["s1", "s2", "s3", "s4"])
    tail_g = pd.Series(["a", "b", "b", "c"])
    new_s = pd.Series(["s1", "s2", "s4", "s5"])
    new_g = pd.Series(["a", "a", "c", "d"])
    (ct, cn), _ = _components([tail_s, new_s], [tail_g, new_g])
    assert ct[0] == ct[1] == ct[2] == cn[0] == cn[1]
    assert ct[3] == cn[2] != ct[0]
    assert cn[3] not in {ct[0], ct[3]}


def test_empty_new_load(scored_inputs) -> None:
    bundle, history, new = scored_inputs
    out = score_new(bundle, history, new.iloc[:0])
    assert len(out) == 0 and "reasons" in out.columns


def _as_table(frame: pd.DataFrame, dictionary: bool = False):
    """``frame`` as the scorer stage reads it: Arrow, strings dictionary-encoded if asked."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if dictionary:
        for i, f in enumerate(table.schema):
            if pa.types.is_large_string(f.type) or pa.types.is_string(f.type):
                table = table.set_column(i, f.name, table.column(i).dictionary_encode())
    return table


@pytest.mark.parametrize("dictionary", [False, True])
@pytest.mark.parametrize("block_rows", [300, 10**9])
def test_score_table_gives_score_new(scored_inputs, dictionary: bool, block_rows: int) -> None:
    from dqad.detect.scoring import _arrow_ready, _ns_timestamps, score_table

    bundle, history, new = scored_inputs
    want = score_new(bundle, history, new, block_rows=block_rows).reset_index(drop=True)
    hist_t, new_t = _as_table(history, dictionary), _as_table(new, dictionary)
    # the Arrow path itself, not score_new behind it (timestamps of any tz-naive unit qualify)
    assert _arrow_ready(_ns_timestamps(hist_t)) and _arrow_ready(_ns_timestamps(new_t))
    got = score_table(bundle, hist_t, new_t, block_rows=block_rows).to_pandas()
    assert str(got["timestamp"].dtype) == "datetime64[ns]"  # the Arrow path reads nanoseconds
    got["timestamp"] = got["timestamp"].astype(want["timestamp"].dtype)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_score_table_normalises_other_tables(scored_inputs) -> None:
    """Tables that are not canonical (here: time-zone-aware timestamps, no group) take score_new's path."""
    from dqad.detect.scoring import score_table

    bundle, history, new = scored_inputs
    want = score_new(bundle, history, new).reset_index(drop=True)
    aware = new.assign(timestamp=new["timestamp"].dt.tz_localize("UTC"))
    got = score_table(bundle, _as_table(history, True), _as_table(aware)).to_pandas()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    h, n = history.drop(columns="group"), new.drop(columns="group")
    pd.testing.assert_frame_equal(
        score_table(bundle, _as_table(h), _as_table(n)).to_pandas(),
        score_new(bundle, h, n).reset_index(drop=True),
        check_exact=True,
    )


def test_feature_sink_zeroes_what_no_model_could_take() -> None:
    import numpy as np

    from dqad.detect.features import _Sink

    sink = _Sink(keep=())
    x = np.array([np.nan, np.inf, -np.inf, 1e39, -1e39, 1.5, -0.0, 3e38])
    sink["plain"] = x
    want = np.array([0, 0, 0, 0, 0, 1.5, -0.0, 3e38], dtype=np.float32)  # beyond float32's range: zeroed too
    np.testing.assert_array_equal(sink["plain"], want)
    assert sink["plain"].dtype == np.float32


def test_read_table_strings_as_dictionary(tmp_path) -> None:
    import pyarrow as pa

    from dqad.storage import Storage

    frame = pd.DataFrame({"series": ["a/x", "b/y", "a/x"], "value": [1.0, 2.0, 3.0]})
    storage = Storage(None, "")
    ref = storage.write_parquet(str(tmp_path / "f.parquet"), frame)
    table = storage.read_table(ref, strings_as_dictionary=True)
    assert pa.types.is_dictionary(table.schema.field("series").type)
    assert table["series"].to_pylist() == ["a/x", "b/y", "a/x"]
    assert storage.read_table(ref).schema.field("series").type in (pa.string(), pa.large_string())


def test_the_range_shown_never_has_its_low_above_its_high() -> None:
    """A never-negative series whose expected value fell below zero shows [0, 0], not [0, -40]."""
    expected = np.array([100.0, -50.0, -50.0, 5.0])
    scale = np.array([10.0, 2.0, 2.0, 10.0])
    never_negative = np.array([True, True, False, True])
    lo, hi = expected_range(expected, scale, 5.0, never_negative)
    assert lo.tolist() == [50.0, 0.0, -60.0, 0.0]
    assert hi.tolist() == [150.0, 0.0, -40.0, 55.0]
    assert (lo <= hi).all()
