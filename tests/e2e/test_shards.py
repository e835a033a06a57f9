"""A sharded run on the embedded runtime (docs/architecture.md §12): the same scores as one message,
a failed shard dead-lettered, named, replayed alone, and the run then mailed once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import pytest

from dqad import incidents as inc
from dqad.stage import PermanentError
from dqad.storage import Storage
from dqad.topology import stage
from dqad_dev.cli import replay_in
from dqad_dev.demo import DATASET, demo_catalog, seed_demo_dataset
from dqad_dev.local import LocalCloud
from dqad_dev.run import drive_chain

pytestmark = pytest.mark.slow

TABLES, DAYS = 12, 60  # 12 tables × 5 metrics × 60 days = 3,600 rows
SHARDED = {"max_rows": 1000}  # → 4 shards by load group


@dataclass
class Run:
    cloud: LocalCloud
    storage: Storage
    run_id: str

    def events(self) -> list[str]:
        return sorted(u.rsplit("/", 1)[-1] for u in self.storage.list_uris(self.storage.uri(f"events/{self.run_id}/")))

    def incidents(self) -> list[str]:
        """The run's incidents as named (kind, summary), in a stable order."""
        found = inc.loads(self.storage.get_bytes(self.storage.uri(f"runs/{DATASET}/{self.run_id}/incidents.json")))
        return sorted(f"{i.kind.words}: {i.summary}" for i in found)

    def scores(self) -> pd.DataFrame:
        uri = self.storage.uri(f"runs/{DATASET}/{self.run_id}/scores.parquet")
        frame = self.storage.read_parquet(uri)
        return frame.sort_values(["series", "timestamp"], ignore_index=True)


@contextmanager
def chain(shards: dict | None, prefix: str) -> Iterator[Run]:
    with LocalCloud(prefix) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        demo = seed_demo_dataset(storage, seed=3, tables=TABLES, days=DAYS)
        catalog = demo_catalog(storage.bucket, demo.data.holidays, demo.new_window_hours, shards=shards)
        storage.put_bytes(storage.uri("config/datasets.toml"), catalog.encode())
        [run_id] = cloud.invoke(stage("fetcher"), "aurora", demo.payload)["runs"]
        yield Run(cloud, storage, run_id)


def alerts(cloud: LocalCloud, run_id: str) -> list[dict]:
    """The run's anomaly emails (the alerts topic), as delivered."""
    return [m for m in cloud.inbox() if m["TopicArn"] == cloud.dep.alerts_topic_arn and run_id in m["Subject"]]


def test_a_sharded_run_scores_what_the_unsharded_run_scores() -> None:
    with chain(None, "dqad-one") as one:
        drive_chain(one.cloud, deadline_s=300)
        expected, expected_incidents = one.scores(), one.incidents()
        assert len(alerts(one.cloud, one.run_id)) == 1
    with chain(SHARDED, "dqad-shards") as sharded:
        drive_chain(sharded.cloud, deadline_s=300)
        events = sharded.events()
        fetched = [e for e in events if e.startswith("DatasetFetched-shard")]
        assert len(fetched) == 4, events
        assert [e for e in events if e.startswith("ModelTrained-shard")] == [
            f"ModelTrained-shard{i:04d}.json" for i in range(4)
        ]
        # the joins emit once each: one DatasetLabeled, one AnomaliesScored, one email
        assert {"DatasetLabeled.json", "AnomaliesScored.json", "NotificationSent.json"} <= set(events)
        assert "DatasetFetched.json" not in events and not any("StageFailed" in e for e in events)
        assert len(alerts(sharded.cloud, sharded.run_id)) == 1
        labeled = json.loads(
            sharded.storage.get_bytes(sharded.storage.uri(f"events/{sharded.run_id}/DatasetLabeled.json"))
        )
        assert len(labeled["detail"]["shards"]) == 4 and labeled["detail"]["labeled"]["uri"].endswith("/labeled/")
        assert labeled["detail"]["labeled"]["rows"] == sum(s["labeled"]["rows"] for s in labeled["detail"]["shards"])
        got, got_incidents = sharded.scores(), sharded.incidents()
    assert sharded.run_id == one.run_id
    assert got_incidents == expected_incidents and expected_incidents
    assert expected["is_anomaly"].any()
    pd.testing.assert_frame_equal(got, expected, check_like=True)


