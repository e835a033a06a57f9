"""Scorer Lambda entry point (ModelTrained from SQS)."""

from __future__ import annotations

from typing import Any

from dqad.stage import run_batch, runtime
from dqad_scorer import domain


def lambda_handler(event: dict, context: Any = None) -> dict:
    return run_batch(event, context, runtime("scorer"), domain.score)
