"""Shared fixtures for the reliability tests: a baseline run without faults, and a ready deployment.

Training a model is the slow part of a chain and not what these tests are about, so the
``baseline`` fixture runs the chain once per module without faults (training the model for real),
and records what every later test must reproduce: per run, the anomalies, the scores' sha256 and
the number of emails. Each test then gets a fresh embedded deployment (``cloud``) with the same
sources, catalog and that trained champion, so its trainer reuses the model as on AWS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from dqad import stage as stage_mod
from dqad.storage import Storage
from dqad_dev.loadtest import Load, RunResult, outcomes, run_results, seed_datasets, start_loads
from dqad_dev.local import LocalCloud

PREFIX = "dqad-test"  # the `cloud` fixture's prefix: the champion's URIs name its bucket
DATASETS, LOADS = 1, 2  # two consecutive loads of one dataset: one batch, ordering across runs matters


@dataclass
class Baseline:
    loads: list[Load]
    runs: dict[str, RunResult]
    models: dict[str, bytes] = field(default_factory=dict)  # key -> bytes under models/


def seed(storage: Storage) -> list[Load]:
    return seed_datasets(storage, datasets=DATASETS, tables=4, days=60, loads_per_dataset=LOADS)


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    """The chain without faults (trains the model once for the module)."""
    stage_mod._runtime_for.cache_clear()
    with LocalCloud(PREFIX) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        loads = seed(storage)
        run_ids = start_loads(cloud, loads)
        cloud.pump(deadline_s=240)
        assert all(o.kind == "notified" for o in outcomes(storage, run_ids).values())
        runs = run_results(cloud, storage, run_ids)
        models = {uri.split("/", 3)[-1]: storage.get_bytes(uri) for uri in storage.list_uris(storage.uri("models/"))}
    stage_mod._runtime_for.cache_clear()
    # The first load is clean (a run with nothing to say sends nothing), the second has an empty table.
    assert [r.emails for r in runs.values()] == [0, 1] and any(r.anomalies for r in runs.values())
    return Baseline(loads, runs, models)


@pytest.fixture
def chain(cloud: LocalCloud, baseline: Baseline) -> Iterator[tuple[LocalCloud, Storage]]:
    """A fresh deployment with the baseline's sources, catalog and champion (no training needed)."""
    stage_mod._runtime_for.cache_clear()  # no runtime (catalog, clients, fault hooks) from another test
    storage = Storage(cloud.client("s3"), cloud.dep.bucket)
    seed(storage)
    for key, data in baseline.models.items():
        storage.put_bytes(storage.uri(key), data)
    yield cloud, storage
    stage_mod._runtime_for.cache_clear()
