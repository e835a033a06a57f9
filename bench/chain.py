"""The demo chain timed from the simulated Aurora insert to the notification, twice.

First with no champion (the trainer runs its job: a subprocess with SageMaker's directory
contract), then for a second log row of the same load with the champion fresh: that path must not
start a job at all. Stage seconds are the time spent inside each stage's handler.
"""

from __future__ import annotations

import time

from dqad.storage import Storage
from dqad.topology import stage
from dqad_dev.demo import DEMO_PREFIX, seed_demo_dataset
from dqad_dev.local import LocalCloud


def _run(cloud: LocalCloud, payload: dict) -> dict:
    started = time.perf_counter()
    [run_id] = cloud.invoke(stage("fetcher"), "aurora", payload)["runs"]
    report = cloud.pump(deadline_s=300)
    wall = time.perf_counter() - started
    storage = Storage(cloud.client("s3"), cloud.dep.bucket)
    sent = storage.get_json(storage.uri(f"events/{run_id}/NotificationSent.json"))["detail"]
    trained = storage.get_json(storage.uri(f"events/{run_id}/ModelTrained.json"))["detail"]
    return {
        "run_id": run_id,
        "wall_s": wall,
        "stages": dict(report.seconds),
        "job_started": not trained["reused"],
        "anomalies": sent["anomaly_count"],
    }


def measure_chain() -> dict:
    with LocalCloud(DEMO_PREFIX) as cloud:
        seed = seed_demo_dataset(Storage(cloud.client("s3"), cloud.dep.bucket))
        trained = _run(cloud, seed.payload)
        reused = _run(cloud, {**seed.payload, "log_id": seed.payload["log_id"] + "-rerun"})
    return {"trained": trained, "reused": reused, "wall_s": trained["wall_s"]}
