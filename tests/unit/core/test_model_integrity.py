"""The scorer parses a model file only when its bytes match the sha256 in the event.

Here the reference is signed with the deployment's key, so it is the sha256 check that refuses
(forged and unsigned references: tests/integration/security/test_model_forgery.py).
"""

from __future__ import annotations

import json

import pytest

from dqad.bus import envelope
from dqad.detect import model_format
from dqad.signing import secret_keys, sign_model_ref
from dqad.storage import Storage, sha256_bytes
from dqad_dev.local import LocalCloud
from tests.model_events import model_trained_event


def test_a_model_whose_sha256_differs_is_never_parsed(cloud: LocalCloud, storage: Storage, monkeypatch) -> None:
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle that would run a command if loaded
    model_uri = storage.uri("models/demo_dq/v1/model.dqad")
    storage.put_bytes(model_uri, evil)
    loads: list[object] = []
    monkeypatch.setattr(model_format, "loads", lambda *a, **k: loads.append(a) or pytest.fail("parsed"))
    claimed = sha256_bytes(b"the model we wrote")
    keys = secret_keys(cloud.client("secretsmanager"), cloud.dep.model_signing_secret_arn)
    signature = sign_model_ref(keys, "demo_dq", model_uri, claimed, "v1")
    event = model_trained_event(storage, model_uri, claimed, signature=signature)
    cloud.client("sqs").send_message(
        QueueUrl=cloud.dep.queue_urls["scorer"], MessageBody=json.dumps(envelope(event, "dqad.trainer"))
    )
    cloud.pump(only=("scorer",), deadline_s=30)

    assert loads == []
    failed = storage.get_json(storage.uri("events/r-9/StageFailed-scorer.json"))["detail"]
    assert failed["error_type"] == "PermanentError" and "refusing to load model" in failed["message"]
    [dead] = cloud.dead_letters("scorer")
    assert "does not match" in dead["MessageAttributes"]["error"]["StringValue"]
