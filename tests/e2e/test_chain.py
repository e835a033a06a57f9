"""The whole chain on the embedded runtime: Aurora payload in, SNS message out, replay of a stage."""

from __future__ import annotations

import json

import pytest

from dqad import incidents as inc
from dqad_dev.cli import main as dqad_main
from dqad_dev.demo import run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, seed=3, tables=12, days=120), out


def test_aurora_payload_becomes_an_email_naming_the_injected_incidents(demo_run) -> None:
    result, _ = demo_run
    # The SNS message as delivered to an SQS subscription (the SNS envelope, not our own object).
    message = result.notification
    assert message is not None and message["Type"] == "Notification"
    assert "demo_dq" in message["Subject"] and result.run_id in message["Subject"]
    attrs = message["MessageAttributes"]
    assert attrs["dataset"]["Value"] == "demo_dq"
    assert int(attrs["anomaly_count"]["Value"]) == len(result.anomalies) > 0
    body = message["Message"]
    for row in result.injected.drop_duplicates("table_name").itertuples():
        assert row.found, f"injected {row.kind} on {row.table_name} not flagged"
        assert row.named, f"injected {row.kind} on {row.table_name} not reported as such: {result.incidents}"
        assert f"\n{row.table_name}: " in body  # the table's section header
    # the email leads with the incidents, one per injected load, named from the values alone
    kinds = {i.kind.words for i in result.incidents}
    assert {"empty load", "duplicated load", "null spike"} <= kinds
    assert body.index("What happened:") < body.index("Metric detail:")
    # the run's own incidents (the scorer's incidents.json) lead its email; the missing load that the
    # freshness check found after it is in the result's list too, but goes out in the check's email
    run_incidents = inc.loads(result.outputs["incidents"].read_bytes())
    assert run_incidents and all(f"{i.kind.words}: {i.summary}" in body for i in run_incidents)
    loadlog = json.loads(result.outputs["loadlog"].read_text())["Message"]
    later = result.incidents[len(run_incidents) :]
    assert later and all(i.summary in loadlog and i.summary not in body for i in later), later
    flagged = set(zip(result.anomalies["group"], result.anomalies["series"], strict=True))
    empty = result.injected[result.injected["kind"] == "empty"]
    assert any(s == f"{t}/row_count" for t, s in flagged for t2 in empty["table_name"] if t == t2)


def test_demo_outputs_are_written(demo_run) -> None:
    result, _out = demo_run
    assert result.outputs["report"].read_text().startswith("<!doctype html>")
    assert "is_anomaly" in result.outputs["scores"].read_text().splitlines()[0]
    assert json.loads(result.outputs["email"].read_text())["Type"] == "Notification"
    stored = sorted(p.name for p in result.outputs["events"].iterdir())
    assert stored == sorted(
        [
            "LoadCompleted.json",
            "DatasetFetched.json",
            "DatasetLabeled.json",
            "ModelTrained.json",
            "AnomaliesScored.json",
            "NotificationSent.json",
        ]
    )


def test_replay_of_one_stage_reruns_it_from_its_stored_input(demo_run, capsys) -> None:
    result, out = demo_run
    scores_key = out / "state" / "runs" / "demo_dq" / result.run_id / "scores.parquet"
    scores_key.unlink()
    assert dqad_main(["replay", "--run-id", result.run_id, "--stage", "scorer", "--state", str(out / "state")]) == 0
    assert scores_key.is_file(), "the scorer's output was rebuilt by the replay"
    printed = capsys.readouterr().out
    assert "replayed scorer" in printed and "DLQ" not in printed


def test_demo_check_reports_the_table_whose_last_loads_never_came(demo_run) -> None:
    result, _out = demo_run
    check = result.freshness
    (missing,) = check["missing"]
    assert check["late"] == [] and check["sent"] == 1 and check["not_judged"] == {}
    mail = json.loads(result.outputs["loadlog"].read_text())
    assert mail["Subject"] == "dqad demo_dq: 1 missing load"
    (line,) = [ln for ln in mail["Message"].splitlines() if ln.startswith("  ")]
    assert line.startswith(f"  {missing}: 2 loads missing, the first due ") and "(daily at " in line
