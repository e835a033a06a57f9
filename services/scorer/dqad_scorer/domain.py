"""Scorer: apply the run's model to the new load; expected ranges, severity and reasons per row."""

from __future__ import annotations

import io

from dqad.contract import AnomaliesScored, ModelTrained
from dqad.report import render_report
from dqad.stage import PermanentError, StageRuntime
from dqad.storage import IntegrityError


def load_model(rt: StageRuntime, detail: ModelTrained):
    """Load the model only if its bytes hash to the sha256 the event recorded (joblib is pickle)."""
    import joblib

    try:
        data = rt.storage.get_bytes(detail.model.uri, sha256=detail.model.sha256)
    except IntegrityError as exc:
        raise PermanentError(f"refusing to load model: {exc}") from exc
    return joblib.load(io.BytesIO(data))


def score(rt: StageRuntime, detail: ModelTrained) -> AnomaliesScored:
    from dqad.detect.scoring import score_new

    bundle = load_model(rt, detail)
    history = rt.storage.read_parquet(detail.labeled)
    new = rt.storage.read_parquet(detail.new)
    scores = score_new(bundle, history, new)
    prefix = rt.run_prefix(detail.dataset, detail.run_id)
    ref = rt.storage.write_parquet(f"{prefix}/scores.parquet", scores)
    report_uri = f"{prefix}/report.html"
    html = render_report(
        detail.dataset, detail.run_id, history, scores, model_version=detail.model.version, model_metrics=detail.metrics
    )
    rt.storage.put_bytes(report_uri, html.encode(), "text/html; charset=utf-8")
    event = AnomaliesScored(
        run_id=detail.run_id,
        dataset=detail.dataset,
        scores=ref,
        scored_rows=len(scores),
        anomaly_count=int(scores["is_anomaly"].sum()),
        report=report_uri,
        model_version=detail.model.version,
    )
    rt.publisher.publish(event)
    return event
