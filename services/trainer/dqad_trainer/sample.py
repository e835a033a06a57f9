"""What the training job trains on: every series with a labelled anomaly, a stratified sample of the rest.

A run of any size trains on one Processing instance in bounded memory (docs/architecture.md §12):
the job's input is every part of the labelled history (one file, or one per shard), read twice,
column by column: first the series, their rows and whether any row is a labelled anomaly (two small
columns), then only the rows of the series chosen. Above ``sample_rows`` rows:

* every series with at least one labelled anomaly is kept whole (labels are what the supervised
  candidates and the label-aware threshold learn from, and they are rare);
* the other series are sampled per stratum of like length (log2 of their rows: cadence and age),
  each stratum in proportion to its share, by a stable hash of the series name: the same data
  samples the same series however it is sharded, in whichever order the parts are read.

Rows are then ordered by series and time, so the training input does not depend on how the
history was split into files.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS_ENV = "DQAD_TRAIN_SAMPLE_ROWS"
DEFAULT_SAMPLE_ROWS = 1_000_000


def sample_rows() -> int:
    raw = os.environ.get(SAMPLE_ROWS_ENV, "")
    return max(1, int(raw)) if raw.strip().isdigit() else DEFAULT_SAMPLE_ROWS


def _rank(series: str) -> float:
    """A stable pseudo-random number in [0, 1) per series name."""
    return int.from_bytes(hashlib.blake2b(series.encode(), digest_size=8).digest(), "big") / 2**64


def choose_series(stats: pd.DataFrame, budget_rows: int) -> tuple[set[str] | None, dict[str, Any]]:
    """The series to train on (None: all of them), from per-series ``rows`` and ``anomalous``."""
    import numpy as np

    total = int(stats["rows"].sum())
    info: dict[str, Any] = {"series": len(stats), "rows": total}
    if total <= budget_rows:
        return None, {**info, "sampled": False}
    anomalous = stats[stats["anomalous"]]
    rest = stats[~stats["anomalous"]]
    room = max(0, budget_rows - int(anomalous["rows"].sum()))
    fraction = min(1.0, room / max(int(rest["rows"].sum()), 1))
    keep = set(anomalous["series"])
    strata = np.floor(np.log2(rest["rows"].clip(lower=1).to_numpy()))
    ranks = np.fromiter((_rank(s) for s in rest["series"]), dtype=np.float64, count=len(rest))
    frame = rest.assign(stratum=strata, rank=ranks)
    for _, members in frame.groupby("stratum", sort=True):
        take = round(fraction * len(members))
        keep.update(members.nsmallest(take, "rank")["series"])
    info.update(sampled=True, kept_series=len(keep), anomalous_series=len(anomalous))
    return keep, info


def read_training_data(data_dir: Path, budget_rows: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The labelled rows the job trains on (see the module docstring) and what was sampled."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(p for p in data_dir.rglob("*.parquet") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no Parquet file under {data_dir}")
    parts = []
    for path in files:
        table = pq.read_table(path, columns=["series", "label"])
        parts.append(table.group_by("series").aggregate([("label", "max"), ("label", "count")]))
    stats = pa.concat_tables(parts).to_pandas()
    stats = stats.groupby("series", as_index=False).agg(rows=("label_count", "sum"), top=("label_max", "max"))
    stats["anomalous"] = stats["top"] == 1
    keep, info = choose_series(stats, budget_rows)
    wanted = None if keep is None else pa.array(sorted(keep), type=pa.string())
    frames = []
    for path in files:
        table = pq.read_table(path)
        if wanted is not None:
            table = table.filter(pc.is_in(table.column("series").cast(pa.string()), value_set=wanted))
        frames.append(table)
    labeled = pa.concat_tables(frames, promote_options="default").to_pandas()
    labeled = labeled.sort_values(["series", "timestamp"], kind="stable", ignore_index=True)
    info["trained_rows"] = len(labeled)
    return labeled, info
