"""Typed event contract (docs/architecture.md §4), version 1.

Every event's ``detail`` carries ``version``, ``run_id``, ``dataset`` and ``produced_at``, then the
stage's own fields. Models forbid unknown fields: a producer that drifts from the contract is caught
at the first consumer with an error naming the field, instead of being silently half-read.

Messages carry *pointers* (S3 URIs with row counts and sha256), never the data itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CONTRACT_VERSION: Literal["1"] = "1"

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,47}$"
DATASET_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
URI_PATTERN = r"^(s3://[a-z0-9.\-]{3,63}/.+|file://.+)$"

RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, description="Deterministic id of one run")]
DatasetName = Annotated[str, Field(pattern=DATASET_PATTERN)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
Uri = Annotated[str, Field(pattern=URI_PATTERN, max_length=1024)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class DataRef(_Strict):
    """Pointer to a Parquet file: where it is, how many rows it holds and its sha256."""

    uri: Uri
    rows: int = Field(ge=0)
    sha256: Sha256


class ModelRef(_Strict):
    uri: Uri
    sha256: Sha256
    version: str = Field(min_length=1, max_length=64)
    # HMAC of (dataset, uri, sha256, version) by the trainer (dqad.signing.sign_model_ref); the
    # scorer loads nothing unsigned. Empty in events made before signing existed.
    signature: str = Field(default="", max_length=128)


MAX_SHARDS = 256
JOIN_PATTERN = r"^[0-9a-f]{16}$"


class Shard(_Strict):
    """Which part of a sharded run one message carries (docs/architecture.md §12).

    ``join`` names the fan-out the shard belongs to: the shards of one fan-out complete one join,
    and a new fan-out of the same run (a redelivered or replayed producer) is a new join.
    """

    index: int = Field(ge=0, lt=MAX_SHARDS)
    count: int = Field(ge=1, le=MAX_SHARDS)
    join: str = Field(pattern=JOIN_PATTERN)

    @field_validator("count")
    @classmethod
    def _index_in_range(cls, v: int, info) -> int:
        index = info.data.get("index")
        if index is not None and index >= v:
            raise ValueError(f"shard index {index} is not below the shard count {v}")
        return v


class ShardFiles(_Strict):
    """One shard's labelled history and new rows, as the labeler's join lists them."""

    index: int = Field(ge=0, lt=MAX_SHARDS)
    labeled: DataRef
    new: DataRef


class TimeWindow(_Strict):
    history_start: datetime
    new_start: datetime
    new_end: datetime

    @field_validator("new_end")
    @classmethod
    def _ordered(cls, v: datetime, info) -> datetime:
        start = info.data.get("new_start")
        if start is not None and v < start:
            raise ValueError("new_end is before new_start")
        return v


class EventDetail(_Strict):
    """Fields every event carries."""

    version: Literal["1"] = CONTRACT_VERSION
    run_id: RunId
    dataset: DatasetName
    produced_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    # EventBridge detail-type of the event; set on each subclass below.
    detail_type: ClassVar[str] = ""


LOADED_AT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
LOADED_AT_MAX_AHEAD = timedelta(days=1)


def loaded_at_problem(value: datetime, now: datetime | None = None) -> str:
    """Why a load time cannot be a real load ("" when it can): before 2000, or more than a day ahead.

    A load of 9999-12-31 passed every check and died later in date arithmetic (OverflowError),
    retried as if transient; refused here it is a permanent error that names the field.
    """
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    latest = (now or datetime.now(UTC)) + LOADED_AT_MAX_AHEAD
    if aware < LOADED_AT_MIN or aware > latest:
        return (
            f"loaded_at {value.isoformat()} is outside {LOADED_AT_MIN:%Y-%m-%d} .. {latest:%Y-%m-%d %H:%M} UTC "
            "(now + 1 day); fix the load's timestamp in qe_query_logs"
        )
    return ""


class LoadCompleted(EventDetail):
    log_id: str = Field(min_length=1, max_length=64)
    job_name: str = Field(default="", max_length=256)
    table_name: str = Field(min_length=1, max_length=256)
    loaded_at: datetime
    status: str = Field(min_length=1, max_length=32)

    @field_validator("loaded_at")
    @classmethod
    def _sane_load_time(cls, v: datetime) -> datetime:
        problem = loaded_at_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class DatasetFetched(EventDetail):
    history: DataRef
    new: DataRef
    window: TimeWindow
    load_log_id: str = Field(min_length=1, max_length=64)
    # Set on each message of a sharded run: history and new are then this shard's files.
    shard: Shard | None = None


class DatasetLabeled(EventDetail):
    labeled: DataRef
    new: DataRef
    label_counts: dict[str, int] = Field(description="anomaly labels by source: human, seasonal_rule, ...")
    window: TimeWindow
    # A sharded run's join: ``labeled`` and ``new`` are then the prefixes holding every shard's part
    # (uri ending in "/", rows the total, sha256 the digest of the parts'), and ``shards`` the parts.
    shards: tuple[ShardFiles, ...] = Field(default=(), max_length=MAX_SHARDS)


class ModelTrained(EventDetail):
    model: ModelRef
    reused: bool
    metrics: dict[str, float]
    labeled: DataRef
    new: DataRef
    window: TimeWindow
    job_name: str | None = Field(default=None, max_length=63)
    # Set on each message of a sharded run: labeled and new are then this shard's files.
    shard: Shard | None = None


class AnomaliesScored(EventDetail):
    scores: DataRef
    scored_rows: int = Field(ge=0)
    anomaly_count: int = Field(ge=0)
    report: Uri | None = None
    model_version: str = Field(min_length=1, max_length=64)
    # incidents.json beside the scores (rows = number of incidents); absent in events made before
    # incidents existed, when the notifier names them from the scores itself.
    incidents: DataRef | None = None


class NotificationSent(EventDetail):
    message_id: str | None = Field(default=None, max_length=256)
    anomaly_count: int = Field(ge=0)
    suppressed_count: int = Field(ge=0)
    kind: Literal["alert", "operator", "none"] = "alert"


class LoadIncidentDetail(_Strict):
    """One late, missing, arrived or empty load (the JSON of :class:`dqad.freshness.LoadIncident`)."""

    kind: Literal["late_load", "missing_load", "load_arrived", "empty_load", "slow_load"]
    table: str = Field(min_length=1, max_length=256)
    job: str = Field(default="", max_length=256)
    due_at: datetime | None = None
    cadence: str = Field(default="", max_length=200)
    lateness_s: float | None = Field(default=None, ge=0)
    arrived_at: datetime | None = None
    last_arrival: datetime | None = None
    missed: int = Field(default=0, ge=0)
    row_count: int | None = Field(default=None, ge=0)
    log_id: str = Field(default="", max_length=64)
    duration_s: float | None = Field(default=None, ge=0)
    usual_duration_s: float | None = Field(default=None, ge=0)


class LoadLogChecked(EventDetail):
    """What the ETL log alone says: loads late, missing, arrived after being reported, logged empty or slow.

    From the fetcher's scheduled freshness check and, for an empty load, its Aurora entry point; to the
    notifier. ``run_id`` derives from the incidents, so a check repeated after a lost state write
    produces the same run and the notifier's idempotency sends it once.
    """

    checked_at: datetime
    incidents: tuple[LoadIncidentDetail, ...] = Field(min_length=1, max_length=500)


class StageFailed(EventDetail):
    stage: Literal["fetcher", "labeler", "trainer", "scorer", "notifier"]
    error_type: str = Field(min_length=1, max_length=128)
    message: str = Field(max_length=4000)
    input_event: Uri | None = None
    # The shard that failed, in a sharded run (``dqad replay --shard`` re-runs it alone).
    shard: int | None = Field(default=None, ge=0, lt=MAX_SHARDS)

    @field_validator("message", mode="before")
    @classmethod
    def _truncate(cls, v: object) -> object:
        # An error message is evidence, not payload: keep it bounded so the event always fits.
        if isinstance(v, str) and len(v) > 4000:
            return v[:3990] + " [...]"
        return v


EVENT_MODELS: dict[str, type[EventDetail]] = {
    "LoadCompleted": LoadCompleted,
    "DatasetFetched": DatasetFetched,
    "DatasetLabeled": DatasetLabeled,
    "ModelTrained": ModelTrained,
    "AnomaliesScored": AnomaliesScored,
    "NotificationSent": NotificationSent,
    "StageFailed": StageFailed,
    "LoadLogChecked": LoadLogChecked,
}
for _name, _model in EVENT_MODELS.items():
    _model.detail_type = _name
