"""Fetcher Lambda entry points. Thin: parse, call the domain, let dqad.stage handle failures."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from dqad.settings import Settings, SettingsError
from dqad.stage import run_batch, runtime
from dqad_fetcher import domain

logger = Logger(service="dqad-fetcher")

#: Local override of the outbox DSN (``dqad listen``, tests); on AWS the DSN is a Secrets Manager secret.
OUTBOX_DSN_ENV = "DQAD_OUTBOX_DSN"
SWEEP_BATCH = 100
SWEEP_MAX_ROWS = 5000  # per invocation; the next scheduled sweep takes the rest
SWEEP_MIN_REMAINING_MS = 30_000  # stop claiming when the Lambda has less time left than this


def aurora_handler(event: Any, context: Any = None) -> dict:
    """Invoked by the Aurora trigger (``aws_lambda.invoke(..., 'Event')``) with the log row payload."""
    run_ids = domain.accept_log_row(runtime("fetcher"), event)
    return {"runs": run_ids}


def lambda_handler(event: dict, context: Any = None) -> dict:
    """LoadCompleted events from the fetcher's SQS queue."""
    return run_batch(event, context, runtime("fetcher"), domain.fetch)


@dataclass
class SweepReport:
    claimed: int = 0
    delivered: int = 0  # rows handled and marked delivered (skipped malformed rows included)
    failed: int = 0  # rows released back to the outbox with their error
    runs: int = 0  # LoadCompleted events published


def outbox_dsn(settings: Settings, clients: Any) -> str:
    """``$DQAD_OUTBOX_DSN`` locally, else the secret named by ``DQAD_OUTBOX_DSN_SECRET_ARN``."""
    local = os.environ.get(OUTBOX_DSN_ENV)
    if local:
        return local
    if not settings.outbox_dsn_secret_arn:
        raise SettingsError(
            f"missing required environment variable(s): DQAD_OUTBOX_DSN_SECRET_ARN (or {OUTBOX_DSN_ENV} locally)"
        )
    secret = clients("secretsmanager").get_secret_value(SecretId=settings.outbox_dsn_secret_arn)["SecretString"]
    return domain.dsn_from_secret(secret)


def sweeper_handler(event: Any = None, context: Any = None) -> dict:
    """Scheduled: re-drive the trigger's outbox rows through the Aurora entry point's code path.

    Each claimed row (``FOR UPDATE SKIP LOCKED`` + lease, see ``dqad_fetcher.outbox.claim_outbox``) goes
    through :func:`domain.accept_log_row`, exactly as if Aurora had invoked us, and is marked
    delivered on its own right after, so a crash re-delivers at most the row in flight (the same
    deterministic run id: no second email). A row that fails is released with the error and the
    sweep stops claiming, leaving it to the next scheduled sweep instead of spinning on it.
    """
    import psycopg

    from dqad_fetcher import outbox

    rt = runtime("fetcher")
    report = SweepReport()
    dsn = outbox_dsn(rt.settings, rt.clients)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=15, application_name="dqad-sweeper") as conn:
        while report.claimed < SWEEP_MAX_ROWS and not _low_on_time(context):
            rows = outbox.claim_outbox(conn, min(SWEEP_BATCH, SWEEP_MAX_ROWS - report.claimed))
            if not rows:
                break
            report.claimed += len(rows)
            stop = False
            for row in rows:
                if stop:  # give back what this sweep will not try, so the next sweep need not wait out the lease
                    outbox.release_outbox(conn, [row.id], "not attempted: the sweep stopped after a failure")
                    continue
                try:
                    report.runs += len(domain.accept_log_row(rt, row.payload))
                except Exception as exc:
                    logger.exception("outbox row not delivered", extra={"outbox_id": row.id, "log_id": row.log_id})
                    outbox.release_outbox(conn, [row.id], f"{type(exc).__name__}: {exc}")
                    report.failed += 1
                    stop = True
                    continue
                outbox.mark_delivered(conn, [row.id])
                report.delivered += 1
            if stop:
                break
    logger.info("outbox sweep", extra=asdict(report))
    return asdict(report)


def _low_on_time(context: Any) -> bool:
    remaining: Callable[[], int] | None = getattr(context, "get_remaining_time_in_millis", None)
    return remaining is not None and remaining() < SWEEP_MIN_REMAINING_MS


def checked_at(event: Any) -> datetime:
    """The check's clock: ``{"checked_at": "<ISO time>"}`` (EventBridge Scheduler sends its
    ``<aws.scheduler.scheduled-time>``, so a retried invocation judges the same instant), else now."""
    raw = event.get("checked_at") if isinstance(event, dict) else None
    if raw in (None, ""):
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"checked_at: not an ISO timestamp: {raw!r}") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def freshness_check(event: Any = None, context: Any = None) -> dict:
    """Scheduled (EventBridge Scheduler): report late, missing and arrived loads of watched tables.

    Reads the ETL log (Aurora with the outbox DSN; locally the CSV named by ``DQAD_LOAD_LOG_URI``)
    and hands it to :func:`dqad_fetcher.loadlog.run_check`. An error raises: the asynchronous
    invocation fails and lands in the fetcher's DLQ with the error (the function's on_failure
    destination), and the next scheduled check, minutes later, tries again.
    """
    from dqad_fetcher import loadlog

    rt = runtime("fetcher")
    now = checked_at(event)
    enabled = [ds for ds in rt.catalog.datasets.values() if ds.freshness.enabled and ds.watched_tables]
    if not enabled:
        return asdict(loadlog.CheckReport(checked_at=now.isoformat()))
    since = now - timedelta(days=max(ds.freshness.history_days for ds in enabled))
    if rt.settings.load_log_uri:
        text = rt.storage.get_bytes(rt.settings.load_log_uri).decode()
        entries = loadlog.read_csv_log(text, since, now)
    else:
        entries = loadlog.read_sql_log(outbox_dsn(rt.settings, rt.clients), since, now)
    report = loadlog.run_check(rt, entries, now)
    logger.info("freshness check", extra={k: v for k, v in asdict(report).items() if k != "not_judged"})
    return asdict(report)
