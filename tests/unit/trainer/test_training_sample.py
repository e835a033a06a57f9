"""The training job's input (dqad_trainer.sample): every labelled series, a stratified sample of the rest,
the same whatever the file layout; and the job's instances from the dataset (docs/architecture.md §12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dqad_trainer.runners import JobSpec, SageMakerRunner
from dqad_trainer.sample import choose_series, read_training_data


def labelled(series: int, points: int, anomalous: set[int]) -> pd.DataFrame:
    rows = []
    for s in range(series):
        n = points if s % 3 else points // 4  # two strata of length
        ts = pd.date_range("2026-01-01", periods=n, freq="D")
        label = np.zeros(n, dtype=np.int8)
        if s in anomalous:
            label[n // 2] = 1
        rows.append(pd.DataFrame({"series": f"t{s // 5}/m{s % 5}", "group": f"t{s // 5}", "timestamp": ts,
                                  "value": np.arange(n, dtype=float), "label": label}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def test_below_the_budget_everything_is_kept(tmp_path: Path) -> None:
    frame = labelled(20, 40, {3})
    frame.to_parquet(tmp_path / "labeled.parquet", index=False)
    got, info = read_training_data(tmp_path, budget_rows=10_000)
    assert len(got) == len(frame) and info["sampled"] is False


def test_above_it_every_labelled_series_stays_and_each_stratum_is_sampled_in_proportion(tmp_path: Path) -> None:
    frame = labelled(300, 100, {7, 8, 150, 299})
    frame.to_parquet(tmp_path / "labeled.parquet", index=False)
    budget = len(frame) // 4
    got, info = read_training_data(tmp_path, budget_rows=budget)
    kept = set(got["series"])
    assert {"t1/m2", "t1/m3", "t30/m0", "t59/m4"} <= kept  # the labelled ones, whole
    assert got.groupby("series").size().eq(frame.groupby("series").size()[sorted(kept)]).all()
    assert info["sampled"] and abs(len(got) - budget) < 0.15 * budget
    lengths = frame.groupby("series").size()
    short, long_ = lengths[lengths == 25].index, lengths[lengths == 100].index
    share = len(kept & set(short)) / len(short), len(kept & set(long_)) / len(long_)
    assert abs(share[0] - share[1]) < 0.05, share


def test_the_sample_does_not_depend_on_how_the_history_is_split(tmp_path: Path) -> None:
    frame = labelled(200, 60, {5, 77})
    one, parts = tmp_path / "one", tmp_path / "parts"
    one.mkdir()
    parts.mkdir()
    frame.to_parquet(one / "labeled.parquet", index=False)
    shuffled = frame.sample(frac=1.0, random_state=1)
    for i, chunk in enumerate(np.array_split(shuffled.index.to_numpy(), 3)):
        shuffled.loc[chunk].to_parquet(parts / f"part-{i:04d}.parquet", index=False)
    a, _ = read_training_data(one, budget_rows=4_000)
    b, _ = read_training_data(parts, budget_rows=4_000)
    pd.testing.assert_frame_equal(a, b)


def test_choose_series_keeps_all_when_labelled_series_exceed_the_budget() -> None:
    stats = pd.DataFrame({"series": ["a", "b", "c"], "rows": [100, 100, 100], "anomalous": [True, True, False]})
    keep, info = choose_series(stats, budget_rows=150)
    assert keep == {"a", "b"} and info["anomalous_series"] == 2


def test_the_job_runs_on_the_datasets_instances() -> None:
    spec = JobSpec("dqad-train-r", {"data": "s3://b/runs/d/r/labeled/"}, "s3://b/models/d/v", {},
                   instance_type="ml.m5.4xlarge", instance_count=2)  # fmt: skip
    request = SageMakerRunner(None, "img", "arn:aws:iam::1:role/r", "ml.m5.xlarge").request(spec)
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceType"] == "ml.m5.4xlarge"
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    default = SageMakerRunner(None, "img", "arn:aws:iam::1:role/r", "ml.m5.xlarge").request(
        JobSpec("dqad-train-r", {"data": "s3://b/x.parquet"}, "s3://b/m", {})
    )
    assert default["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30
    }  # fmt: skip
