"""Golden outputs of the scorer and the feature transformer on a varied scenario frame.

The scorer's speed-ups (features computed only where the targets need them) and the feature code's
restructuring must not change a single number: this module builds the same inputs every time (the
scenario corpus of ``dqad_dev.scenarios``, its history labels read from a stored fixture so that a
labeler change does not move them) and computes what the test compares with the stored golden
values. When detection behaviour changes on purpose, regenerate the fixtures:

    .venv/bin/python -m tests.unit.detect.scoring_golden
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dqad.detect import DetectorConfig, LabelerConfig, label_history, score_new
from dqad.detect.features import build_features, compute
from dqad.detect.model import ModelBundle, RobustDetector
from dqad_dev.scenarios import generate_corpus

DATA = Path(__file__).parent / "data"
FAMILIES = ("weekly", "hourly", "multi_daily", "payroll_friday", "quarter_end", "holidays_us", "zero_inflated")
OUTPUTS = ("score", "is_anomaly", "severity", "expected_low", "expected_high", "reasons")
#: the new loads of the "many" case: the last days of the corpus (every cadence has some)
NEW_DAYS = 6


def corpus_frame() -> tuple[pd.DataFrame, DetectorConfig]:
    """The corpus' frame with a group per table, a key column and load-run context columns."""
    corpus = generate_corpus(seed=0, families=FAMILIES)
    frame = corpus.frame.copy()
    frame["group"] = frame["series"].str.rsplit("/", n=1).str[0]
    frame["table_name"] = frame["group"]
    rng = np.random.default_rng(0)
    frame["load_delay_s"] = np.round(rng.lognormal(5, 0.4, len(frame)))
    frame["is_rerun"] = rng.random(len(frame)) < 0.01
    return frame, DetectorConfig(holidays=corpus.holidays)


def split(frame: pd.DataFrame, case: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and new rows: the last ``NEW_DAYS`` days ("many"), or each series' last load ("one")."""
    if case == "many":
        is_new = frame["timestamp"] >= frame["timestamp"].max() - pd.Timedelta(days=NEW_DAYS)
    else:
        is_new = frame["timestamp"] == frame.groupby("series")["timestamp"].transform("max")
    return frame[~is_new].reset_index(drop=True), incidents(frame[is_new].reset_index(drop=True))


def incidents(new: pd.DataFrame) -> pd.DataFrame:
    """New rows with incidents of every kind a reason names: spikes, a missing value, an empty
    load of a whole table, a stale repeat, a late load, a rerun, a missing load."""
    new = new.copy()
    rng = np.random.default_rng(1)
    value = new["value"].to_numpy(dtype=np.float64).copy()
    pick = rng.choice(len(new), size=max(len(new) // 12, 4), replace=False)
    value[pick[0::4]] *= 6.0
    value[pick[1::4]] = np.nan
    value[pick[2::4]] *= 0.1
    late = pick[3::4]
    new.loc[late, "load_delay_s"] = 50_000.0
    new.loc[late, "is_rerun"] = True
    value[late] *= 3.0
    first = new.groupby("group")["timestamp"].transform("min") == new["timestamp"]
    empty = first & (new["group"] == new["group"].iloc[0])
    value[empty.to_numpy()] = 0.0
    groups = new["group"].unique()
    frozen = (new["group"] == groups[min(1, len(groups) - 1)]).to_numpy()
    new["value"] = value
    # a frozen table repeats its first new value (stale from the second new load on)
    new.loc[frozen, "value"] = new.loc[frozen].groupby("series")["value"].transform("first")
    # a missing load: the table's second new load never arrives (a gap before the third)
    loads = new.loc[new["group"] == groups[min(2, len(groups) - 1)], "timestamp"].drop_duplicates().sort_values()
    if len(loads) > 2:
        new = new[~((new["group"] == groups[2]) & (new["timestamp"] == loads.iloc[1]))].reset_index(drop=True)
    return new


def bundle_for(labeled: pd.DataFrame, cfg: DetectorConfig) -> ModelBundle:
    names = list(build_features(labeled.iloc[:50], cfg).columns)
    return ModelBundle(RobustDetector(cfg), names, 0.5, cfg, "now", {}, "robust")


def with_labels(hist: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``hist`` with the stored labels (1 where a (series, timestamp) is listed)."""
    key = pd.MultiIndex.from_frame(hist[["series", "timestamp"]])
    out = hist.copy()
    out["label"] = key.isin(pd.MultiIndex.from_frame(labels[["series", "timestamp"]])).astype(np.int8)
    return out


def scored(case: str, labels: pd.DataFrame) -> pd.DataFrame:
    """The scorer's outputs and the targets' features (``f_`` columns) for ``case``."""
    frame, cfg = corpus_frame()
    hist, new = split(frame, case)
    labeled = with_labels(hist, labels)
    bundle = bundle_for(labeled, cfg)
    out = score_new(bundle, labeled, new)[list(OUTPUTS)].reset_index(drop=True)
    both = pd.concat([labeled, new], ignore_index=True)
    targets = np.arange(len(both)) >= len(labeled)
    lab = np.r_[labeled["label"].to_numpy(dtype=np.float64), np.zeros(len(new))]
    feats = compute(both, cfg, labels=lab, targets=targets).features.reset_index(drop=True)
    return pd.concat([out, feats.add_prefix("f_")], axis=1)


def full_features(labels: pd.DataFrame) -> pd.DataFrame:
    """Every row's features (the trainer's path), every fifth row kept to keep the fixture small."""
    frame, cfg = corpus_frame()
    hist, _ = split(frame, "many")
    labeled = with_labels(hist, labels)
    return build_features(labeled, cfg, labels=labeled["label"]).iloc[::5].reset_index(drop=True)


def main() -> None:
    DATA.mkdir(exist_ok=True)
    frame, cfg = corpus_frame()
    hist, _ = split(frame, "many")
    labeled = label_history(hist[["series", "group", "timestamp", "value"]], None, LabelerConfig(holidays=cfg.holidays))
    labels = labeled.loc[labeled["label"] == 1, ["series", "timestamp"]].reset_index(drop=True)
    labels.to_parquet(DATA / "golden_labels.parquet", index=False)
    for case in ("many", "one"):
        scored(case, labels).to_parquet(DATA / f"golden_scores_{case}.parquet", index=False, compression="zstd")
    full_features(labels).to_parquet(DATA / "golden_features.parquet", index=False, compression="zstd")


if __name__ == "__main__":
    main()
