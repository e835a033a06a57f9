"""Notifier Lambda entry points.

* ``lambda_handler``: AnomaliesScored and StageFailed from the notifier's SQS queue.
* ``feedback_handler``: the function URL behind the email's signed feedback links.
"""

from __future__ import annotations

from typing import Any

from dqad.stage import run_batch, runtime
from dqad_notifier import domain, feedback_page


def lambda_handler(event: dict, context: Any = None) -> dict:
    return run_batch(event, context, runtime("notifier"), domain.record_handler(context))


def feedback_handler(event: dict, context: Any = None) -> dict:
    """Lambda function URL (payload format 2.0) → HTML page; see :mod:`dqad_notifier.feedback_page`."""
    return feedback_page.handle(runtime("notifier"), event)