def test_a_failed_shard_is_dead_lettered_named_and_replayed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import dqad_labeler.domain as labeler

    real = labeler.label_history
    failing: set[str] = set()

    def label_history(history, feedback, cfg):  # type: ignore[no-untyped-def]
        if failing & set(history["group"]):
            raise PermanentError("the labeler cannot read this shard")
        return real(history, feedback, cfg)

    monkeypatch.setattr(labeler, "label_history", label_history)
    with chain(SHARDED, "dqad-fail") as run:
        run.cloud.pump(only=("fetcher",))
        first = json.loads(run.storage.get_bytes(run.storage.uri(f"events/{run.run_id}/DatasetFetched-shard0002.json")))
        failing.update(run.storage.read_parquet(first["detail"]["history"]["uri"])["group"].unique())
        drive_chain(run.cloud, deadline_s=120)

        # the shard went to the DLQ with its reason, the run's StageFailed names it, nothing went further
        (parked,) = run.cloud.dead_letters("labeler", expect=1)
        assert "cannot read this shard" in parked["MessageAttributes"]["error"]["StringValue"]
        events = run.events()
        assert "StageFailed-labeler-shard0002.json" in events and "DatasetLabeled.json" not in events, events
        failed = json.loads(
            run.storage.get_bytes(run.storage.uri(f"events/{run.run_id}/StageFailed-labeler-shard0002.json"))
        )["detail"]
        assert failed["shard"] == 2 and failed["message"].startswith("shard 2 of 4: ")
        assert failed["input_event"].endswith("/DatasetFetched-shard0002.json")
        operator = [m for m in run.cloud.inbox() if m["TopicArn"] == run.cloud.dep.operator_topic_arn]
        assert len(operator) == 1 and "shard 2 of 4" in operator[0]["Message"]
        assert f"dqad replay --run-id {run.run_id} --stage labeler --shard 2" in operator[0]["Message"]
        assert "FAILED labeler shard 2:" in operator[0]["Subject"]

        # fixed, shard 2 alone is replayed: the join completes and the run is mailed once
        failing.clear()
        uris, _ = replay_in(run.cloud, run.storage, run.run_id, "labeler", shard=2, follow=True)
        assert [u.rsplit("/", 1)[-1] for u in uris] == ["DatasetFetched-shard0002.json"]
        assert "AnomaliesScored.json" in run.events()
        assert len(alerts(run.cloud, run.run_id)) == 1
        # a redelivered shard after the join is complete emits nothing again
        again = run.storage.get_json(uris[0])
        run.cloud.client("sqs").send_message(
            QueueUrl=run.cloud.dep.queue_urls["labeler"], MessageBody=json.dumps(again)
        )
        drive_chain(run.cloud, deadline_s=60)
        assert alerts(run.cloud, run.run_id) == []
        assert run.cloud.depth("trainer") == 0
        # the trainer replayed with --follow fans out anew: its shards join apart and score again,
        # and the notifier, which mails a run once, sends nothing more
        replay_in(run.cloud, run.storage, run.run_id, "trainer", follow=True)
        items = run.cloud.client("dynamodb").scan(TableName=run.cloud.dep.names.shards_table)["Items"]
        scorer_joins = [i for i in items if f"{run.run_id}#scorer#" in i["id"]["S"]]
        assert len(scorer_joins) == 2 and all("emitted_at" in i for i in scorer_joins), scorer_joins
        assert alerts(run.cloud, run.run_id) == []
