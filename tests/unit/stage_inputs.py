"""Inputs of the labeler and scorer unit tests: a small synthetic dataset stored on the fakes.

One catalog and one way to put a fetched run into storage, so the stage tests under
``tests/unit/<stage>/`` start from the same place the fetcher leaves a run (history + new Parquet).
"""

from __future__ import annotations

from datetime import UTC, timedelta

import pandas as pd

from dqad.contract import DatasetFetched
from dqad.datasets import parse_catalog
from dqad.stage import StageRuntime
from dqad_dev.synth import SynthData, generate
from dqad_fetcher.canonical import to_canonical
from tests.fakes import fake_runtime

DATASET = "unit_dq"
RUN_ID = "20261102T0600-cccccccccccc"
CATALOG = f"""
[datasets.{DATASET}]
keys = ["table_name", "metric_name"]
timestamp = "load_ts"
value = "metric_value"
group = ["table_name"]
[datasets.{DATASET}.trigger]
table_names = ["dq.unit"]
[datasets.{DATASET}.source]
kind = "file"
path = "unused.parquet"
"""


def synthetic(tables: int = 3, days: int = 90, seed: int = 11) -> tuple[SynthData, pd.DataFrame]:
    """Generated metrics and the same rows as the canonical frame the fetcher writes; the last load of
    the first table is empty (an incident the new load must show)."""
    data = generate(tables=tables, days=days, seed=seed, incident_rate=0.03, final_load_incidents=[("empty", 0)])
    return data, to_canonical(data.metrics, parse_catalog(CATALOG).get(DATASET))


def fetched_run(stage: str, frame: pd.DataFrame, catalog: str = CATALOG) -> tuple[StageRuntime, DatasetFetched]:
    """A runtime on the fakes holding ``frame`` as a run's history and new load (each series' last point)."""
    rt = fake_runtime(stage, catalog)
    is_new = frame["timestamp"] == frame.groupby("series")["timestamp"].transform("max")
    prefix = rt.run_prefix(DATASET, RUN_ID)
    history = rt.storage.write_parquet(f"{prefix}/history.parquet", frame[~is_new])
    new = rt.storage.write_parquet(f"{prefix}/new.parquet", frame[is_new])
    end = frame["timestamp"].max().to_pydatetime().replace(tzinfo=UTC)
    start = frame.loc[is_new, "timestamp"].min().to_pydatetime().replace(tzinfo=UTC)
    event = DatasetFetched(
        run_id=RUN_ID,
        dataset=DATASET,
        history=history,
        new=new,
        window={"history_start": end - timedelta(days=365), "new_start": start, "new_end": end},
        load_log_id="log-1",
    )
    return rt, event


