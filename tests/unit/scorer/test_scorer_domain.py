"""The scorer stage on the fakes: a trained model scores the new load, writes scores and report, and a
model file whose sha256 is not the one in the event is never loaded."""

from __future__ import annotations

import pytest

from dqad.contract import AnomaliesScored, ModelTrained
from dqad.detect import model_format
from dqad.detect.config import DetectorConfig, LabelerConfig
from dqad.detect.labeling import label_history
from dqad.detect.model import train_candidates
from dqad.incidents import Kind, loads
from dqad.signing import sign_model_ref
from dqad.stage import PermanentError, StageRuntime
from dqad_scorer.domain import score
from tests.fakes import MODEL_SIGNING_KEY
from tests.unit.stage_inputs import DATASET, RUN_ID, fetched_run, synthetic


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    data, frame = synthetic()
    labeled = label_history(frame, None, LabelerConfig(holidays=data.holidays))
    return model_format.dumps(train_candidates(labeled, DetectorConfig()).bundle)


def trained_run(model: bytes, sha256: str | None = None) -> tuple[StageRuntime, ModelTrained]:
    data, frame = synthetic()
    rt, fetched = fetched_run("scorer", frame)
    labeled = label_history(rt.storage.read_parquet(fetched.history), None, LabelerConfig(holidays=data.holidays))
    labeled_ref = rt.storage.write_parquet(f"{rt.run_prefix(DATASET, RUN_ID)}/labeled.parquet", labeled)
    model_uri = rt.storage.uri(f"models/{DATASET}/v1/model.dqad")
    written = rt.storage.put_bytes(model_uri, model)
    event = ModelTrained(
        run_id=RUN_ID,
        dataset=DATASET,
        model={
            "uri": model_uri,
            "sha256": sha256 or written,
            "version": "v1",
            # signed by the trainer's key, so only the sha256 check is under test here
            "signature": sign_model_ref([MODEL_SIGNING_KEY], DATASET, model_uri, sha256 or written, "v1"),
        },
        reused=False,
        metrics={"f1": 0.9},
        labeled=labeled_ref,
        new=fetched.new,
        window=fetched.window,
    )
    return rt, event


def test_new_load_is_scored_with_ranges_and_a_report(model_bytes: bytes) -> None:
    rt, trained = trained_run(model_bytes)
    event = score(rt, trained)
    assert rt.publisher.events == [event] and isinstance(event, AnomaliesScored)
    scores = rt.storage.read_parquet(event.scores)
    assert event.scored_rows == len(scores) == trained.new.rows
    assert event.anomaly_count == int(scores["is_anomaly"].sum()) > 0, "the empty last load is flagged"
    flagged = scores[scores["is_anomaly"]]
    assert (flagged["value"] == 0).any()
    outside = (flagged["value"] < flagged["expected_low"]) | (flagged["value"] > flagged["expected_high"])
    assert (outside | (flagged["reasons"].str.len() > 0)).all(), "a flagged point is out of range or says why"
    assert (scores["expected_low"] <= scores["expected_high"]).all()
    html = rt.storage.get_bytes(event.report or "").decode()
    assert html.startswith("<!doctype html>") and DATASET in html and "data:image/png;base64," in html
    # the flagged loads as incidents, beside the scores, their sha256 in the event; the report leads with them
    assert event.incidents is not None and event.incidents.uri.endswith(f"{RUN_ID}/incidents.json")
    found = loads(rt.storage.get_bytes(event.incidents.uri, sha256=event.incidents.sha256))
    assert event.incidents.rows == len(found) == len(flagged[["group", "timestamp"]].drop_duplicates())
    empty = [i for i in found if i.kind is Kind.EMPTY]
    assert empty and all("loaded empty: 0 rows instead of about" in i.summary for i in empty)
    flagged_points = set(zip(flagged["series"], flagged["timestamp"].dt.to_pydatetime(), strict=True))
    assert set().union(*(i.points() for i in found)) == flagged_points
    assert html.index("<h2>Incidents</h2>") < html.index("<h2>Anomalies by table</h2>")


def test_a_model_that_is_not_the_one_recorded_is_refused(model_bytes: bytes) -> None:
    rt, trained = trained_run(model_bytes, sha256="0" * 64)
    with pytest.raises(PermanentError, match="refusing to load model"):
        score(rt, trained)
    assert rt.publisher.events == []
