"""Trainer: reuse a fresh champion, or start a training job; turn the job's end into ModelTrained.

Champion/challenger bookkeeping lives in S3:
``models/<dataset>/champion.json`` -> {version, uri, sha256, metrics, trained_at, labels_fingerprint,
label_rate}; ``models/<dataset>/<version>/{model.dqad, metrics.json}`` for every trained model.
The job request is kept at ``jobs/<job_name>.json`` so the job-state event alone (which carries only
the job name) is enough to finish the run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from dqad.contract import DatasetLabeled, ModelRef, ModelTrained, Shard, StageFailed, parse_detail
from dqad.datasets import Dataset
from dqad.detect.model_format import MODEL_FILE
from dqad.feedback import fingerprint, read_labels
from dqad.signing import SignatureError, secret_keys, sign_model_ref, verify_model_ref
from dqad.stage import PermanentError, StageRuntime
from dqad.storage import IntegrityError
from dqad.topology import SAGEMAKER_JOB_PREFIX
from dqad_trainer.runners import JobSpec, LocalRunner, SageMakerRunner

logger = Logger(service="dqad-trainer")


def champion_uri(rt: StageRuntime, dataset: str) -> str:
    return rt.storage.uri(f"models/{dataset}/champion.json")


def job_name_for(run_id: str) -> str:
    return f"{SAGEMAKER_JOB_PREFIX}{run_id}"[:63]


def read_champion(rt: StageRuntime, dataset: str) -> dict | None:
    """The champion record, or None when there is none *or it is not signed by this trainer*.

    An unsigned or mis-signed champion.json (written before signing existed, or by someone else)
    is never reused: the run trains a challenger, which then becomes the champion. So is a champion
    in the old pickle format (``model.joblib``), which the scorer no longer loads.
    """
    uri = champion_uri(rt, dataset)
    if not rt.storage.exists(uri):
        return None
    champion = rt.storage.get_json(uri)
    try:
        verify_model_ref(
            signing_keys(rt), dataset, champion["uri"], champion["sha256"], champion["version"],
            str(champion.get("signature", "")),
        )  # fmt: skip
    except (SignatureError, KeyError, TypeError) as exc:
        logger.warning("champion.json not trusted; training a new one", extra={"dataset": dataset, "why": str(exc)})
        return None
    if not str(champion["uri"]).endswith(f"/{MODEL_FILE}"):
        logger.warning(
            "champion is not a model file the scorer loads; training a new one",
            extra={"dataset": dataset, "uri": champion["uri"]},
        )
        return None
    return champion


def signing_keys(rt: StageRuntime) -> list[bytes]:
    """The model-reference HMAC keys (docs/architecture.md §8, habit 11); required on every deployment."""
    rt.settings.require("model_signing_secret_arn")
    return secret_keys(rt.clients("secretsmanager"), rt.settings.model_signing_secret_arn)


def sign_champion(keys: list[bytes], dataset: str, champion: dict) -> dict:
    """champion.json carries the signature of its model reference, so a rewritten pointer is refused."""
    signature = sign_model_ref(keys, dataset, champion["uri"], champion["sha256"], champion["version"])
    return {**champion, "signature": signature}


def defined_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that have a value: F1 or PR-AUC of a history without one labelled anomaly is
    undefined (NaN), and an undefined figure in the event would be a null the scorer must refuse."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def model_trained(
    rt: StageRuntime, request: DatasetLabeled, champion: dict, *, reused: bool, job_name: str | None = None
) -> ModelTrained:
    """The event that hands the run to the scorer with the champion (reused, promoted or kept).

    The champion record is verified first (whoever could rewrite champion.json must not choose the
    model), then the reference is signed for the scorer.
    """
    keys = signing_keys(rt)
    try:
        verify_model_ref(
            keys, request.dataset, champion["uri"], champion["sha256"], champion["version"],
            str(champion.get("signature", "")),
        )  # fmt: skip
    except SignatureError as exc:
        raise PermanentError(f"champion of {request.dataset}: {exc}") from exc
    signature = sign_model_ref(keys, request.dataset, champion["uri"], champion["sha256"], champion["version"])
    return ModelTrained(
        run_id=request.run_id,
        dataset=request.dataset,
        model=ModelRef(
            uri=champion["uri"], sha256=champion["sha256"], version=champion["version"], signature=signature
        ),
        reused=reused,
        metrics=defined_metrics(champion["metrics"]),
        labeled=request.labeled,
        new=request.new,
        window=request.window,
        job_name=job_name,
    )


def staleness(champion: dict | None, ds: Dataset, labels_fp: str, label_rate: float, now: datetime) -> str:
    """Why the champion cannot be reused ("" when it can)."""
    if champion is None:
        return "no champion yet"
    age_days = (now - datetime.fromisoformat(champion["trained_at"])).total_seconds() / 86400
    if age_days > ds.trainer.max_model_age_days:
        return f"champion is {age_days:.1f} days old (max {ds.trainer.max_model_age_days})"
    if ds.trainer.retrain_on_new_labels and champion.get("labels_fingerprint", "") != labels_fp:
        return "new human labels since the champion was trained"
    old_rate = float(champion.get("label_rate", 0.0))
    base = max(old_rate, 1e-3)
    if abs(label_rate - old_rate) / base > ds.trainer.drift_threshold and abs(label_rate - old_rate) > 0.002:
        return f"label rate drifted from {old_rate:.4f} to {label_rate:.4f}"
    return ""


def on_labeled(rt: StageRuntime, detail: DatasetLabeled) -> ModelTrained | None:
    try:
        ds = rt.catalog.get(detail.dataset)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc
    champion = read_champion(rt, ds.name)
    labels_fp = fingerprint(read_labels(rt.storage, ds.name))
    total = sum(detail.label_counts.values())
    label_rate = total / detail.labeled.rows if detail.labeled.rows else 0.0
    why = staleness(champion, ds, labels_fp, label_rate, datetime.now(UTC))
    if not why:
        assert champion is not None
        event = model_trained(rt, detail, champion, reused=True)
        publish_trained(rt, event, detail)
        return event
    logger.info("training a challenger", extra={"run_id": detail.run_id, "reason": why})
    start_job(rt, ds, detail, champion, labels_fp, label_rate)
    return None


def start_job(
    rt: StageRuntime, ds: Dataset, detail: DatasetLabeled, champion: dict | None, labels_fp: str, label_rate: float
) -> str:
    name = job_name_for(detail.run_id)
    version = free_version(rt, ds.name, detail.run_id)
    config_uri = rt.storage.uri(f"jobs/{name}/config/config.json")
    rt.storage.put_json(config_uri, {"detector": ds.stage_settings("detector"), "version": version, "dataset": ds.name})
    rt.storage.put_json(
        rt.storage.uri(f"jobs/{name}.json"),
        {
            "request": detail.model_dump(mode="json"),
            "version": version,
            "labels_fingerprint": labels_fp,
            "label_rate": label_rate,
        },
    )
    inputs = {"data": detail.labeled.uri, "config": config_uri}
    if champion is not None:
        inputs["champion"] = champion["uri"].rsplit("/", 1)[0] + "/metrics.json"
    spec = JobSpec(
        name=name,
        inputs=inputs,
        output_uri=rt.storage.uri(f"models/{ds.name}/{version}"),
        environment={"DQAD_JOB_VERSION": version, "DQAD_TRAIN_SAMPLE_ROWS": str(ds.trainer.sample_rows)},
        instance_type=ds.trainer.instance_type,
        instance_count=ds.trainer.instance_count,
    )
    runner_for(rt).start(spec)
    return name


def free_version(rt: StageRuntime, dataset: str, run_id: str) -> str:
    """A model version never used before: a replay of the run trains ``v<run>-2``, never over ``v<run>``.

    Model versions are write-once (the scorer may already hold a signed reference to one); the
    runner's uploads are conditional too, so a race between two deliveries cannot rewrite either.
    """
    for attempt in range(1, 100):
        version = f"v{run_id}" if attempt == 1 else f"v{run_id}-{attempt}"
        if not rt.storage.exists(rt.storage.uri(f"models/{dataset}/{version}/metrics.json")):
            return version
    raise PermanentError(f"run {run_id} of {dataset} already trained 99 model versions; refusing another")


def runner_for(rt: StageRuntime) -> Any:
    s = rt.settings
    if s.job_runner == "local":
        return LocalRunner(rt.storage, rt.clients("events"))
    s.require("trainer_image_uri", "sagemaker_role_arn")
    return SageMakerRunner(rt.clients("sagemaker"), s.trainer_image_uri, s.sagemaker_role_arn, s.trainer_instance_type)


def on_job_state(rt: StageRuntime, event: dict) -> ModelTrained | None:
    """Finish a run from SageMaker's job-state event: promote (or not), then ModelTrained or StageFailed."""
    detail = event.get("detail") or {}
    name = str(detail.get("ProcessingJobName", ""))
    status = detail.get("ProcessingJobStatus")
    job_uri = rt.storage.uri(f"jobs/{name}.json")
    if not name.startswith(SAGEMAKER_JOB_PREFIX) or not rt.storage.exists(job_uri):
        logger.warning("job-state event for a job dqad did not start; ignored", extra={"job": name})
        return None
    job = rt.storage.get_json(job_uri)
    request = parse_detail("DatasetLabeled", job["request"])
    if not isinstance(request, DatasetLabeled):
        raise PermanentError(f"{job_uri}: request is a {request.detail_type}, expected DatasetLabeled")
    if status != "Completed":
        rt.publisher.publish(
            StageFailed(
                run_id=request.run_id,
                dataset=request.dataset,
                stage="trainer",
                error_type=f"ProcessingJob{status}",
                message=str(detail.get("FailureReason") or f"processing job {name} ended {status}"),
                input_event=rt.storage.uri(f"events/{request.run_id}/DatasetLabeled.json"),
            )
        )
        return None
    version = job["version"]
    base = rt.storage.uri(f"models/{request.dataset}/{version}")
    report = rt.storage.get_json(f"{base}/metrics.json")
    model_uri = f"{base}/{MODEL_FILE}"
    try:
        rt.storage.get_bytes(model_uri, sha256=report["model_sha256"])
    except IntegrityError as exc:
        raise PermanentError(str(exc)) from exc
    champion = read_champion(rt, request.dataset)
    if report["promote"] or champion is None:
        champion = {
            "version": version,
            "uri": model_uri,
            "sha256": report["model_sha256"],
            "metrics": report["metrics"],
            "trained_at": report["trained_at"],
            "labels_fingerprint": job["labels_fingerprint"],
            "label_rate": job["label_rate"],
        }
        champion = sign_champion(signing_keys(rt), request.dataset, champion)
        rt.storage.put_json(champion_uri(rt, request.dataset), champion)
    else:
        logger.info("challenger not better; champion kept", extra={"reason": report.get("reason")})
    trained = model_trained(rt, request, champion, reused=False, job_name=name)
    publish_trained(rt, trained, request)
    return trained


def publish_trained(rt: StageRuntime, event: ModelTrained, request: DatasetLabeled) -> None:
    """Hand the run to the scorer: one ModelTrained, or one per shard of a sharded run.

    Each shard's message carries that shard's labelled history and new rows; the scorer's shards
    of this fan-out join on its id (:func:`dqad.shards.join_id`).
    """
    if not request.shards:
        rt.publisher.publish(event)
        return
    from dqad.shards import join_id

    count = len(request.shards)
    join = join_id("trainer", event.model.sha256, event.model.version, request.labeled.sha256, request.new.sha256)
    for part in request.shards:
        rt.publisher.publish(
            event.model_copy(
                update={
                    "labeled": part.labeled,
                    "new": part.new,
                    "shard": Shard(index=part.index, count=count, join=join),
                }
            )
        )
