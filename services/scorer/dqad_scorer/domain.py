"""Scorer: apply the run's model to the new load; expected ranges, severity and reasons per row, and the
load's incidents: its anomalies grouped and named (docs/architecture.md §6, :mod:`dqad.incidents`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dqad import incidents as inc
from dqad.contract import AnomaliesScored, DataRef, ModelTrained
from dqad.datasets import Dataset
from dqad.report import render_report
from dqad.signing import SignatureError, secret_keys, verify_model_ref
from dqad.stage import PermanentError, StageRuntime
from dqad.storage import IntegrityError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def load_model(rt: StageRuntime, detail: ModelTrained):
    """Load the model only if the trainer signed its reference and its bytes hash to that sha256.

    The sha256 alone proves nothing (whoever writes the event chooses it), so the signature over
    (dataset, uri, sha256, version) is checked before a byte is read (docs/architecture.md §8,
    habit 11). The bytes are then read as a ``model.dqad`` file (dqad.detect.model_format), which
    builds data and never runs code: a pickle or joblib file, or a class outside the format's
    trusted list, is refused.
    """
    from dqad.detect.model_format import ModelFormatError, loads

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
    try:
        return loads(data)
    except ModelFormatError as exc:
        raise PermanentError(f"refusing to load model {ref.uri}: {exc}") from exc


def read_inputs(rt: StageRuntime, detail: ModelTrained) -> tuple[pa.Table, pa.Table]:
    """The labelled history and the new rows, strings dictionary-encoded (``score_table`` works on codes)."""
    return (
        rt.storage.read_table(detail.labeled, strings_as_dictionary=True),
        rt.storage.read_table(detail.new, strings_as_dictionary=True),
    )


def score(rt: StageRuntime, detail: ModelTrained) -> AnomaliesScored | None:
    """Score the run's new rows; a sharded run's shard scores its part and the last one joins them.

    A shard writes its scores and the history of its flagged series as parts; the join
    (:func:`dqad.shard_join.complete`) concatenates them and names the incidents, writes the report
    and publishes AnomaliesScored exactly as an unsharded run does, from the same rows.
    """
    from dqad.detect.scoring import keep_freed_memory, score_table

    keep_freed_memory()  # this process only scores: reuse freed memory instead of faulting it in again
    bundle = load_model(rt, detail)
    history, new = read_inputs(rt, detail)
    table = score_table(bundle, history, new)
    del new
    prefix = rt.run_prefix(detail.dataset, detail.run_id)
    shard = detail.shard
    if shard is None:
        ref = rt.storage.write_parquet(f"{prefix}/scores.parquet", table)
        scores = table.to_pandas()
        return publish_scored(rt, detail, ref, scores, _report_history(history, scores))

    from dqad.shard_join import complete
    from dqad.shards import part_uri

    ref = rt.storage.write_parquet(part_uri(prefix, "scores", shard.index), table)
    flagged = _flagged_history(history, table)
    del history
    flagged_ref = rt.storage.write_parquet(part_uri(prefix, "flagged", shard.index), flagged)

    def assemble(results: list[dict]) -> None:
        import pyarrow as pa

        from dqad.detect.scoring import plain_strings

        parts = [rt.storage.read_table(DataRef.model_validate(r["scores"])) for r in results]
        joined = pa.concat_tables([plain_strings(p) for p in parts], promote_options="default")
        whole = rt.storage.write_parquet(f"{prefix}/scores.parquet", joined)
        flagged_parts = [plain_strings(rt.storage.read_table(DataRef.model_validate(r["flagged"]))) for r in results]
        flagged_history = pa.concat_tables(flagged_parts, promote_options="default").to_pandas()
        publish_scored(rt, detail, whole, joined.to_pandas(), flagged_history)

    result = {"scores": ref.model_dump(mode="json"), "flagged": flagged_ref.model_dump(mode="json")}
    complete(rt, detail, shard, result, assemble)
    return None


def publish_scored(
    rt: StageRuntime, detail: ModelTrained, ref: DataRef, scores: pd.DataFrame, flagged_history: pd.DataFrame
) -> AnomaliesScored:
    """The run's incidents, report and AnomaliesScored, from all its scores."""
    prefix = rt.run_prefix(detail.dataset, detail.run_id)
    found = find_incidents(rt.catalog.get(detail.dataset), scores, flagged_history)
    incidents_uri = f"{prefix}/incidents.json"
    incidents_ref = DataRef(
        uri=incidents_uri,
        rows=len(found),
        sha256=rt.storage.put_bytes(incidents_uri, inc.dumps(found), "application/json"),
    )
    report_uri = f"{prefix}/report.html"
    html = render_report(
        detail.dataset,
        detail.run_id,
        flagged_history,
        scores,
        model_version=detail.model.version,
        model_metrics=detail.metrics,
        incidents=found,
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
        incidents=incidents_ref,
    )
    rt.publisher.publish(event)
    return event


