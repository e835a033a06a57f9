"""Scorer: apply the run's model to the new load; expected ranges, severity and reasons per row."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from dqad.contract import AnomaliesScored, ModelTrained
from dqad.report import render_report
from dqad.signing import SignatureError, secret_keys, verify_model_ref
from dqad.stage import PermanentError, StageRuntime
from dqad.storage import IntegrityError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def load_model(rt: StageRuntime, detail: ModelTrained):
    """Load the model only if the trainer signed its reference and its bytes hash to that sha256.

    joblib is pickle: loading runs code. The sha256 alone proves nothing (whoever writes the event
    chooses it), so the signature over (dataset, uri, sha256, version) is checked before a byte is
    read (docs/architecture.md §8, habit 11).
    """
    import joblib

    rt.settings.require("model_signing_secret_arn")
    keys = secret_keys(rt.clients("secretsmanager"), rt.settings.model_signing_secret_arn)
    ref = detail.model
    try:
        verify_model_ref(keys, detail.dataset, ref.uri, ref.sha256, ref.version, ref.signature)
    except SignatureError as exc:
        raise PermanentError(f"refusing to load model: {exc}") from exc
    try:
        data = rt.storage.get_bytes(detail.model.uri, sha256=detail.model.sha256)
    except IntegrityError as exc:
        raise PermanentError(f"refusing to load model: {exc}") from exc
    return joblib.load(io.BytesIO(data))


def read_inputs(rt: StageRuntime, detail: ModelTrained) -> tuple[pa.Table, pa.Table]:
    """The labelled history and the new rows, strings dictionary-encoded (``score_table`` works on codes)."""
    return (
        rt.storage.read_table(detail.labeled, strings_as_dictionary=True),
        rt.storage.read_table(detail.new, strings_as_dictionary=True),
    )


def score(rt: StageRuntime, detail: ModelTrained) -> AnomaliesScored:
    from dqad.detect.scoring import keep_freed_memory, score_table

    keep_freed_memory()  # this process only scores: reuse freed memory instead of faulting it in again
    bundle = load_model(rt, detail)
    history, new = read_inputs(rt, detail)
    table = score_table(bundle, history, new)
    prefix = rt.run_prefix(detail.dataset, detail.run_id)
    ref = rt.storage.write_parquet(f"{prefix}/scores.parquet", table)
    scores = table.to_pandas()
    report_uri = f"{prefix}/report.html"
    html = render_report(
        detail.dataset,
        detail.run_id,
        _report_history(history, scores),
        scores,
        model_version=detail.model.version,
        model_metrics=detail.metrics,
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


def _report_history(history: pa.Table, scores: pd.DataFrame) -> pd.DataFrame:
    """The history the report plots: the flagged series' rows only, with plain string columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dqad.detect.scoring import plain_strings

    wanted = scores.loc[scores["is_anomaly"], "series"].unique().tolist()
    if history.num_rows == 0 or not wanted:
        return plain_strings(history.slice(0, 0)).to_pandas()
    series = history["series"]
    if pa.types.is_dictionary(series.type):
        series = series.cast(series.type.value_type)
    return plain_strings(history.filter(pc.is_in(series, value_set=pa.array(wanted, type=series.type)))).to_pandas()
