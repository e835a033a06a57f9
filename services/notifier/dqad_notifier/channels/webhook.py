"""A generic JSON webhook, signed: for an incident tool, a ticketing bridge or a team's own service.

The body is the run's incidents (the ``incidents.json`` form, each with its feedback links) and the
anomalous points. Each request carries:

* ``X-Dqad-Timestamp``: Unix seconds when it was signed;
* ``X-Dqad-Signature``: ``v1=<hex HMAC-SHA256(signing_key, "<timestamp>." + raw body)>``;
* ``X-Dqad-Delivery``: ``<run_id>/<channel>``, the same on every retry, to drop duplicates.

A receiver recomputes the HMAC over the exact bytes received, compares in constant time and rejects
a timestamp more than 5 minutes old (replays); :func:`verify` is the reference (docs/alerts.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from dqad_notifier.channels.message import Message, iso

SIGNATURE_VERSION = "v1"
TOLERANCE_S = 300


def render(msg: Message, delivery_id: str = "") -> dict[str, Any]:
    incidents = []
    for incident in list(msg.incidents)[: msg.max_incidents * 5]:
        doc = incident.to_json()
        lead = msg.lead_point(incident)
        if lead:
            doc["feedback"] = msg.feedback_links(*lead) or {"command": msg.feedback_command(*lead)}
        incidents.append(doc)
    anomalies = [
        {
            "series": p.series,
            "group": p.group,
            "timestamp": iso(p.timestamp),
            "value": p.value,
            "expected_low": p.expected_low,
            "expected_high": p.expected_high,
            "severity": p.severity,
            "score": p.score,
            "reasons": p.reasons,
        }
        for p in msg.ranked_anomalies()
    ]
    return {
        "type": "dqad.alert",
        "version": 1,
        "id": delivery_id,
        "dataset": msg.dataset,
        "run_id": msg.run_id,
        "title": msg.title,
        "report_url": msg.report_link,
        "incidents": incidents,
        "anomalies": anomalies,
    }


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def headers(key: bytes, body: bytes, delivery_id: str, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {"X-Dqad-Timestamp": str(ts), "X-Dqad-Signature": sign(key, body, ts), "X-Dqad-Delivery": delivery_id}


def verify(key: bytes, body: bytes, timestamp: str, signature: str, now: float | None = None) -> bool:
    """What a receiver does: a fresh timestamp and a matching signature over the raw body."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(key, body, ts), signature)


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
