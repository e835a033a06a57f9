"""Labeler: attach "truth" labels to the history (human feedback > seasonal rules > consensus).

A sharded run (docs/architecture.md §12) brings one message per shard: each labels its shard's
history into its own part, and the last shard to complete publishes the one DatasetLabeled that
lists every part (:func:`dqad.shard_join.complete`).
"""

from __future__ import annotations

from collections import Counter

from dqad.contract import DataRef, DatasetFetched, DatasetLabeled, ShardFiles
from dqad.detect.config import LabelerConfig
from dqad.detect.labeling import label_history
from dqad.feedback import read_labels
from dqad.shards import part_uri, parts_ref
from dqad.stage import PermanentError, StageRuntime


def label(rt: StageRuntime, detail: DatasetFetched) -> DatasetLabeled | None:
    try:
        ds = rt.catalog.get(detail.dataset)
        cfg = LabelerConfig.from_dict(ds.stage_settings("labeler"))
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    history = rt.storage.read_parquet(detail.history)
    feedback = read_labels(rt.storage, ds.name)
    labeled = label_history(history, feedback if len(feedback) else None, cfg)
    del history
    counts = {str(k): int(v) for k, v in labeled.loc[labeled["label"] == 1, "label_source"].value_counts().items()}
    prefix = rt.run_prefix(ds.name, detail.run_id)
    shard = detail.shard
    uri = f"{prefix}/labeled.parquet" if shard is None else part_uri(prefix, "labeled", shard.index)
    ref = rt.storage.write_parquet(uri, labeled)
    del labeled
    if shard is None:
        event = DatasetLabeled(
            run_id=detail.run_id,
            dataset=ds.name,
            labeled=ref,
            new=detail.new,
            label_counts=counts,
            window=detail.window,
        )
        rt.publisher.publish(event)
        return event

    from dqad.shard_join import complete

    def assemble(results: list[dict]) -> None:
        labeled_parts = [DataRef.model_validate(r["labeled"]) for r in results]
        new_parts = [DataRef.model_validate(r["new"]) for r in results]
        total: Counter[str] = Counter()
        for r in results:
            total.update(r["counts"])
        rt.publisher.publish(
            DatasetLabeled(
                run_id=detail.run_id,
                dataset=ds.name,
                labeled=parts_ref(prefix, "labeled", labeled_parts),
                new=parts_ref(prefix, "new", new_parts),
                label_counts=dict(total),
                window=detail.window,
                shards=tuple(
                    ShardFiles(index=i, labeled=lab, new=new)
                    for i, (lab, new) in enumerate(zip(labeled_parts, new_parts, strict=True))
                ),
            )
        )

    result = {"labeled": ref.model_dump(mode="json"), "new": detail.new.model_dump(mode="json"), "counts": counts}
    complete(rt, detail, shard, result, assemble)
    return None
