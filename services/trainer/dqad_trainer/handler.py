"""Trainer Lambda entry point: DatasetLabeled and SageMaker job-state events share one queue."""

from __future__ import annotations

from typing import Any

from dqad.stage import run_batch, runtime
from dqad.topology import SAGEMAKER_JOB_STATE
from dqad_trainer import domain


def lambda_handler(event: dict, context: Any = None) -> dict:
    return run_batch(
        event, context, runtime("trainer"), domain.on_labeled, raw_routes={SAGEMAKER_JOB_STATE: domain.on_job_state}
    )
