"""Trainer: champion reuse rules, the SageMaker job request (on moto), job completion and failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from dqad.contract import DatasetLabeled
from dqad.datasets import parse_catalog
from dqad.detect.config import DetectorConfig, LabelerConfig
from dqad.detect.labeling import label_history
from dqad.feedback import write_label
from dqad.settings import Settings
from dqad.stage import runtime
from dqad.storage import Storage
from dqad_dev.local import LocalCloud
from dqad_dev.synth import generate
from dqad_trainer import domain
from dqad_trainer.runners import job_state_entry
from tests.fakes import MemoryStorage

CATALOG = """
[datasets.tiny_dq]
keys = ["table_name", "metric_name"]
timestamp = "load_ts"
value = "metric_value"
group = ["table_name"]
[datasets.tiny_dq.trigger]
table_names = ["dq.tiny"]
[datasets.tiny_dq.source]
kind = "file"
path = "unused.parquet"
[datasets.tiny_dq.trainer]
max_model_age_days = 7
"""


@pytest.fixture
def labeled_event(cloud: LocalCloud, storage: Storage) -> DatasetLabeled:
    storage.put_bytes(storage.uri("config/datasets.toml"), CATALOG.encode())
    data = generate(tables=4, days=90, seed=5)
    ds = parse_catalog(CATALOG).get("tiny_dq")
    from dqad_fetcher.canonical import to_canonical

    frame = to_canonical(data.metrics, ds)
    labeled = label_history(frame, None, LabelerConfig(holidays=data.holidays))
    ref = storage.write_parquet(storage.uri("runs/tiny_dq/r-1/labeled.parquet"), labeled)
    counts = labeled.loc[labeled["label"] == 1, "label_source"].value_counts().to_dict()
    t = datetime(2026, 11, 2, tzinfo=UTC)
    return DatasetLabeled(
        run_id="20261102T0600-aaaaaaaaaaaa",
        dataset="tiny_dq",
        labeled=ref,
        new=ref,
        label_counts={str(k): int(v) for k, v in counts.items()},
        window={"history_start": t - timedelta(days=90), "new_start": t, "new_end": t},
    )


def _sagemaker_runtime(cloud: LocalCloud):
    settings = Settings(
        **{
            **cloud.dep.settings().__dict__,
            "job_runner": "sagemaker",
            "trainer_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/dqad-trainer:1",
            "sagemaker_role_arn": "arn:aws:iam::123456789012:role/dqad-sagemaker",
        }
    )
    return runtime("trainer", settings)


def test_without_champion_a_processing_job_is_requested_on_sagemaker(cloud, labeled_event) -> None:
    rt = _sagemaker_runtime(cloud)
    assert domain.on_labeled(rt, labeled_event) is None  # nothing emitted yet: the job will finish the run
    name = domain.job_name_for(labeled_event.run_id)
    assert len(name) <= 63 and labeled_event.run_id in name
    job = cloud.client("sagemaker").describe_processing_job(ProcessingJobName=name)
    assert job["AppSpecification"]["ImageUri"].endswith("dqad-trainer:1")
    assert job["AppSpecification"]["ContainerEntrypoint"] == ["python3", "-m", "dqad_trainer.job"]
    assert job["RoleArn"].endswith("role/dqad-sagemaker")
    channels = {i["InputName"]: i["S3Input"]["S3Uri"] for i in job["ProcessingInputs"]}
    assert channels["data"] == labeled_event.labeled.uri and "champion" not in channels
    out = job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]
    assert out["S3Uri"].endswith(f"models/tiny_dq/v{labeled_event.run_id}")


def test_job_failure_event_becomes_stage_failed(cloud, storage, labeled_event) -> None:
    rt = _sagemaker_runtime(cloud)
    domain.on_labeled(rt, labeled_event)
    name = domain.job_name_for(labeled_event.run_id)
    event = {"detail": json.loads(job_state_entry(name, "Failed", "ClientError: out of memory")["Detail"])}
    assert domain.on_job_state(rt, event) is None
    failed = storage.get_json(storage.uri(f"events/{labeled_event.run_id}/StageFailed-trainer.json"))["detail"]
    assert failed["error_type"] == "ProcessingJobFailed" and "out of memory" in failed["message"]
    assert failed["input_event"].endswith(f"events/{labeled_event.run_id}/DatasetLabeled.json")


def test_local_job_trains_promotes_then_the_champion_is_reused(cloud, storage, labeled_event) -> None:
    rt = runtime("trainer")  # job_runner=local: subprocess + a job-state event on the default bus
    storage.put_json(storage.uri(f"events/{labeled_event.run_id}/DatasetLabeled.json"), {})
    domain.on_labeled(rt, labeled_event)
    cloud.pump(only=("trainer",), deadline_s=120)
    trained = storage.get_json(storage.uri(f"events/{labeled_event.run_id}/ModelTrained.json"))["detail"]
    assert trained["reused"] is False and trained["job_name"] == domain.job_name_for(labeled_event.run_id)
    champion = storage.get_json(storage.uri("models/tiny_dq/champion.json"))
    assert champion["version"] == trained["model"]["version"] and champion["sha256"] == trained["model"]["sha256"]
    assert storage.get_bytes(champion["uri"], sha256=champion["sha256"])  # the model is where it says

    again = domain.on_labeled(rt, labeled_event.model_copy(update={"run_id": "20261103T0600-bbbbbbbbbbbb"}))
    assert again is not None and again.reused and again.model.version == champion["version"]


def test_champion_staleness_rules() -> None:
    storage = MemoryStorage()  # pure rules: no AWS needed
    ds = parse_catalog(CATALOG).get("tiny_dq")
    now = datetime(2026, 11, 2, tzinfo=UTC)
    fresh = {"trained_at": (now - timedelta(days=1)).isoformat(), "labels_fingerprint": "", "label_rate": 0.02}
    assert domain.staleness(fresh, ds, "", 0.02, now) == ""
    assert "no champion" in domain.staleness(None, ds, "", 0.02, now)
    assert "days old" in domain.staleness(
        {**fresh, "trained_at": (now - timedelta(days=9)).isoformat()}, ds, "", 0.02, now
    )
    write_label(storage, "tiny_dq", "t/row_count", "2026-10-01", "normal")
    assert "human labels" in domain.staleness(fresh, ds, "abc123", 0.02, now)
    assert "drifted" in domain.staleness(fresh, ds, "", 0.08, now)


def test_the_local_job_tells_its_training_progress_to_the_runner(cloud, storage, labeled_event, monkeypatch) -> None:
    """What the CLI's training bar is drawn from (dqad_dev.run.stage_bar): the job subprocess writes a
    start and one step per candidate and fold; the local runner relays them while the job runs."""
    from dqad_trainer import runners

    told: list[tuple[int, int | None]] = []
    monkeypatch.setattr(runners, "JOB_PROGRESS", lambda done, total: told.append((done, total)))
    domain.on_labeled(runtime("trainer"), labeled_event)
    cloud.pump(only=("trainer",), deadline_s=120)
    report = storage.get_json(storage.uri(f"models/tiny_dq/v{labeled_event.run_id}/metrics.json"))
    assert told[0] == (0, None)
    total = told[-1][0]
    assert told[1:] == [(i, total) for i in range(1, total + 1)]
    assert total in (len(report["candidates"]), len(report["candidates"]) * DetectorConfig().cv_folds)
    trained = storage.get_json(storage.uri(f"events/{labeled_event.run_id}/ModelTrained.json"))["detail"]
    assert trained["reused"] is False and trained["model"]["uri"].endswith("/model.dqad")


def test_a_challenger_that_is_not_better_leaves_the_champion(cloud, storage, labeled_event) -> None:
    rt = runtime("trainer")
    perfect = {
        "version": "v-old",
        "uri": storage.uri("models/tiny_dq/v-old/model.dqad"),
        "sha256": "1" * 64,
        "metrics": {"f1": 1.0, "precision": 1.0, "recall": 1.0, "pr_auc": 1.0},
        "trained_at": "2020-01-01T00:00:00+00:00",
        "labels_fingerprint": "",
        "label_rate": 0.0,
    }
    perfect = domain.sign_champion(domain.signing_keys(rt), "tiny_dq", perfect)  # the trainer promoted it
    storage.put_json(storage.uri("models/tiny_dq/champion.json"), perfect)  # stale: a challenger is trained
    storage.put_json(storage.uri("models/tiny_dq/v-old/metrics.json"), {"metrics": perfect["metrics"]})
    domain.on_labeled(rt, labeled_event)
    cloud.pump(only=("trainer",), deadline_s=120)
    report = storage.get_json(storage.uri(f"models/tiny_dq/v{labeled_event.run_id}/metrics.json"))
    assert report["promote"] is False and report["reason"]
    assert storage.get_json(storage.uri("models/tiny_dq/champion.json"))["version"] == "v-old"
    trained = storage.get_json(storage.uri(f"events/{labeled_event.run_id}/ModelTrained.json"))["detail"]
    assert trained["model"]["version"] == "v-old" and trained["reused"] is False


def test_a_champion_in_the_old_pickle_format_is_not_reused(cloud, storage) -> None:
    """A signed champion.json naming a model.joblib (written before model.dqad) counts as no champion:
    the scorer no longer loads pickles, so the run trains a new model instead of handing it that file."""
    rt = runtime("trainer")
    old = {"version": "v-old", "uri": storage.uri("models/tiny_dq/v-old/model.joblib"), "sha256": "1" * 64,
           "metrics": {}, "trained_at": datetime.now(UTC).isoformat()}  # fmt: skip
    keys = domain.signing_keys(rt)
    storage.put_json(storage.uri("models/tiny_dq/champion.json"), domain.sign_champion(keys, "tiny_dq", old))
    assert domain.read_champion(rt, "tiny_dq") is None
    current = {**old, "uri": storage.uri("models/tiny_dq/v-old/model.dqad")}
    storage.put_json(storage.uri("models/tiny_dq/champion.json"), domain.sign_champion(keys, "tiny_dq", current))
    assert domain.read_champion(rt, "tiny_dq")["uri"].endswith("/model.dqad")


def test_undefined_metrics_of_a_clean_history_do_not_break_the_event() -> None:
    """A history without one labelled anomaly has no F1: the event carries the metrics that exist,
    and it still parses as the scorer parses it (a NaN would reach the scorer as null)."""
    from dqad.contract import ModelTrained, parse_detail

    metrics = {"f1": float("nan"), "pr_auc": float("nan"), "threshold": 0.5, "rows": 1200.0, "none": None}
    assert domain.defined_metrics(metrics) == {"threshold": 0.5, "rows": 1200.0}
    event = ModelTrained(
        run_id="20261130T0301-70a07d46938c",
        dataset="shop_dq",
        model={"uri": "s3://dqad-bucket/models/shop_dq/v1/model.dqad", "sha256": "a" * 64, "version": "v1"},
        reused=False,
        metrics=domain.defined_metrics(metrics),
        labeled={"uri": "s3://dqad-bucket/runs/shop_dq/r/labeled.parquet", "rows": 1, "sha256": "b" * 64},
        new={"uri": "s3://dqad-bucket/runs/shop_dq/r/new.parquet", "rows": 1, "sha256": "c" * 64},
        window={"history_start": "2026-06-01T00:00:00", "new_start": "2026-11-30T00:00:00",
                "new_end": "2026-12-01T00:00:00"},
    )  # fmt: skip
    again = parse_detail("ModelTrained", json.loads(event.model_dump_json()))
    assert again.metrics == {"threshold": 0.5, "rows": 1200.0}
