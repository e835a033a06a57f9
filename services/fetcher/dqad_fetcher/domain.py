"""Fetcher: turn an ETL log row into runs, and fetch each run's metric history and new data.

Two steps, two entry points:

* ``accept_log_row`` (Aurora trigger → Lambda): validate the compact payload, find the datasets the
  row concerns and put one ``LoadCompleted`` per dataset on the bus. Real Aurora invokes *before*
  its transaction commits, so the log row may later be rolled back: the payload carries everything
  the run needs and nothing here reads the log table back, so a log id that does not exist is
  harmless (at worst one extra, correct, run over the metrics that are there).
* ``fetch`` (LoadCompleted from SQS): read the dataset's window from its source, normalise it to
  the canonical frame and write ``history.parquet`` / ``new.parquet`` under the run's prefix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from dqad.contract import DatasetFetched, LoadCompleted, TimeWindow, make_run_id
from dqad.datasets import SchemaMismatch, SqlSource, to_canonical
from dqad.stage import PermanentError, StageRuntime

from dqad_fetcher.sources import SourceError, read_source

logger = Logger(service="dqad-fetcher")

REQUIRED_LOG_FIELDS = ("log_id", "table_name", "loaded_at", "status")


class LogRowError(ValueError):
    """The trigger's payload lacks a field or has one of the wrong kind."""


@dataclass(frozen=True)
class LogRow:
    log_id: str
    job_name: str
    table_name: str
    loaded_at: datetime
    status: str

    @classmethod
    def from_payload(cls, payload: Any) -> LogRow:
        if not isinstance(payload, dict):
            raise LogRowError(f"payload must be a JSON object, got {type(payload).__name__}")
        missing = [f for f in REQUIRED_LOG_FIELDS if payload.get(f) in (None, "")]
        if missing:
            raise LogRowError(f"log row is missing field(s): {', '.join(missing)}")
        try:
            loaded_at = datetime.fromisoformat(str(payload["loaded_at"]).replace("Z", "+00:00"))
        except ValueError:
            raise LogRowError(f"loaded_at: not an ISO timestamp: {payload['loaded_at']!r}") from None
        if loaded_at.tzinfo is None:
            loaded_at = loaded_at.replace(tzinfo=UTC)  # Aurora's timestamp without time zone is UTC by convention
        return cls(
            log_id=str(payload["log_id"])[:64],
            job_name=str(payload.get("job_name") or "")[:256],
            table_name=str(payload["table_name"])[:256],
            loaded_at=loaded_at.astimezone(UTC),
            status=str(payload["status"])[:32],
        )


def accept_log_row(rt: StageRuntime, payload: Any) -> list[str]:
    """Publish one LoadCompleted per dataset the log row concerns; return the run ids.

    A row that is malformed or concerns no dataset is skipped and logged, never raised: the
    invocation is asynchronous and a raise would only make Lambda retry a row that cannot succeed.
    """
    try:
        row = LogRow.from_payload(payload)
    except LogRowError as exc:
        logger.warning("log row skipped", extra={"reason": str(exc)})
        return []
    datasets = rt.catalog.matching(row.table_name, row.job_name, row.status)
    if not datasets:
        logger.info("log row concerns no dataset", extra={"table_name": row.table_name, "log_id": row.log_id})
        return []
    run_ids = []
    for ds in datasets:
        event = LoadCompleted(
            run_id=make_run_id(ds.name, row.log_id, row.loaded_at),
            dataset=ds.name,
            log_id=row.log_id,
            job_name=row.job_name,
            table_name=row.table_name,
            loaded_at=row.loaded_at,
            status=row.status,
        )
        rt.publisher.publish(event)
        run_ids.append(event.run_id)
    return run_ids


class Secrets:
    """DSNs for SQL sources: from Secrets Manager on AWS, from an environment variable locally."""

    def __init__(self, rt: StageRuntime) -> None:
        self.rt = rt

    def dsn(self, src: SqlSource) -> str:
        if src.dsn_env:
            value = os.environ.get(src.dsn_env)
            if not value:
                raise PermanentError(f"environment variable {src.dsn_env} (the dataset's dsn_env) is not set")
            return value
        return self.rt.clients("secretsmanager").get_secret_value(SecretId=src.dsn_secret_arn)["SecretString"]


def fetch(rt: StageRuntime, detail: LoadCompleted) -> DatasetFetched | None:
    """Fetch one run's window, write the two Parquet files, emit DatasetFetched (idempotent: fixed keys)."""
    try:
        ds = rt.catalog.get(detail.dataset)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    history_start, new_start, new_end = ds.window(detail.loaded_at)
    try:
        raw = read_source(ds, rt.storage, (history_start, new_start, new_end), Secrets(rt))
        frame = to_canonical(raw, ds) if len(raw) else None
    except (SchemaMismatch, SourceError) as exc:
        raise PermanentError(str(exc)) from exc
    if frame is None:
        logger.warning("source returned no rows; no run downstream", extra={"run_id": detail.run_id})
        return None
    cut = new_start.replace(tzinfo=None)
    is_new = frame["timestamp"] >= cut
    if not is_new.any():
        logger.warning("no new data in the load's window; no run downstream", extra={"run_id": detail.run_id})
        return None
    prefix = rt.run_prefix(ds.name, detail.run_id)
    history_ref = rt.storage.write_parquet(f"{prefix}/history.parquet", frame[~is_new])
    new_ref = rt.storage.write_parquet(f"{prefix}/new.parquet", frame[is_new])
    event = DatasetFetched(
        run_id=detail.run_id,
        dataset=ds.name,
        history=history_ref,
        new=new_ref,
        window=TimeWindow(history_start=history_start, new_start=new_start, new_end=new_end),
        load_log_id=detail.log_id,
    )
    rt.publisher.publish(event)
    return event
