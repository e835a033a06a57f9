"""Fixtures for the notifier's integration tests: scored runs on the embedded deployment, delivered
to the real notifier handler as Lambda-shaped SQS events, and what the SNS inbox received."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from dqad import stage
from dqad.bus import envelope
from dqad.contract import AnomaliesScored, EventDetail, NotificationSent
from dqad.datasets import long_format_dataset, render_catalog
from dqad.storage import Storage
from dqad_dev.local import LocalCloud, sqs_event
from dqad_notifier.handler import lambda_handler

DATASET = "shop_dq"
T0 = pd.Timestamp("2026-11-02 02:16:07")


def catalog(channels: tuple[dict, ...] = (), **notifier: Any) -> str:
    return render_catalog(
        {
            DATASET: long_format_dataset(
                trigger_tables=["dq.metrics_daily"],
                source={"kind": "file", "path": f"s3://dqad-test-bucket/sources/{DATASET}/metrics.parquet"},
                context=["job_name"],
                notifier=notifier,
                channels=list(channels) or None,
            )
        }
    )


def scores_frame(points: list[dict], ts: pd.Timestamp = T0) -> pd.DataFrame:
    """Scores as the scorer writes them. Each point: table, metric, value, low, high[, severity, reasons]."""
    rows = []
    for p in points:
        sev = p.get("severity", "")
        rows.append(
            {
                "series": f"{p['table']}/{p['metric']}",
                "group": p["table"],
                "timestamp": p.get("ts", ts),
                "value": float(p["value"]),
                "table_name": p["table"],
                "metric_name": p["metric"],
                "score": float(p.get("score", 0.9 if sev else 0.05)),
                "is_anomaly": bool(sev),
                "severity": sev,
                "expected_low": float(p["low"]),
                "expected_high": float(p["high"]),
                "reasons": p.get("reasons", f"{p['metric']} out of range" if sev else ""),
                **({"job_name": p["job"]} if "job" in p else {}),
            }
        )
    frame = pd.DataFrame(rows)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame


EMPTY_LOAD = [
    {
        "table": "sales.orders",
        "metric": "row_count",
        "value": 0,
        "low": 2_900_000,
        "high": 3_400_000,
        "severity": "high",
        "reasons": "value 0 is 100% below the usual 3,157,100 for Mondays",
    },
    {"table": "sales.orders", "metric": "sum_amount", "value": 0, "low": 43e6, "high": 53e6, "severity": "high"},
    {"table": "crm.contacts", "metric": "null_pct", "value": 9.5, "low": 0, "high": 3, "severity": "low"},
    {"table": "crm.contacts", "metric": "row_count", "value": 1000, "low": 900, "high": 1100},
]
CLEAN_LOAD = [
    {"table": "sales.orders", "metric": "row_count", "value": 3_100_000, "low": 2_900_000, "high": 3_400_000},
    {"table": "sales.orders", "metric": "sum_amount", "value": 48e6, "low": 43e6, "high": 53e6},
    {"table": "crm.contacts", "metric": "null_pct", "value": 1.2, "low": 0, "high": 3},
    {"table": "crm.contacts", "metric": "row_count", "value": 1000, "low": 900, "high": 1100},
]


@dataclass
class NotifierHarness:
    cloud: LocalCloud
    storage: Storage

    def configure(self, channels: tuple[dict, ...] = (), **notifier: Any) -> None:
        """Write the catalog with these channels and notifier options, and drop the runtime cached per
        container (it caches the catalog, as a warm Lambda does)."""
        self.storage.put_bytes(self.storage.uri("config/datasets.toml"), catalog(channels, **notifier).encode())
        stage._runtime_for.cache_clear()

    def scored(
        self, run_id: str, scores: pd.DataFrame, report: bool = True, incidents: bool = False
    ) -> AnomaliesScored:
        """The scorer's event for ``scores``; with ``incidents``, also its incidents.json, named by the
        scorer's own function (the catalog's dataset, no history)."""
        prefix = f"runs/{DATASET}/{run_id}"
        ref = self.storage.write_parquet(self.storage.uri(f"{prefix}/scores.parquet"), scores)
        incidents_ref = None
        if incidents:
            from dqad import incidents as inc
            from dqad.contract import DataRef
            from dqad.datasets import parse_catalog
            from dqad_scorer.domain import find_incidents

            ds = parse_catalog(self.storage.get_bytes(self.storage.uri("config/datasets.toml")).decode()).get(DATASET)
            found = find_incidents(ds, scores, scores.iloc[0:0])
            uri = self.storage.uri(f"{prefix}/incidents.json")
            incidents_ref = DataRef(uri=uri, rows=len(found), sha256=self.storage.put_bytes(uri, inc.dumps(found)))
        report_uri = self.storage.uri(f"{prefix}/report.html") if report else None
        if report_uri:
            self.storage.put_bytes(report_uri, b"<html>report</html>", "text/html")
        return AnomaliesScored(
            run_id=run_id,
            dataset=DATASET,
            scores=ref,
            scored_rows=len(scores),
            anomaly_count=int(scores["is_anomaly"].sum()),
            report=report_uri,
            model_version="v1",
            incidents=incidents_ref,
        )

    def deliver(self, *details: EventDetail, source: str = "dqad.scorer") -> dict:
        """Each detail as one SQS record (like EventBridge → SQS), through the real handler."""
        sqs = self.cloud.client("sqs")
        url = self.cloud.dep.queue_urls["notifier"]
        for d in details:
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(envelope(d, source)))
        messages: list[dict] = []
        while len(messages) < len(details):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
            assert got, "notifier queue drained before every record was received"
            messages += got
        arn = f"arn:aws:sqs:us-east-1:123456789012:{url.rsplit('/', 1)[-1]}"
        return lambda_handler(sqs_event(messages, arn), None)

    t0 = T0
    dataset = DATASET

    def incident_scores(self, ts: pd.Timestamp = T0) -> pd.DataFrame:
        """An empty load of sales.orders (2 high) and a null spike in crm.contacts (low), plus a normal point."""
        return scores_frame(EMPTY_LOAD, ts)

    def clean_scores(self, ts: pd.Timestamp = T0) -> pd.DataFrame:
        return scores_frame(CLEAN_LOAD, ts)

    def inbox(self) -> list[dict]:
        return self.cloud.inbox()

    def notification(self, run_id: str) -> NotificationSent:
        event = self.storage.get_json(self.storage.uri(f"events/{run_id}/NotificationSent.json"))
        return NotificationSent.model_validate(event["detail"])


@pytest.fixture
def notifier(cloud: LocalCloud, storage: Storage) -> NotifierHarness:
    h = NotifierHarness(cloud, storage)
    h.configure()
    return h


@pytest.fixture
def make_scores() -> Callable[..., pd.DataFrame]:
    """``make_scores(points, ts)``: a scores frame from point dicts (see :func:`scores_frame`)."""
    return scores_frame


def attrs(message: dict) -> dict[str, str]:
    """SNS message attributes of an inbox message, as name -> value."""
    return {k: v["Value"] for k, v in message.get("MessageAttributes", {}).items()}


@pytest.fixture
def sns_attrs() -> Callable[[dict], dict[str, str]]:
    return attrs


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Webhooks:
    """A local HTTP server standing in for Slack, Teams and a webhook receiver: it records every POST
    and answers with the status queued for its path (200 when none is)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.received: list[Received] = []
        self.statuses: dict[str, list[int]] = {}
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hooks.received.append(Received(self.path, dict(self.headers.items()), body))
                queued = hooks.statuses.get(self.path, [])
                status = queued.pop(0) if queued else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhooks() -> Any:
    hooks = Webhooks()
    yield hooks
    hooks.close()