PREVIOUS_LOADS = 30  # values before a load that stuck-value and drift rules look at


def find_incidents(ds: Dataset, scores: pd.DataFrame, history: pd.DataFrame) -> list[inc.Incident]:
    """The run's incidents: the scores' flagged loads, named by :func:`dqad.incidents.find_incidents`.

    Only loads with an anomaly are read; ``history`` (the flagged series' history) gives each flagged
    series its previous values, and the dataset's job column (a context column the scores carry)
    each load group its ETL job.
    """
    opts = ds.incidents
    if scores.empty or not scores["is_anomaly"].any():
        return []
    keys = scores.loc[scores["is_anomaly"].astype(bool), ["group", "timestamp"]].drop_duplicates()
    loads = scores.merge(keys, on=["group", "timestamp"])
    jobs: dict[str, str] = {}
    if opts.job_column in loads.columns:
        named = loads.dropna(subset=[opts.job_column]).sort_values("timestamp")
        jobs = {str(g): str(j) for g, j in zip(named["group"], named[opts.job_column], strict=True) if str(j)}
    previous: dict[str, list[float]] = {}
    if not history.empty:
        first = loads.groupby("series")["timestamp"].min()
        hist = history.sort_values("timestamp")
        for series, rows in hist.groupby("series", sort=False):
            cut = first.get(series)
            before = rows[rows["timestamp"] < cut] if cut is not None else rows
            previous[str(series)] = before["value"].tail(PREVIOUS_LOADS).astype(float).tolist()
    points: Any = loads.itertuples(index=False)  # rows with the Point attributes (scores' columns)
    return inc.find_incidents(points, opts.rules(), dataset=ds.name, jobs=jobs, previous=previous)


def _report_history(history: pa.Table, scores: pd.DataFrame) -> pd.DataFrame:
    """The history the report plots: the flagged series' rows only, with plain string columns."""
    from dqad.detect.scoring import plain_strings

    wanted = scores.loc[scores["is_anomaly"], "series"].unique().tolist()
    return plain_strings(_history_of(history, wanted)).to_pandas()


def _flagged_history(history: pa.Table, scores: pa.Table) -> pa.Table:
    """A shard's part of the report's history: its flagged series' rows, plain string columns."""
    import pyarrow.compute as pc

    from dqad.detect.scoring import plain_strings

    flagged = scores.filter(pc.equal(scores.column("is_anomaly"), True)).column("series")
    wanted = [str(s) for s in pc.unique(flagged.cast("string")).to_pylist()] if len(flagged) else []
    return plain_strings(_history_of(history, wanted))


def _history_of(history: pa.Table, wanted: list[str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    if history.num_rows == 0 or not wanted:
        return history.slice(0, 0)
    series = history["series"]
    if pa.types.is_dictionary(series.type):
        series = series.cast(series.type.value_type)
    return history.filter(pc.is_in(series, value_set=pa.array(wanted, type=series.type)))
