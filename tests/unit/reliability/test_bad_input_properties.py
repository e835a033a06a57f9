"""Property-based: whatever arrives on a stage's queue, the batch survives.

For every stage handler, hypothesis builds batches of one hostile record (malformed JSON, random
JSON, a contract sample with a field dropped, retyped, added, oversized, or an unknown version) next
to a well-formed record. Properties: nothing raises out of the handler; the hostile record is parked
in the DLQ with a reason that names the offending field (or is processed, when the mutation happened
to stay valid); the well-formed record is always processed; nothing is reported for retry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dqad import stage as stage_mod
from dqad.contract import CONTRACT_DIR, ContractError, parse_event
from dqad.topology import SAGEMAKER_JOB_STATE, STAGES
from dqad_dev.local import load_entry_point, sqs_event

EXAMPLES = 500
SAMPLES = {p.stem: json.loads(p.read_text()) for p in (CONTRACT_DIR / "samples" / "v1").glob("*.json")}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def hostile_body(draw: st.DrawFn, detail_type: str) -> tuple[str, str | None]:
    """A record body and the field its rejection must name (None when any rejection reason will do)."""
    event = json.loads(json.dumps(SAMPLES[detail_type]))
    detail = event["detail"]
    kind = draw(st.sampled_from(["garbage", "json", "drop", "retype", "extra", "huge", "version"]))
    if kind == "garbage":
        return draw(st.text(max_size=200)), None
    if kind == "json":
        return json.dumps(draw(json_values)), None
    if kind == "drop":
        required = [
            k
            for k in detail
            if k not in ("produced_at", "version", "job_name", "report", "message_id", "input_event", "kind")
        ]
        key = draw(st.sampled_from(sorted(required)))
        del detail[key]
        return json.dumps(event), f"detail.{key}"
    if kind == "retype":
        key = draw(st.sampled_from(sorted(k for k in detail if k != "version")))
        detail[key] = draw(json_values)
        return json.dumps(event), f"detail.{key}"
    if kind == "extra":
        key = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k not in detail))
        detail[key] = draw(json_values)
        return json.dumps(event), f"detail.{key}"
    if kind == "huge":
        detail["dataset"] = "x" * draw(st.integers(300_000, 400_000))
        return json.dumps(event), "<body>"
    detail["version"] = draw(json_values.filter(lambda v: v != "1"))
    return json.dumps(event), "detail.version"


def _message(i: int, body: str) -> dict:
    return {"MessageId": f"m-{i}", "ReceiptHandle": f"rh-{i}", "Body": body, "Attributes": {}}


@pytest.mark.parametrize("st_def", STAGES, ids=lambda s: s.name)
def test_hostile_record_never_breaks_the_batch(st_def, monkeypatch: pytest.MonkeyPatch) -> None:
    consumed = [t for t in st_def.consumes if t in SAMPLES]
    parked: list[tuple[str, str, str]] = []
    handled: list[str] = []
    fake_rt = type("RT", (), {"stage": st_def.name})()

    monkeypatch.setattr(
        stage_mod, "dead_letter", lambda rt, rec, et, reason: parked.append((rec.message_id, et, reason))
    )
    handler = load_entry_point(st_def.handler)
    module = handler.__module__
    monkeypatch.setattr(f"{module}.runtime", lambda name: fake_rt)

    def fake_run_batch(event: dict, context: Any, rt: Any, handle: Any, raw_routes: Any = None) -> dict:
        return real_run_batch(
            event,
            context,
            rt,
            lambda _rt, d: handled.append(d.run_id),
            {SAGEMAKER_JOB_STATE: lambda _rt, e: handled.append("job")} if raw_routes else None,
        )

    real_run_batch = stage_mod.run_batch
    monkeypatch.setattr(f"{module}.run_batch", fake_run_batch)

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        parked.clear()
        handled.clear()
        detail_type = data.draw(st.sampled_from(consumed))
        body, field = data.draw(hostile_body(detail_type))
        good = json.dumps(SAMPLES[detail_type])
        result = handler(sqs_event([_message(0, body), _message(1, good)], "arn:aws:sqs:us-east-1:1:q"), None)
        assert result == {"batchItemFailures": []}
        assert SAMPLES[detail_type]["detail"]["run_id"] in handled  # the good record always goes through
        try:
            parse_event(body, expected=tuple(consumed))
            valid = True
        except ContractError:
            valid = False
        if valid:
            assert parked == [] and len(handled) == 2
        else:
            assert [(m, et) for m, et, _ in parked] == [("m-0", "ContractError")]
            if field is not None:
                assert field in parked[0][2], (field, parked[0][2])

    check()
