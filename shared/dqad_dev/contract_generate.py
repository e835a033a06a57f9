"""Regenerate the committed JSON Schemas (and create missing samples) for the current version.

    python -m dqad_dev.contract_generate

Samples are only ever *added*: an existing sample is a promise to old producers and is never
rewritten, which is what the compatibility test relies on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dqad.contract import CONTRACT_DIR, CONTRACT_VERSION, EVENT_MODELS, json_schema

_T = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
_SHA = "0" * 63 + "1"
_REF = {"rows": 120, "sha256": _SHA}
_WINDOW = {
    "history_start": "2026-05-06T00:00:00Z",
    "new_start": "2026-11-01T06:00:00Z",
    "new_end": "2026-11-02T06:00:00Z",
}
_BASE = {
    "version": CONTRACT_VERSION,
    "run_id": "20261102T0600-5f1c0a9be2d4",
    "dataset": "demo_dq",
    "produced_at": "2026-11-02T06:00:05Z",
}
_RUN = "s3://dqad-dev-bucket/runs/demo_dq/20261102T0600-5f1c0a9be2d4"

SAMPLE_DETAILS: dict[str, dict[str, object]] = {
    "LoadCompleted": {
        "log_id": "981234",
        "job_name": "tln_load_orders",
        "table_name": "sales.orders",
        "loaded_at": "2026-11-02T06:00:00Z",
        "status": "SUCCESS",
    },
    "DatasetFetched": {
        "history": {"uri": f"{_RUN}/history.parquet", **_REF},
        "new": {"uri": f"{_RUN}/new.parquet", **_REF},
        "window": _WINDOW,
        "load_log_id": "981234",
    },
    "DatasetLabeled": {
        "labeled": {"uri": f"{_RUN}/labeled.parquet", **_REF},
        "new": {"uri": f"{_RUN}/new.parquet", **_REF},
        "label_counts": {"human": 2, "seasonal_rule": 14, "consensus": 3},
        "window": _WINDOW,
    },
    "ModelTrained": {
        "model": {
            "uri": "s3://dqad-dev-bucket/models/demo_dq/v20261102T0600/model.dqad",
            "sha256": _SHA,
            "version": "v20261102T0600",
        },
        "reused": False,
        "metrics": {"f1": 0.91, "precision": 0.93, "recall": 0.89, "pr_auc": 0.95},
        "labeled": {"uri": f"{_RUN}/labeled.parquet", **_REF},
        "new": {"uri": f"{_RUN}/new.parquet", **_REF},
        "window": _WINDOW,
        "job_name": "dqad-train-20261102T0600-5f1c0a9be2d4",
    },
    "AnomaliesScored": {
        "scores": {"uri": f"{_RUN}/scores.parquet", **_REF},
        "scored_rows": 120,
        "anomaly_count": 3,
        "report": f"{_RUN}/report.html",
        "model_version": "v20261102T0600",
    },
    "NotificationSent": {
        "message_id": "9b3c2a1e-1111-2222-3333-444455556666",
        "anomaly_count": 3,
        "suppressed_count": 0,
        "kind": "alert",
    },
    "StageFailed": {
        "stage": "scorer",
        "error_type": "ModelIntegrityError",
        "message": "model sha256 does not match the event",
        "input_event": "s3://dqad-dev-bucket/events/20261102T0600-5f1c0a9be2d4/ModelTrained.json",
    },
    "LoadLogChecked": {
        "checked_at": "2026-11-02T05:00:00Z",
        "incidents": [
            {
                "kind": "missing_load",
                "table": "sales.orders",
                "job": "tln_load_orders",
                "due_at": "2026-11-01T02:15:00Z",
                "cadence": "daily at 02:15 UTC",
                "lateness_s": 95400.0,
                "last_arrival": "2026-10-31T02:16:00Z",
                "missed": 2,
            },
            {
                "kind": "load_arrived",
                "table": "sales.customers",
                "job": "tln_load_customers",
                "due_at": "2026-11-02T02:15:00Z",
                "cadence": "weekdays at 02:15 UTC",
                "lateness_s": 8700.0,
                "arrived_at": "2026-11-02T04:40:00Z",
                "missed": 1,
            },
        ],
    },
}
SOURCES = {
    "LoadCompleted": "fetcher",
    "DatasetFetched": "fetcher",
    "DatasetLabeled": "labeler",
    "ModelTrained": "trainer",
    "AnomaliesScored": "scorer",
    "NotificationSent": "notifier",
    "StageFailed": "scorer",
    "LoadLogChecked": "fetcher",
}


def main() -> None:
    schemas = CONTRACT_DIR / "schemas" / f"v{CONTRACT_VERSION}"
    samples = CONTRACT_DIR / "samples" / f"v{CONTRACT_VERSION}"
    schemas.mkdir(parents=True, exist_ok=True)
    samples.mkdir(parents=True, exist_ok=True)
    for name in EVENT_MODELS:
        (schemas / f"{name}.json").write_text(json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n")
        sample = samples / f"{name}.json"
        if not sample.exists():
            event = {
                "version": "0",
                "id": "00000000-0000-0000-0000-000000000000",
                "detail-type": name,
                "source": f"dqad.{SOURCES[name]}",
                "account": "123456789012",
                "time": _T.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": "eu-west-1",
                "resources": [],
                "detail": {**_BASE, **SAMPLE_DETAILS[name]},
            }
            sample.write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {len(EVENT_MODELS)} schemas to {schemas}")


if __name__ == "__main__":
    main()
