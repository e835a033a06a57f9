"""Labeler: attach "truth" labels to the history (human feedback > seasonal rules > consensus)."""

from __future__ import annotations

from dqad.contract import DatasetFetched, DatasetLabeled
from dqad.detect.config import LabelerConfig
from dqad.detect.labeling import label_history
from dqad.feedback import read_labels
from dqad.stage import PermanentError, StageRuntime


def label(rt: StageRuntime, detail: DatasetFetched) -> DatasetLabeled:
    try:
        ds = rt.catalog.get(detail.dataset)
        cfg = LabelerConfig.from_dict(ds.stage_settings("labeler"))
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    history = rt.storage.read_parquet(detail.history)
    feedback = read_labels(rt.storage, ds.name)
    labeled = label_history(history, feedback if len(feedback) else None, cfg)
    counts = labeled.loc[labeled["label"] == 1, "label_source"].value_counts()
    ref = rt.storage.write_parquet(f"{rt.run_prefix(ds.name, detail.run_id)}/labeled.parquet", labeled)
    event = DatasetLabeled(
        run_id=detail.run_id,
        dataset=ds.name,
        labeled=ref,
        new=detail.new,
        label_counts={str(k): int(v) for k, v in counts.items()},
        window=detail.window,
    )
    rt.publisher.publish(event)
    return event
