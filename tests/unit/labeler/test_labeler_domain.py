"""The labeler stage on the fakes: labels written and counted, human feedback first, bad config permanent."""

from __future__ import annotations

import pytest

from dqad.contract import DatasetLabeled
from dqad.feedback import write_label
from dqad.stage import PermanentError
from dqad_labeler.domain import label
from tests.unit.stage_inputs import CATALOG, DATASET, fetched_run, synthetic


@pytest.fixture(scope="module")
def frame():
    return synthetic()[1]


def test_history_is_labelled_stored_and_counted(frame) -> None:
    rt, fetched = fetched_run("labeler", frame)
    event = label(rt, fetched)
    assert rt.publisher.events == [event] and isinstance(event, DatasetLabeled)
    labeled = rt.storage.read_parquet(event.labeled)
    assert len(labeled) == fetched.history.rows and set(labeled["label"].unique()) <= {0, 1}
    flagged = labeled[labeled["label"] == 1]
    assert len(flagged) > 0, "a synthetic history with injected incidents has labelled anomalies"
    assert event.label_counts == flagged["label_source"].value_counts().to_dict()
    assert event.new == fetched.new and event.window == fetched.window  # carried for the scorer


def test_human_feedback_overrides_the_rules(frame) -> None:
    rt, fetched = fetched_run("labeler", frame)
    first = rt.storage.read_parquet(label(rt, fetched).labeled)
    point = first[first["label"] == 1].iloc[0]
    write_label(rt.storage, DATASET, point["series"], point["timestamp"], "normal", note="planned backfill")
    again = rt.storage.read_parquet(label(rt, fetched).labeled)
    same = again[(again["series"] == point["series"]) & (again["timestamp"] == point["timestamp"])].iloc[0]
    assert same["label"] == 0


def test_unknown_labeler_option_is_a_permanent_error_naming_it(frame) -> None:
    rt, fetched = fetched_run("labeler", frame, CATALOG + f"[datasets.{DATASET}.labeler]\nseasonal_kk = 3\n")
    with pytest.raises(PermanentError, match=r"unknown key.*seasonal_kk"):
        label(rt, fetched)
    assert rt.publisher.events == []
