"""Models cannot be forged or overwritten, and a model file cannot run code (docs/architecture.md §8,
habit 11; docs/security.md).

The attack this guards against: whoever can put a ModelTrained on the scorer's queue (or rewrite
champion.json) points the scorer at a file of their own, with its own sha256 in the event. Were it
loaded as a pickle (joblib), loading it would run their code. Here the crafted file really would run
a command (it creates a marker file); every test checks the marker is never created: a forged
reference is refused before a byte is read, and even a correctly signed pickle, or a model file
naming a class outside the format's trusted list, is refused by the format (dqad.detect.model_format).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from dqad.bus import envelope
from dqad.contract import ModelTrained
from dqad.signing import SignatureError, secret_keys, sign_model_ref, verify_model_ref
from dqad.stage import PermanentError, runtime
from dqad.storage import AlreadyExists, Storage, sha256_bytes
from dqad_dev.local import LocalCloud
from tests.model_events import model_trained_event


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def crafted_model(marker: Path) -> bytes:
    data = pickle.dumps(_RunsACommand(marker))
    assert not marker.exists()
    return data


def forged_event(storage: Storage, model_uri: str, sha256: str, signature: str = "") -> ModelTrained:
    return model_trained_event(storage, model_uri, sha256, signature=signature, version="evil", run_id="r-forged")


def send_to_scorer(cloud: LocalCloud, event: ModelTrained) -> str:
    cloud.client("sqs").send_message(
        QueueUrl=cloud.dep.queue_urls["scorer"], MessageBody=json.dumps(envelope(event, "dqad.trainer"))
    )
    cloud.pump(only=("scorer",), deadline_s=30)
    [dead] = cloud.dead_letters("scorer", expect=1)
    return dead["MessageAttributes"]["error"]["StringValue"]


@pytest.mark.parametrize("signature", ["", "AAAA-not-the-trainers-signature"])
def test_a_forged_event_with_a_crafted_model_and_its_own_sha256_runs_no_code(
    cloud: LocalCloud, storage: Storage, tmp_path: Path, signature: str
) -> None:
    marker = tmp_path / "pwned"
    evil = crafted_model(marker)
    model_uri = storage.uri("models/demo_dq/evil/model.dqad")
    storage.put_bytes(model_uri, evil)
    reason = send_to_scorer(cloud, forged_event(storage, model_uri, sha256_bytes(evil), signature))
    assert not marker.exists(), "the crafted model ran its command in the scorer"
    assert "refusing to load model" in reason and ("not signed" in reason or "did not make" in reason)


def signed_event(cloud: LocalCloud, storage: Storage, model_uri: str, data: bytes) -> ModelTrained:
    """A reference signed with the deployment's own key: only the model format stands in the way."""
    keys = secret_keys(cloud.client("secretsmanager"), cloud.dep.model_signing_secret_arn)
    sha = sha256_bytes(data)
    return forged_event(storage, model_uri, sha, sign_model_ref(keys, "demo_dq", model_uri, sha, "evil"))


