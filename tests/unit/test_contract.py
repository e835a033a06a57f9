"""The event contract: committed samples still parse, schemas match the models, errors name fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dqad.contract import (
    CONTRACT_DIR,
    EVENT_MODELS,
    ContractError,
    LoadCompleted,
    json_schema,
    make_run_id,
    parse_event,
)

SAMPLE_DIRS = sorted((CONTRACT_DIR / "samples").iterdir())


def samples() -> list:
    return sorted(p for d in SAMPLE_DIRS for p in d.glob("*.json"))


def test_every_detail_type_has_a_sample_and_schema_per_version() -> None:
    assert [d.name for d in SAMPLE_DIRS] == ["v1"]
    for name in EVENT_MODELS:
        assert (CONTRACT_DIR / "samples" / "v1" / f"{name}.json").is_file()
        assert (CONTRACT_DIR / "schemas" / "v1" / f"{name}.json").is_file()


@pytest.mark.parametrize("path", samples(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_old_samples_still_parse(path) -> None:
    event = json.loads(path.read_text())
    detail = parse_event(event)
    assert detail.detail_type == event["detail-type"] == path.stem
    assert detail.run_id == event["detail"]["run_id"]


@pytest.mark.parametrize("name", sorted(EVENT_MODELS))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = json.loads((CONTRACT_DIR / "schemas" / "v1" / f"{name}.json").read_text())
    assert committed == json_schema(name), "run `python -m dqad_dev.contract_generate` and commit the schema"


def _sample(name: str) -> dict:
    return json.loads((CONTRACT_DIR / "samples" / "v1" / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: e["detail"].pop("run_id"), "detail.run_id"),
        (lambda e: e["detail"].update(version="2"), "detail.version"),
        (lambda e: e["detail"].update(extra_field=1), "detail.extra_field"),
        (lambda e: e["detail"]["history"].update(sha256="xyz"), "detail.history.sha256"),
        (lambda e: e["detail"]["history"].update(rows=-1), "detail.history.rows"),
        (lambda e: e.update({"detail-type": "Nope"}), "detail-type"),
        (lambda e: e.update(detail="text"), "detail"),
    ],
)
def test_validation_errors_name_the_field(mutate, field: str) -> None:
    event = _sample("DatasetFetched")
    mutate(event)
    with pytest.raises(ContractError) as info:
        parse_event(event)
    assert info.value.field == field
    assert field in str(info.value)


def test_malformed_json_and_unexpected_type_are_contract_errors() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        parse_event("{not json")
    with pytest.raises(ContractError, match="is not one of"):
        parse_event(_sample("LoadCompleted"), expected=("DatasetFetched",))


def test_run_id_is_deterministic_and_fits_a_sagemaker_job_name() -> None:
    t = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
    a = make_run_id("sales_dq", "981234", t)
    assert a == make_run_id("sales_dq", "981234", t)
    assert a != make_run_id("sales_dq", "981235", t)
    assert a != make_run_id("other_dq", "981234", t)
    assert len("dqad-train-" + a) <= 63
    LoadCompleted(run_id=a, dataset="sales_dq", log_id="1", table_name="t", loaded_at=t, status="SUCCESS")
