"""The scorer and the features give exactly the stored golden values (see scoring_golden)."""

from __future__ import annotations

import pandas as pd
import pytest

from .scoring_golden import DATA, full_features, scored


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return pd.read_parquet(DATA / "golden_labels.parquet")


@pytest.mark.parametrize("case", ["many", "one"])
def test_scores_and_features_match_golden(case: str, labels: pd.DataFrame) -> None:
    expected = pd.read_parquet(DATA / f"golden_scores_{case}.parquet")
    got = scored(case, labels)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_dtype=False)


def test_full_features_match_golden(labels: pd.DataFrame) -> None:
    expected = pd.read_parquet(DATA / "golden_features.parquet")
    pd.testing.assert_frame_equal(full_features(labels), expected, check_exact=True)
