"""joblib is pickle: the scorer loads a model only when its bytes match the sha256 in the event.

Here the reference is signed with the deployment's key, so it is the sha256 check that refuses
(forged and unsigned references: tests/integration/security/test_model_forgery.py).
"""

from __future__ import annotations

import json

import joblib
import pandas as pd
import pytest

from dqad.bus import envelope
from dqad.contract import ModelTrained
from dqad.signing import secret_keys, sign_model_ref
from dqad.storage import Storage, sha256_bytes
from dqad_dev.local import LocalCloud


def test_a_model_whose_sha256_differs_is_never_unpickled(cloud: LocalCloud, storage: Storage, monkeypatch) -> None:
    evil = b"cos\nsystem\n(S'echo pwned'\ntR."  # a pickle that would run a command if loaded
    model_uri = storage.uri("models/demo_dq/v1/model.joblib")
    storage.put_bytes(model_uri, evil)
    loads: list[object] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: loads.append(a) or pytest.fail("unpickled"))
    data = storage.write_parquet(
        storage.uri("runs/demo_dq/r-9/labeled.parquet"),
        pd.DataFrame({"series": ["s"], "value": [1.0]}),
    )
    claimed = sha256_bytes(b"the model we wrote")
    keys = secret_keys(cloud.client("secretsmanager"), cloud.dep.model_signing_secret_arn)
    signature = sign_model_ref(keys, "demo_dq", model_uri, claimed, "v1")
    event = ModelTrained(
        run_id="r-9",
        dataset="demo_dq",
        reused=True,
        metrics={},
        model={"uri": model_uri, "sha256": claimed, "version": "v1", "signature": signature},
        labeled=data,
        new=data,
        window={
            "history_start": "2026-01-01T00:00:00Z",
            "new_start": "2026-02-01T00:00:00Z",
            "new_end": "2026-02-02T00:00:00Z",
        },
    )
    cloud.client("sqs").send_message(
        QueueUrl=cloud.dep.queue_urls["scorer"], MessageBody=json.dumps(envelope(event, "dqad.trainer"))
    )
    cloud.pump(only=("scorer",), deadline_s=30)

    assert loads == []
    failed = storage.get_json(storage.uri("events/r-9/StageFailed-scorer.json"))["detail"]
    assert failed["error_type"] == "PermanentError" and "refusing to load model" in failed["message"]
    [dead] = cloud.dead_letters("scorer")
    assert "does not match" in dead["MessageAttributes"]["error"]["StringValue"]
