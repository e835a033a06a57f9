"""Fetcher Lambda entry points. Thin: parse, call the domain, let dqad.stage handle failures."""

from __future__ import annotations

from typing import Any

from dqad.stage import run_batch, runtime

from dqad_fetcher import domain


def aurora_handler(event: Any, context: Any = None) -> dict:
    """Invoked by the Aurora trigger (``aws_lambda.invoke(..., 'Event')``) with the log row payload."""
    run_ids = domain.accept_log_row(runtime("fetcher"), event)
    return {"runs": run_ids}


def lambda_handler(event: dict, context: Any = None) -> dict:
    """LoadCompleted events from the fetcher's SQS queue."""
    return run_batch(event, context, runtime("fetcher"), domain.fetch)
