"""StageFailed becomes a separate operator message that says how to re-run the failed stage."""

from __future__ import annotations

import json
import re
import shlex

from dqad.contract import CONTRACT_DIR, StageFailed
from dqad_dev.cli import build_parser, input_event_key


def _stored_input(notifier, run_id: str) -> str:
    """Store the scorer's input event for ``run_id`` as the bus does (events/<run_id>/ModelTrained.json)."""
    sample = json.loads((CONTRACT_DIR / "samples" / "v1" / "ModelTrained.json").read_text())
    sample["detail"] |= {"run_id": run_id, "dataset": notifier.dataset}
    uri = notifier.storage.uri(f"events/{run_id}/ModelTrained.json")
    notifier.storage.put_json(uri, sample)
    return uri


def _failure(
    run_id: str, input_event: str, stage: str = "scorer", message: str = "model sha256 mismatch"
) -> StageFailed:
    return StageFailed(
        run_id=run_id,
        dataset="shop_dq",
        stage=stage,
        error_type="PermanentError",
        message=message,
        input_event=input_event,
    )


def test_stage_failed_alert_names_stage_error_input_and_replay_command(notifier, sns_attrs) -> None:
    uri = _stored_input(notifier, "run-f")
    assert notifier.deliver(_failure("run-f", uri), source="dqad.scorer") == {"batchItemFailures": []}

    [msg] = notifier.inbox()
    assert msg["TopicArn"] == notifier.cloud.dep.operator_topic_arn  # not the business users' topic
    assert msg["Subject"] == "[dqad] FAILED scorer: shop_dq run run-f (PermanentError)"
    assert sns_attrs(msg) == {
        "dataset": "shop_dq",
        "stage": "scorer",
        "error_type": "PermanentError",
        "run_id": "run-f",
        "severity": "high",
        "kind": "operator",
    }
    body = msg["Message"]
    assert "Error:        PermanentError: model sha256 mismatch" in body
    assert f"Input event:  {uri}" in body
    assert "dqad-test-scorer-dlq" in body and "/aws/lambda/dqad-test-scorer" in body

    # the command in the message is exactly `dqad replay --run-id R --stage S`, and it re-sends
    # the very input event the message names
    [command] = re.findall(r"^  (dqad replay .*)$", body, re.M)
    assert command == "dqad replay --run-id run-f --stage scorer"
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.func.__name__, args.run_id, args.stage) == ("cmd_replay", "run-f", "scorer")
    assert input_event_key(notifier.storage, args.run_id, args.stage) == uri
    assert "on a deployment: dqad replay --run-id run-f --stage scorer --aws --prefix dqad-test" in body
    assert notifier.notification("run-f").kind == "operator"


def test_operator_alert_sent_once_per_failure(notifier) -> None:
    uri = _stored_input(notifier, "run-f")
    failed = _failure("run-f", uri)
    notifier.deliver(failed, failed, source="dqad.scorer")  # redelivered
    assert len(notifier.inbox()) == 1
    # a different failure of the same run (another stage) is news
    notifier.deliver(_failure("run-f", uri, stage="notifier", message="SNS throttled"), source="dqad.notifier")
    [msg] = notifier.inbox()
    assert "FAILED notifier" in msg["Subject"]
