"""Event contract: typed models, parsing with errors that name the field, EventBridge entries.

Committed next to this file, per contract version: ``schemas/v<N>/<DetailType>.json`` (JSON Schema
generated from the models, checked in CI to match them) and ``samples/v<N>/<DetailType>.json`` (a full
EventBridge event, kept forever so that a consumer upgraded later still parses what old producers
sent).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dqad.contract.models import (
    CONTRACT_VERSION,
    EVENT_MODELS,
    AnomaliesScored,
    DataRef,
    DatasetFetched,
    DatasetLabeled,
    EventDetail,
    LoadCompleted,
    LoadIncidentDetail,
    LoadLogChecked,
    ModelRef,
    ModelTrained,
    NotificationSent,
    Shard,
    ShardFiles,
    StageFailed,
    TimeWindow,
    loaded_at_problem,
)

__all__ = [
    "CONTRACT_DIR",
    "CONTRACT_VERSION",
    "EVENT_MODELS",
    "SUPPORTED_VERSIONS",
    "AnomaliesScored",
    "ContractError",
    "DataRef",
    "DatasetFetched",
    "DatasetLabeled",
    "EventDetail",
    "LoadCompleted",
    "LoadIncidentDetail",
    "LoadLogChecked",
    "ModelRef",
    "ModelTrained",
    "NotificationSent",
    "Shard",
    "ShardFiles",
    "StageFailed",
    "TimeWindow",
    "loaded_at_problem",
    "make_run_id",
    "parse_detail",
    "parse_event",
]

CONTRACT_DIR = Path(__file__).parent
SUPPORTED_VERSIONS = ("1",)
MAX_EVENT_BYTES = 256 * 1024  # EventBridge's limit for one entry


class ContractError(ValueError):
    """An event that does not follow the contract. ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(message if message.startswith(field) else f"{field}: {message}")


def _first_error(exc: ValidationError, prefix: str) -> ContractError:
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{prefix}{loc}: {err['msg']}")
    first = errors[0]
    field = prefix + (".".join(str(p) for p in first["loc"]) or "<root>")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return ContractError(field, "; ".join(parts) + more)


def parse_detail(detail_type: str, detail: Any) -> EventDetail:
    """Validate one ``detail`` object against the model of ``detail_type``."""
    model = EVENT_MODELS.get(detail_type)
    if model is None:
        raise ContractError("detail-type", f"unknown detail-type {detail_type!r}")
    if not isinstance(detail, dict):
        raise ContractError("detail", f"expected an object, got {type(detail).__name__}")
    version = detail.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise ContractError(
            "detail.version",
            f"unsupported contract version {version!r}; this consumer reads {', '.join(SUPPORTED_VERSIONS)}",
        )
    try:
        return model.model_validate(detail)
    except ValidationError as exc:
        raise _first_error(exc, "detail.") from None


def parse_event(event: Any, expected: tuple[str, ...] | None = None) -> EventDetail:
    """Parse an EventBridge event (dict or JSON text, e.g. an SQS body) into its typed detail.

    ``expected`` restricts the detail-types accepted by the caller, so a mis-routed event is a
    contract error rather than a surprise deep inside a stage.
    """
    if isinstance(event, str | bytes):
        if len(event) > MAX_EVENT_BYTES:
            raise ContractError("<body>", f"event of {len(event)} bytes exceeds {MAX_EVENT_BYTES}")
        try:
            event = json.loads(event)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ContractError("<body>", f"not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise ContractError("<body>", f"expected an EventBridge event object, got {type(event).__name__}")
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str):
        raise ContractError("detail-type", "missing or not a string")
    if expected is not None and detail_type not in expected:
        raise ContractError("detail-type", f"{detail_type!r} is not one of {', '.join(expected)}")
    return parse_detail(detail_type, event.get("detail"))


def make_run_id(dataset: str, log_id: str, loaded_at: datetime) -> str:
    """Deterministic run id: the same log row for the same dataset is the same run.

    That is what makes a duplicated trigger (an outbox re-drive of an invoke that did succeed, a
    redelivered message) collapse into one run instead of two emails.
    """
    digest = hashlib.sha256(f"{dataset}\x1f{log_id}".encode()).hexdigest()[:12]
    return f"{loaded_at:%Y%m%dT%H%M}-{digest}"


def json_schema(detail_type: str) -> dict[str, Any]:
    schema = EVENT_MODELS[detail_type].model_json_schema()
    schema["$id"] = f"https://dqad.dev/contract/v{CONTRACT_VERSION}/{detail_type}.json"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