def test_even_a_correctly_signed_pickle_is_refused_and_runs_no_code(
    cloud: LocalCloud, storage: Storage, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = crafted_model(marker)
    model_uri = storage.uri("models/demo_dq/evil/model.dqad")
    storage.put_bytes(model_uri, evil)
    reason = send_to_scorer(cloud, signed_event(cloud, storage, model_uri, evil))
    assert not marker.exists(), "the crafted model ran its command in the scorer"
    assert "refusing to load model" in reason and "pickle or joblib model is never loaded" in reason


def test_a_signed_model_file_naming_an_untrusted_class_runs_no_code(
    cloud: LocalCloud, storage: Storage, tmp_path: Path
) -> None:
    import io
    import zipfile

    marker = tmp_path / "pwned"
    system = {"object": {"class": "posix.system", "call": True, "args": [f"touch {marker}"], "state": None}}
    doc = {"format": "dqad-model", "format_version": 1, "arrays": [],
           "bundle": {"estimator": system, "feature_names": [], "threshold": 0.5, "kind": "robust"}}  # fmt: skip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bundle.json", json.dumps(doc))
        zf.writestr("arrays.bin", b"")
    evil = buf.getvalue()
    model_uri = storage.uri("models/demo_dq/evil/model.dqad")
    storage.put_bytes(model_uri, evil)
    reason = send_to_scorer(cloud, signed_event(cloud, storage, model_uri, evil))
    assert not marker.exists(), "the crafted model ran its command in the scorer"
    assert "refusing to load model" in reason and "'posix.system' is not trusted" in reason


def test_a_signature_covers_uri_sha256_dataset_and_version() -> None:
    keys = [b"k" * 32]
    sig = sign_model_ref(keys, "ds", "s3://b/models/ds/v1/model.dqad", "a" * 64, "v1")
    verify_model_ref(keys, "ds", "s3://b/models/ds/v1/model.dqad", "a" * 64, "v1", sig)
    for changed in (
        ("other", "s3://b/models/ds/v1/model.dqad", "a" * 64, "v1"),
        ("ds", "s3://b/models/ds/v2/model.dqad", "a" * 64, "v1"),
        ("ds", "s3://b/models/ds/v1/model.dqad", "b" * 64, "v1"),
        ("ds", "s3://b/models/ds/v1/model.dqad", "a" * 64, "v2"),
    ):
        with pytest.raises(SignatureError):
            verify_model_ref(keys, *changed, sig)
    with pytest.raises(SignatureError):
        verify_model_ref([b"x" * 32], "ds", "s3://b/models/ds/v1/model.dqad", "a" * 64, "v1", sig)


def test_a_rewritten_champion_is_refused_by_the_trainer(cloud: LocalCloud, storage: Storage, tmp_path: Path) -> None:
    """champion.json pointing at a crafted model (what the SageMaker role could write before)."""
    from dqad_trainer import domain

    marker = tmp_path / "pwned"
    evil = crafted_model(marker)
    model_uri = storage.uri("models/demo_dq/evil/model.dqad")
    storage.put_bytes(model_uri, evil)
    champion = {"version": "evil", "uri": model_uri, "sha256": sha256_bytes(evil), "metrics": {}}
    request = forged_event(storage, model_uri, sha256_bytes(evil))
    with pytest.raises(PermanentError, match=r"champion of demo_dq: .*not signed"):
        domain.model_trained(runtime("trainer"), request, champion, reused=True)  # type: ignore[arg-type]
    keys = secret_keys(cloud.client("secretsmanager"), cloud.dep.model_signing_secret_arn)
    signed = domain.sign_champion(keys, "demo_dq", {**champion, "sha256": "0" * 64})
    with pytest.raises(PermanentError, match="did not make"):  # a signature lifted from another record
        domain.model_trained(runtime("trainer"), request, {**signed, "sha256": sha256_bytes(evil)}, reused=True)  # type: ignore[arg-type]
    assert not marker.exists()


def test_model_files_are_write_once_with_a_conditional_put(cloud: LocalCloud, storage: Storage) -> None:
    sent: list[dict] = []
    storage.s3.meta.events.register("before-call.s3.PutObject", lambda params, **_: sent.append(params))
    uri = storage.uri("models/demo_dq/v1/model.dqad")
    storage.put_new(uri, b"first")
    with pytest.raises(AlreadyExists, match="write-once"):
        storage.put_new(uri, b"second")
    assert storage.get_bytes(uri) == b"first"
    # the condition travels on the wire (moto enforces it; so does S3 since 2024)
    assert [p["headers"].get("If-None-Match") for p in sent] == ["*", "*"]


def test_write_once_on_a_local_path_too(tmp_path: Path) -> None:
    storage = Storage(None, "unused")
    uri = str(tmp_path / "models" / "v1" / "model.joblib")
    storage.put_new(uri, b"first")
    with pytest.raises(AlreadyExists):
        storage.put_new(uri, b"second")
    assert Path(uri).read_bytes() == b"first"


def test_an_unsigned_champion_is_never_reused(cloud: LocalCloud, storage: Storage) -> None:
    """An old or rewritten champion.json counts as no champion: the run trains a new one."""
    from dqad_trainer import domain

    storage.put_json(
        storage.uri("models/demo_dq/champion.json"),
        {"version": "v0", "uri": storage.uri("models/demo_dq/v0/model.dqad"), "sha256": "0" * 64},
    )
    assert domain.read_champion(runtime("trainer"), "demo_dq") is None
