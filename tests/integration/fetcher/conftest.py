"""Fixtures for the fetcher's integration tests: a dataset catalog on the embedded deployment,
LoadCompleted details for it, and readers of what the fetcher stored and published."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dqad.contract import LoadCompleted, make_run_id
from dqad.datasets import long_format_dataset, render_catalog
from dqad.stage import StageRuntime, runtime
from dqad.storage import Storage
from dqad_dev.local import LocalCloud

LOADED_AT = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
DATASET = "fx_dq"


def catalog_toml(source: str, *, dataset: str = DATASET, history_days: int = 30, new_window_hours: int = 24) -> str:
    """A one-dataset catalog triggered by ``dq.metrics_daily``; ``source`` is the TOML body of its source."""
    return render_catalog(
        {
            dataset: long_format_dataset(
                history_days=history_days,
                new_window_hours=new_window_hours,
                trigger_tables=["dq.metrics_daily"],
                source=tomllib.loads(source),
            )
        }
    )


def metrics_frame(tables: int = 3, metrics: int = 2, days: int = 20, end: datetime = LOADED_AT) -> pd.DataFrame:
    """Daily metrics ending at ``end`` (tz-naive UTC ``load_ts``), values = a deterministic function of the row."""
    rows = []
    for d in range(days):
        ts = (end - timedelta(days=days - 1 - d)).replace(tzinfo=None)
        for t in range(tables):
            for m in range(metrics):
                rows.append((f"s.t{t}", f"m{m}", ts, float(100 * t + 10 * m + d)))
    return pd.DataFrame(rows, columns=["table_name", "metric_name", "load_ts", "metric_value"])


@pytest.fixture
def put_catalog(storage: Storage, cloud: LocalCloud) -> Callable[[str], StageRuntime]:
    """Write a catalog to the deployment's ``datasets_uri`` and return a fresh fetcher runtime for it."""

    def put(text: str) -> StageRuntime:
        storage.put_bytes(cloud.dep.settings().datasets_uri, text.encode())
        rt = runtime("fetcher")
        rt.forget_catalog()  # re-read the catalog just written
        return rt

    return put


@pytest.fixture
def load_completed() -> Callable[..., LoadCompleted]:
    def make(log_id: str = "4242", loaded_at: datetime = LOADED_AT, dataset: str = DATASET) -> LoadCompleted:
        return LoadCompleted(
            run_id=make_run_id(dataset, log_id, loaded_at),
            dataset=dataset,
            log_id=log_id,
            job_name="dq_metrics_daily",
            table_name="dq.metrics_daily",
            loaded_at=loaded_at,
            status="SUCCESS",
        )

    return make


@pytest.fixture
def stored_events(storage: Storage) -> Callable[[str], dict[str, dict]]:
    """Events a run stored under ``events/<run_id>/``, by file name."""

    def read(run_id: str) -> dict[str, dict]:
        return {u.rsplit("/", 1)[-1]: storage.get_json(u) for u in storage.list_uris(storage.uri(f"events/{run_id}/"))}

    return read


@pytest.fixture
def drain_queue(cloud: LocalCloud) -> Callable[..., list[dict]]:
    """Receive (and delete) messages from a stage queue until ``expected`` arrived or the deadline passes."""

    def drain(stage_name: str, expected: int, deadline_s: float = 30.0) -> list[dict]:
        sqs = cloud.client("sqs")
        url = cloud.dep.queue_urls[stage_name]
        out: list[dict] = []
        deadline = time.monotonic() + deadline_s
        while len(out) < expected and time.monotonic() < deadline:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if not msgs:
                time.sleep(0.05)  # poll interval while waiting for delivery, bounded by the deadline
        return out

    return drain


def sqs_record_event(detail: Any, cloud: LocalCloud, stage_name: str = "fetcher") -> dict:
    """A Lambda SQS event holding one EventBridge envelope of ``detail`` (as the rule delivers it)."""
    from dqad.bus import envelope
    from dqad.topology import source_of
    from dqad_dev.local import sqs_event

    body = json.dumps(envelope(detail, source_of("fetcher")))
    url = cloud.dep.queue_urls[stage_name]
    cloud.client("sqs").send_message(QueueUrl=url, MessageBody=body)
    msgs = cloud.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
    return sqs_event(msgs, f"arn:aws:sqs:us-east-1:123456789012:{url.rsplit('/', 1)[-1]}")


@pytest.fixture
def sqs_event_for(cloud: LocalCloud) -> Callable[[Any], dict]:
    return lambda detail: sqs_record_event(detail, cloud)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture
def make_catalog() -> Callable[..., str]:
    """:func:`catalog_toml` as a fixture (test modules do not import conftest)."""
    return catalog_toml


@pytest.fixture
def make_metrics() -> Callable[..., pd.DataFrame]:
    """:func:`metrics_frame` as a fixture."""
    return metrics_frame
